"""What a job may read: paths confined to the footage root (symlinks resolved), and videos PyAV can decode.

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


class FootageRootMissing(JobInputError):
    """Path jobs need `Settings.footage_root`."""


class OutsideFootageRoot(JobInputError):
    """The path (after resolving `..` and symlinks) lies outside the footage root."""


class FootageNotFound(JobInputError):
    """The path is inside the footage root but names nothing."""


class NotAVideo(JobInputError):
    """The file is not a video PyAV can decode (or a folder without frames)."""


class UploadTooLarge(JobInputError):
    """An upload beyond `jobs.max_upload_bytes`."""


class BadUpload(JobInputError):
    """A malformed multipart body, or one without the parts a job needs."""


def resolve_footage(root: Path | None, given: str) -> Path:
    """`given` (relative to the root, or absolute) -> the real path under the root; raises JobInputError.

    Containment is checked on the fully resolved path (every symlink followed), before anything is opened,
    so `../`, absolute paths elsewhere and links pointing out are refused without reading them.
    """
    if root is None:
        msg = "jobs by path need a footage root: set VIGIL_FOOTAGE_ROOT=/path/to/footage (or upload the file instead)"
        raise FootageRootMissing(msg)
    if not given or "\x00" in given:
        msg = "path must be a non-empty file or folder name under the footage root"
        raise OutsideFootageRoot(msg)
    real_root = root.resolve()
    candidate = Path(given) if Path(given).is_absolute() else real_root / given
    path = candidate.resolve()  # follows symlinks, also dangling ones as far as they go
    if not path.is_relative_to(real_root):
        msg = f"path {given!r} is outside the footage root; give a path under VIGIL_FOOTAGE_ROOT"
        raise OutsideFootageRoot(msg)
    if not path.exists():
        msg = f"path {given!r} does not exist under the footage root"
        raise FootageNotFound(msg)
    return path


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
