"""Video readers: a folder of frame images or a video file decoded with PyAV, behind one small Protocol."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import av
import cv2
import numpy as np

from models.data.scaling import FrameScaler
from models.data.transforms import prepare
from models.errors import DatasetError
from models.health.measure import FrameInfo, frame_info, measure_bgr
from models.types import InputSpec

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")
DEFAULT_FOLDER_FPS = 25.0  # frame folders carry no rate; Ped2's clips have none recorded either


# Demuxers of self-contained video files. Playlists and lists (hls, concat, dash, imf, image2 patterns, ...) open
# further files or URLs named inside them, which would read past any check made on the top file: refused.
SELF_CONTAINED_FORMATS = (
    "mov,matroska,avi,mpegts,mpeg,mpegvideo,m4v,flv,asf,h264,hevc,mjpeg,ogg,ivf,obu,nut,mxf,yuv4mpegpipe"
)


class NotSelfContainedError(DatasetError):
    """A local file whose format would make FFmpeg open other files (a playlist, a concat list) or no video at all."""


def open_local_container(
    path: str | Path, timeout: float | tuple[float, float] | None = None
) -> av.container.InputContainer:
    """`av.open` of a local file that reads that one file: only the `file` protocol, only self-contained formats.

    The one place a local video is opened (offline readers, file cameras, jobs). Raises NotSelfContainedError
    for playlists, lists and other formats that reference further files; FFmpeg/OS errors otherwise.
    """
    options = {"protocol_whitelist": "file", "format_whitelist": SELF_CONTAINED_FORMATS}
    try:
        container: av.container.InputContainer = av.open(str(path), mode="r", options=options, timeout=timeout)
    except av.error.ArgumentError as e:  # EINVAL: FFmpeg's "Format not on whitelist" (or no format at all)
        msg = (
            f"{Path(path).name} is not a self-contained video file: playlists (HLS .m3u8), concat lists and other "
            "formats that open further files are refused; give an mp4, mkv, avi, mov or ts file"
        )
        raise NotSelfContainedError(msg) from e
    return container


@runtime_checkable
class VideoReader(Protocol):
    """A finite video: frames are uint8 (H, W, 3) BGR, in display order."""

    name: str
    fps: float

    @property
    def num_frames(self) -> int: ...

    def read_all(self) -> np.ndarray:
        """All frames, uint8 (N, H, W, 3) BGR."""
        ...

    def iter_frames(self, spec: InputSpec | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
        """(index, pts in seconds, frame (H, W, 3) BGR) for every decodable frame, in order; with `spec`, the
        frame as the model's input (uint8 (h, w, C)), prepared as the live ingester prepares it."""
        ...

    def iter_measured(self, spec: InputSpec | None = None) -> Iterator[tuple[int, float, np.ndarray, FrameInfo]]:
        """`iter_frames` plus each frame's camera-health measurements (models/health, from the decoded frame at full
        size), as the ingester takes them."""
        ...


def natural_key(name: str) -> list[int | str]:
    """Sort key so that '2.jpg' < '10.jpg' (digit runs compare as numbers)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_images(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: natural_key(p.name),
    )


class FrameFolder:
    """A folder of frame images (jpg/png/tif/bmp), naturally sorted so 2.jpg comes before 10.jpg."""

    def __init__(self, path: str | Path, fps: float = DEFAULT_FOLDER_FPS) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            msg = f"frame folder {self.path} does not exist or is not a directory"
            raise DatasetError(msg)
        self.files = list_images(self.path)
        if not self.files:
            msg = f"no frames (*.jpg, *.png, *.tif ...) in {self.path}"
            raise DatasetError(msg)
        self.name = self.path.name
        self.fps = fps

    @property
    def num_frames(self) -> int:
        return len(self.files)

    def _read(self, path: Path) -> np.ndarray:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)  # gray images come back as 3 equal BGR channels
        if img is None:
            msg = f"cannot decode frame {path}; the file is corrupt or not an image"
            raise DatasetError(msg)
        return np.asarray(img, dtype=np.uint8)

    def iter_measured(self, spec: InputSpec | None = None) -> Iterator[tuple[int, float, np.ndarray, FrameInfo]]:
        for i, pts, img in self.iter_frames():
            yield i, pts, img if spec is None else prepare(img[None], spec)[0], FrameInfo(measure_bgr(img))

    def iter_frames(self, spec: InputSpec | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
        shape: tuple[int, ...] | None = None
        for i, path in enumerate(self.files):
            img = self._read(path)
            if shape is not None and img.shape != shape:
                msg = (
                    f"frame {path} is {img.shape[1]}x{img.shape[0]} but earlier frames in {self.path} "
                    f"are {shape[1]}x{shape[0]}; all frames of a video must have one size"
                )
                raise DatasetError(msg)
            shape = img.shape
            yield i, i / self.fps, img if spec is None else prepare(img[None], spec)[0]

    def read_all(self) -> np.ndarray:
        return np.stack([img for _, _, img in self.iter_frames()])


class VideoFile:
    """A video file decoded with PyAV. Packets that fail to decode are skipped and counted, not fatal."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            msg = f"video file {self.path} does not exist"
            raise DatasetError(msg)
        self.name = self.path.stem
        self.corrupt_packets = 0
        with self._open() as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            self.fps = float(rate) if rate else DEFAULT_FOLDER_FPS
            self._num_frames = int(stream.frames or 0)
            if self._num_frames <= 0:  # some containers do not store a count: count packets (no decoding)
                self._num_frames = sum(1 for p in container.demux(stream) if p.size > 0)

    def _open(self) -> av.container.InputContainer:
        try:
            container = open_local_container(self.path)
        except (av.error.FFmpegError, OSError) as e:
            msg = f"cannot open video {self.path}: {e}"
            raise DatasetError(msg) from e
        if not container.streams.video:
            container.close()
            msg = f"{self.path} has no video stream"
            raise DatasetError(msg)
        return container

    @property
    def num_frames(self) -> int:
        return self._num_frames

    def iter_frames(self, spec: InputSpec | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
        for index, pts, img, _ in self._decode(measure=False, spec=spec):
            yield index, pts, img

    def iter_measured(self, spec: InputSpec | None = None) -> Iterator[tuple[int, float, np.ndarray, FrameInfo]]:
        for index, pts, img, info in self._decode(measure=True, spec=spec):
            assert info is not None  # measured
            yield index, pts, img, info

    def _decode(
        self, measure: bool, spec: InputSpec | None = None
    ) -> Iterator[tuple[int, float, np.ndarray, FrameInfo | None]]:
        """Every decodable frame (BGR, or with `spec` the model's input, scaled as live); with `measure`, its health
        measurements from the decoded planes (as live)."""
        scaler = None if spec is None else FrameScaler(spec)
        self.corrupt_packets = 0
        index = 0
        undecodable = False  # packets failed since the last frame
        with self._open() as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            base = stream.time_base
            packets = container.demux(stream)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except av.error.FFmpegError as e:  # a truncated recording: keep what was read so far
                    log.warning("%s: stopped reading after %d frames: %s", self.path, index, e)
                    break
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as e:  # one broken packet should not lose the whole file
                    self.corrupt_packets += 1
                    undecodable = True
                    log.debug("%s: skipping undecodable packet at pts %s: %s", self.path, packet.pts, e)
                    continue
                for frame in frames:
                    pts = float(frame.pts * base) if frame.pts is not None and base else index / self.fps
                    info = frame_info(frame, undecodable) if measure else None
                    undecodable = False
                    yield index, pts, frame.to_ndarray(format="bgr24") if scaler is None else scaler(frame), info
                    index += 1
        if self.corrupt_packets:
            log.warning("%s: %d corrupt packets skipped", self.path, self.corrupt_packets)

    def read_all(self) -> np.ndarray:
        frames = [img for _, _, img in self.iter_frames()]
        if not frames:
            msg = f"no decodable frames in {self.path}"
            raise DatasetError(msg)
        return np.stack(frames)


def open_video(path: str | Path) -> VideoReader:
    """A folder of images -> FrameFolder; a video file -> VideoFile."""
    path = Path(path)
    if path.is_dir():
        return FrameFolder(path)
    if path.is_file():
        return VideoFile(path)
    msg = f"video path {path} does not exist"
    raise DatasetError(msg)
