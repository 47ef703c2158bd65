"""Layout detection, labels, validation split and fingerprint on real files."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.io import savemat

from models.data.clips import ClipDataset, load_frames
from models.data.datasets import dataset_fingerprint, open_dataset, split_validation
from models.data.video import VideoFile
from models.errors import DatasetError
from models.types import InputSpec
from tests.synthetic import render_frames, write_video


def test_ped2_layout(synthetic_dataset: Path) -> None:
    train = open_dataset(synthetic_dataset, "train")
    assert [v.name for v in train] == ["01", "02", "03"]
    assert all(v.labels is not None and not v.labels.any() for v in train)
    test = open_dataset(synthetic_dataset, "test")
    assert [v.name for v in test] == ["01", "02"]
    assert test[0].labels is not None
    assert np.flatnonzero(test[0].labels).tolist() == list(range(20, 30))


def test_shanghaitech_layout(tmp_path: Path, synthetic_video: tuple[Path, np.ndarray]) -> None:
    """Training split as videos, test split as frame folders with per-video .npy frame masks."""
    (tmp_path / "training" / "videos").mkdir(parents=True)
    shutil.copy(synthetic_video[0], tmp_path / "training" / "videos" / "01_001.avi")
    frames, labels = render_frames(12, (16, 16), (3, 6))
    folder = tmp_path / "testing" / "frames" / "01_0014"
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), f)
    (tmp_path / "testing" / "test_frame_mask").mkdir()
    np.save(tmp_path / "testing" / "test_frame_mask" / "01_0014.npy", labels)
    train = open_dataset(tmp_path, "train")
    assert [(v.name, v.num_frames) for v in train] == [("01_001", 64)]
    test = open_dataset(tmp_path, "test")
    assert test[0].labels is not None
    assert test[0].labels.tolist() == labels.tolist()


def test_ucsd_tif_layout(tmp_path: Path) -> None:
    frames, _ = render_frames(6, (16, 24), None)
    for split, video in (("Train", "Train001"), ("Test", "Test001"), ("Test", "Test001_gt")):
        folder = tmp_path / split / video
        folder.mkdir(parents=True)
        for i, f in enumerate(frames):
            cv2.imwrite(str(folder / f"{i + 1:03d}.tif"), f[:, :, 0])
    (tmp_path / "Test" / "UCSDtiny.m").write_text("TestVideoFile{end+1}.gt_frame = [3:4];\n")
    train = open_dataset(tmp_path, "train")
    assert [v.name for v in train] == ["Train001"]
    assert train[0].reader.read_all().shape == (6, 16, 24, 3)
    test = open_dataset(tmp_path, "test")
    assert [v.name for v in test] == ["Test001"]  # the *_gt pixel-mask folder is skipped
    assert test[0].labels is not None
    assert test[0].labels.tolist() == [0, 0, 1, 1, 0, 0]


def test_video_file_and_folder(synthetic_video: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, _ = synthetic_video
    single = open_dataset(path, "test")
    assert [v.name for v in single] == ["clip"]
    assert single[0].labels is None
    assert isinstance(single[0].reader, VideoFile)
    shutil.copy(path, tmp_path / "cam10.mp4")
    shutil.copy(path, tmp_path / "cam2.mp4")
    (tmp_path / "readme.txt").write_text("ignored")
    assert [v.name for v in open_dataset(tmp_path, "train")] == ["cam2", "cam10"]


def test_folder_of_frame_folders_is_unlabelled(synthetic_dataset: Path) -> None:
    videos = open_dataset(synthetic_dataset / "testing" / "frames", "test")
    assert [v.name for v in videos] == ["01", "02"]
    assert all(v.labels is None for v in videos)
    single = open_dataset(synthetic_dataset / "testing" / "frames" / "02", "test")
    assert [(v.name, v.num_frames) for v in single] == [("02", 40)]


def test_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"dataset path .*nowhere does not exist"):
        open_dataset(tmp_path / "nowhere", "train")
    (tmp_path / "junk.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"accepted layouts: \(a\)"):
        open_dataset(tmp_path, "train")
    empty_video = tmp_path / "ds" / "training" / "frames" / "01"
    empty_video.mkdir(parents=True)
    with pytest.raises(DatasetError, match="no frames"):
        open_dataset(tmp_path / "ds", "train")


def test_label_length_mismatch_names_the_video(tmp_path: Path) -> None:
    frames, _ = render_frames(10, (16, 16), None)
    folder = tmp_path / "testing" / "frames" / "07"
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i}.jpg"), f)
    gt = np.empty((1, 1), dtype=object)
    gt[0, 0] = np.array([[5], [12]])  # ends after the 10 frames that exist
    savemat(tmp_path / "x.mat", {"gt": gt})
    with pytest.raises(DatasetError, match=r"video 07: anomalous interval \[5, 12\] .* 10 frames"):
        open_dataset(tmp_path, "test")


def test_split_validation_is_deterministic(synthetic_dataset: Path) -> None:
    videos = open_dataset(synthetic_dataset, "train")
    train, val = split_validation(list(reversed(videos)), 1)
    assert [v.name for v in train] == ["01", "02"]
    assert [v.name for v in val] == ["03"]
    with pytest.raises(DatasetError, match="leaves none of the 3 for training"):
        split_validation(videos, 3)


def test_fingerprint_changes_with_files(tmp_path: Path, synthetic_video: tuple[Path, np.ndarray]) -> None:
    frames, _ = render_frames(8, (16, 16), None)
    a = write_video(tmp_path / "a.mp4", frames)
    fp1 = dataset_fingerprint(open_dataset(a, "train"))
    assert fp1 == dataset_fingerprint(open_dataset(a, "train"))
    write_video(a, frames[:6])
    assert dataset_fingerprint(open_dataset(a, "train")) != fp1


def test_clips_are_consecutive_frames_in_order(synthetic_dataset: Path) -> None:
    spec = InputSpec(height=32, width=32, channels=1, context=2)
    frames = load_frames(open_dataset(synthetic_dataset, "train"), spec)
    assert [f.shape for f in frames] == [(40, 32, 32, 1)] * 3
    ds = ClipDataset(frames, clip_len=5, stride=2)
    assert len(ds) == 3 * len(range(0, 36, 2))
    video, start = ds.locate(len(ds) - 1)
    assert (video, start) == (2, 34)
    clip = ds[len(ds) - 1]
    assert tuple(clip.shape) == (5, 1, 32, 32)
    expected = frames[2][34:39].transpose(0, 3, 1, 2) / 255.0
    assert np.allclose(clip.numpy(), expected)
    with pytest.raises(ValueError, match="no clip of 50 frames fits"):
        ClipDataset(frames, clip_len=50)
