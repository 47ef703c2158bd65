"""Frame folders and video files: ordering, real PyAV decode, timestamps, corrupt input."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from models.data.transforms import prepare, to_tensor
from models.data.video import FrameFolder, VideoFile, natural_key, open_video
from models.errors import DatasetError
from models.types import InputSpec
from tests.synthetic import render_frames


def test_natural_sort_puts_2_before_10(tmp_path: Path) -> None:
    for i in (10, 2, 1):  # each frame's pixel value is its number, so order is visible in the pixels
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8, 3), i, dtype=np.uint8))
    reader = FrameFolder(tmp_path)
    assert [p.name for p in reader.files] == ["1.png", "2.png", "10.png"]
    assert reader.read_all()[:, 0, 0, 0].tolist() == [1, 2, 10]
    assert sorted(["a10", "a2", "a1"], key=natural_key) == ["a1", "a2", "a10"]


def test_frame_folder_timestamps_follow_fps(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:03d}.jpg"), np.zeros((8, 8, 3), np.uint8))
    pts = [t for _, t, _ in FrameFolder(tmp_path, fps=10.0).iter_frames()]
    assert pts == pytest.approx([0.0, 0.1, 0.2])


def test_empty_frame_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no frames here")
    with pytest.raises(DatasetError, match=r"no frames \(\*\.jpg, \*\.png, \*\.tif \.\.\.\) in"):
        FrameFolder(tmp_path)


def test_corrupt_image_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "000.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"000\.jpg"):
        FrameFolder(tmp_path).read_all()


def test_video_file_decodes_all_frames_with_pts(synthetic_video: tuple[Path, np.ndarray]) -> None:
    path, labels = synthetic_video
    reader = open_video(path)
    assert isinstance(reader, VideoFile)
    assert reader.name == "clip"
    assert reader.fps == pytest.approx(25.0)
    assert reader.num_frames == len(labels) == 64
    items = list(reader.iter_frames())
    assert [i for i, _, _ in items] == list(range(64))
    pts = np.array([t for _, t, _ in items])
    assert np.diff(pts) == pytest.approx(np.full(63, 0.04))
    frames = reader.read_all()
    assert frames.shape == (64, 64, 64, 3)
    assert frames.dtype == np.uint8
    expected, _ = render_frames(64, (64, 64), (40, 52))
    # near-lossless H.264: decoded pixels are close to what was drawn
    assert np.abs(frames.astype(int) - expected.astype(int)).mean() < 3.0
    assert reader.corrupt_packets == 0


def _write_mjpeg(path: Path, frames: np.ndarray) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=Fraction(25))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuvj420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        container.mux(stream.encode())


def test_video_with_corrupt_packets_is_not_fatal(tmp_path: Path) -> None:
    frames, _ = render_frames(40, (64, 64), None)
    path = tmp_path / "broken.avi"
    _write_mjpeg(path, frames)
    data = bytearray(path.read_bytes())
    # Plant JPEG end-of-image markers through the second half: those packets no longer decode.
    for k in range(len(data) // 2, len(data) - 2000, 60):
        data[k : k + 4] = b"\xff\xd9\x00\x00"
    path.write_bytes(bytes(data))
    reader = VideoFile(path)
    decoded = reader.read_all()
    assert reader.corrupt_packets > 0
    assert 0 < len(decoded) < 40
    assert np.abs(decoded[0].astype(int) - frames[0].astype(int)).mean() < 5  # frames before the damage are intact


def test_truncated_video_keeps_the_frames_before_the_cut(tmp_path: Path) -> None:
    frames, _ = render_frames(40, (64, 64), None)
    path = tmp_path / "cut.avi"
    _write_mjpeg(path, frames)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])  # recording stopped mid-write
    decoded = VideoFile(path).read_all()
    assert 10 < len(decoded) < 40
    assert np.abs(decoded[5].astype(int) - frames[5].astype(int)).mean() < 5


def test_unreadable_video_is_dataset_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(DatasetError, match=r"cannot open video .*bad\.mp4"):
        VideoFile(bad)
    with pytest.raises(DatasetError, match="does not exist"):
        open_video(tmp_path / "missing.mp4")


def test_prepare_resizes_and_converts() -> None:
    bgr = np.zeros((2, 40, 60, 3), np.uint8)
    bgr[..., 2] = 255  # pure red in BGR
    gray = prepare(bgr, InputSpec(height=20, width=30, channels=1, context=0))
    assert gray.shape == (2, 20, 30, 1)
    assert int(gray[0, 0, 0, 0]) == int(cv2.cvtColor(bgr[0], cv2.COLOR_BGR2GRAY)[0, 0])
    up = prepare(bgr[..., 0], InputSpec(height=80, width=120, channels=3, context=0))
    assert up.shape == (2, 80, 120, 3)
    same = prepare(bgr, InputSpec(height=40, width=60, channels=3, context=0))
    assert np.array_equal(same, bgr)
    with pytest.raises(ValueError, match="uint8"):
        prepare(bgr.astype(np.float32), InputSpec(height=8, width=8, channels=1, context=0))


def test_to_tensor_layout_and_range() -> None:
    frames = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    t = to_tensor(frames)
    assert tuple(t.shape) == (2, 3, 3, 4)
    assert t.is_contiguous()
    assert t.dtype == torch.float32
    assert float(t[1, 2, 0, 1]) == pytest.approx(frames[1, 0, 1, 2] / 255)
