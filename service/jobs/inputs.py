"""What a job may read: videos PyAV can decode (paths are confined by service/footage.py, the one footage policy).

No torch and no Redis here: the API calls these before it accepts a job, so a refused job leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.data.video import open_video
from models.errors import DatasetError
from service.errors import VigilServiceError


class JobInputError(VigilServiceError):
    """Base of the reasons a job's input is refused; the API maps each subclass to a 4xx status."""


class NotAVideo(JobInputError):
    """The file is not a video PyAV can decode (or a folder without frames)."""


class UploadTooLarge(JobInputError):
    """An upload beyond `jobs.max_upload_bytes`."""


class BadUpload(JobInputError):
    """A malformed multipart body, or one without the parts a job needs."""


@dataclass(frozen=True)
class VideoProbe:
    """What a quick look at a video says: its frame count (from the container, may be an estimate) and rate."""

    frames: int
    fps: float


def probe_video(path: Path, display: str | None = None) -> VideoProbe:
    """Open with the same reader `vigil score` uses and decode the first frame; NotAVideo when that fails.

    `display` is the name errors show (an upload's original file name); default the path's own name.
    """
    shown = display or path.name or str(path)
    try:
        reader = open_video(path)
        frames = reader.iter_frames()
        try:
            next(frames)
        except StopIteration:
            msg = f"{shown}: no decodable frame; upload an H.264/MPEG-4/MJPEG video (mp4, avi, mkv, mov)"
            raise NotAVideo(msg) from None
        finally:
            frames.close()  # type: ignore[attr-defined]
    except DatasetError as e:
        reason = str(e).replace(str(path), shown)  # clients see file names, never the server's paths
        msg = f"{shown} is not a video PyAV can decode ({reason}); send an mp4, avi, mkv or mov file"
        raise NotAVideo(msg) from e
    return VideoProbe(frames=reader.num_frames, fps=reader.fps)
