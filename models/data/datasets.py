"""Dataset discovery: frame-folder (Ped2), original UCSD .tif and plain-video layouts -> labelled videos."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from models.data.groundtruth import load_labels
from models.data.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, FrameFolder, VideoFile, VideoReader, natural_key
from models.errors import DatasetError

log = logging.getLogger(__name__)

Split = Literal["train", "test"]

LAYOUTS = (
    "(a) <root>/training/frames/<video>/*.jpg (or training/videos/*.avi) and <root>/testing/frames/<video>/ "
    "with a *.mat, "
    "frame_labels_*.npy or testing/test_frame_mask/ at the root (UCSD Ped2 as distributed here, Avenue, ShanghaiTech); "
    "(b) original UCSD <root>/Train/Train001/*.tif and <root>/Test/Test001/ with a *.m or *.mat; "
    "(c) a video file (.mp4 .avi .mkv .mov), a folder of video files, a folder of frame images, "
    "or a folder of frame folders (unlabelled)"
)


@dataclass(frozen=True)
class LabeledVideo:
    """One video of a dataset; `labels` is uint8 (num_frames,) with 1 = anomalous, or None when unknown."""

    name: str
    reader: VideoReader
    labels: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return self.reader.num_frames


def _subdirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name))


def _find_gt_file(folders: list[Path], patterns: tuple[str, ...]) -> Path | None:
    for pattern in patterns:
        for folder in folders:
            found = sorted(folder.glob(pattern)) if folder.is_dir() else []
            if len(found) > 1:
                log.warning("several ground-truth files match %s in %s; using %s", pattern, folder, found[0])
            if found:
                return found[0]
    return None


def _with_labels(readers: list[FrameFolder], gt: Path | None, root: Path) -> list[LabeledVideo]:
    if gt is None:
        log.warning("no ground truth found under %s; test videos are unlabelled", root)
        return [LabeledVideo(r.name, r) for r in readers]
    labels = load_labels(gt, [r.name for r in readers], [r.num_frames for r in readers])
    return [LabeledVideo(r.name, r, lab) for r, lab in zip(readers, labels, strict=True)]


def _frame_folders(folder: Path, skip_suffix: str | None = None) -> list[FrameFolder]:
    dirs = [d for d in _subdirs(folder) if skip_suffix is None or not d.name.endswith(skip_suffix)]
    if not dirs:
        msg = f"no video folders in {folder}"
        raise DatasetError(msg)
    return [FrameFolder(d) for d in dirs]


def _open_frames_layout(root: Path, split: Split) -> list[LabeledVideo]:
    if split == "train":
        if not (root / "training" / "frames").is_dir() and (root / "training" / "videos").is_dir():
            # ShanghaiTech ships its training split as videos: <root>/training/videos/*.avi
            return [
                LabeledVideo(v.name, v.reader, np.zeros(v.num_frames, np.uint8))
                for v in _open_videos(root / "training" / "videos")
            ]
        readers = _frame_folders(root / "training" / "frames")
        return [LabeledVideo(r.name, r, np.zeros(r.num_frames, dtype=np.uint8)) for r in readers]
    readers = _frame_folders(root / "testing" / "frames")
    mask_dir = root / "testing" / "test_frame_mask"
    gt = mask_dir if mask_dir.is_dir() else _find_gt_file([root], ("*.mat", "*.m", "frame_labels_*.npy"))
    return _with_labels(readers, gt, root)


def _open_ucsd_layout(root: Path, split: Split) -> list[LabeledVideo]:
    readers = _frame_folders(root / ("Train" if split == "train" else "Test"), skip_suffix="_gt")
    if split == "train":
        return [LabeledVideo(r.name, r, np.zeros(r.num_frames, dtype=np.uint8)) for r in readers]
    gt = _find_gt_file([root / "Test", root], ("*.m", "*.mat"))
    return _with_labels(readers, gt, root)


def _open_videos(path: Path) -> list[LabeledVideo]:
    if path.is_file():
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            kinds = ", ".join(VIDEO_SUFFIXES)
            msg = f"{path} is not a video file ({kinds}) or dataset folder; accepted layouts: {LAYOUTS}"
            raise DatasetError(msg)
        files = [path]
    else:
        files = sorted(
            (p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES),
            key=lambda p: natural_key(p.name),
        )
    videos: list[LabeledVideo] = []
    for f in files:
        reader = VideoFile(f)
        videos.append(LabeledVideo(reader.name, reader))
    if not videos and path.is_dir():  # a folder of frame folders, e.g. <root>/testing/frames itself
        frame_dirs = [d for d in _subdirs(path) if any(p.suffix.lower() in IMAGE_SUFFIXES for p in d.iterdir())]
        videos = [LabeledVideo(r.name, r) for r in map(FrameFolder, frame_dirs)]
    return videos


def open_dataset(path: str | Path, split: Split) -> list[LabeledVideo]:
    """Detect the layout under `path` and open the videos of `split` (ignored for plain videos).

    Training videos of a benchmark are labelled all-normal; test videos get their ground truth, or None.
    """
    root = Path(path)
    if not root.exists():
        msg = f"dataset path {root} does not exist"
        raise DatasetError(msg)
    if split not in ("train", "test"):
        msg = f"split must be 'train' or 'test', got {split!r}"
        raise ValueError(msg)
    if root.is_dir() and ((root / "training" / "frames").is_dir() or (root / "testing" / "frames").is_dir()):
        return _open_frames_layout(root, split)
    if root.is_dir() and ((root / "Train").is_dir() or (root / "Test").is_dir()):
        return _open_ucsd_layout(root, split)
    if root.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in root.iterdir()):
        reader = FrameFolder(root)
        return [LabeledVideo(reader.name, reader)]
    videos = _open_videos(root)
    if not videos:
        msg = f"{root} holds no dataset layout vigil knows; accepted layouts: {LAYOUTS}"
        raise DatasetError(msg)
    return videos


def split_validation(videos: list[LabeledVideo], num_val: int) -> tuple[list[LabeledVideo], list[LabeledVideo]]:
    """Hold out whole videos: the last `num_val` by natural name order become validation. Deterministic."""
    if num_val < 0:
        msg = f"num_val must be >= 0, got {num_val}"
        raise ValueError(msg)
    ordered = sorted(videos, key=lambda v: natural_key(v.name))
    if num_val >= len(ordered):
        msg = (
            f"holding out {num_val} validation videos leaves none of the {len(ordered)} for training; "
            f"use num_val <= {max(len(ordered) - 1, 0)}"
        )
        raise DatasetError(msg)
    cut = len(ordered) - num_val
    return ordered[:cut], ordered[cut:]


def dataset_fingerprint(videos: list[LabeledVideo]) -> str:
    """sha256 over names, frame counts, file names and sizes: cheap (stat only), changes when files change."""
    digest = hashlib.sha256()
    for video in videos:
        digest.update(f"{video.name}\0{video.num_frames}\0".encode())
        reader = video.reader
        files = reader.files if isinstance(reader, FrameFolder) else [getattr(reader, "path", Path(video.name))]
        for f in files:
            size = f.stat().st_size if f.exists() else -1
            digest.update(f"{f.name}\0{size}\0".encode())
    return digest.hexdigest()
