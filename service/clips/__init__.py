"""Alert clips: an H.264 MP4 of every alert with pre- and post-roll, cut from a live camera's packet buffer or from
the recording of a file camera or batch job, kept under `clips.dir` with retention and a size cap."""
