"""Frame-level ground truth readers: `.mat` intervals, the UCSD `.m` text, concatenated and per-video `.npy` masks.

Every reader returns one uint8 label vector (1 = anomalous) per test video, checked against frame counts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models.errors import DatasetError

_M_LINE = re.compile(r"TestVideoFile\{\s*(end\s*\+\s*1|\d+)\s*\}\s*\.gt_frame\s*=\s*\[([^\]]*)\]")
_M_RANGE = re.compile(r"^(\d+)\s*(?::\s*(\d+))?$")


def intervals_to_labels(intervals: Sequence[tuple[int, int]], num_frames: int, video: str) -> np.ndarray:
    """1-based inclusive [start, end] intervals -> uint8 (num_frames,) labels."""
    labels = np.zeros(num_frames, dtype=np.uint8)
    for start, end in intervals:
        if not 1 <= start <= end <= num_frames:
            msg = f"video {video}: anomalous interval [{start}, {end}] (1-based) does not fit its {num_frames} frames"
            raise DatasetError(msg)
        labels[start - 1 : end] = 1
    return labels


def check_lengths(names: Sequence[str], frame_counts: Sequence[int], num_labelled: int, source: Path) -> None:
    if len(names) != len(frame_counts):
        msg = f"{len(names)} video names but {len(frame_counts)} frame counts"
        raise ValueError(msg)
    if num_labelled != len(names):
        msg = (
            f"{source} labels {num_labelled} test videos but {len(names)} were found "
            f"({', '.join(names[:5])}{' ...' if len(names) > 5 else ''})"
        )
        raise DatasetError(msg)


def read_mat_intervals(path: Path) -> list[list[tuple[int, int]]]:
    """`gt` field of a UCSD/Avenue-style .mat: per video a 2xK array of 1-based inclusive [start; end]."""
    from scipy.io import loadmat

    try:
        data = loadmat(str(path), squeeze_me=False)
    except (ValueError, OSError, NotImplementedError) as e:
        msg = f"cannot read ground truth {path}: {e}"
        raise DatasetError(msg) from e
    if "gt" not in data:
        keys = ", ".join(k for k in data if not k.startswith("__"))
        msg = f"{path} has no 'gt' field (found: {keys or 'nothing'}); expected 2xK [start; end] arrays per test video"
        raise DatasetError(msg)
    out: list[list[tuple[int, int]]] = []
    for cell in np.asarray(data["gt"], dtype=object).ravel():
        arr = np.asarray(cell, dtype=np.int64)
        if arr.size == 0:
            out.append([])
            continue
        if arr.ndim != 2 or arr.shape[0] != 2:
            msg = f"{path}: each 'gt' entry must be a 2xK [start; end] array, got shape {arr.shape}"
            raise DatasetError(msg)
        out.append([(int(s), int(e)) for s, e in arr.T])
    return out


def read_m_intervals(path: Path) -> list[list[tuple[int, int]]]:
    """The original UCSD `.m` text: `TestVideoFile{end+1}.gt_frame = [61:180];` (or `{3}`, `[5:90, 140:200]`)."""
    entries: dict[int, list[tuple[int, int]]] = {}
    for line in path.read_text(errors="replace").splitlines():
        m = _M_LINE.search(line.split("%", 1)[0])
        if not m:
            continue
        index = len(entries) + 1 if m.group(1).replace(" ", "") == "end+1" else int(m.group(1))
        ranges = []
        body = re.sub(r"\s*:\s*", ":", m.group(2).strip())  # "61 : 180" -> "61:180" before splitting on blanks
        for part in re.split(r"[,;\s]+", body):
            part = part.strip()
            if not part:
                continue
            r = _M_RANGE.match(part)
            if r is None:
                msg = f"{path}: cannot parse {part!r} in {line.strip()!r}; expected start:end"
                raise DatasetError(msg)
            start = int(r.group(1))
            ranges.append((start, int(r.group(2) or start)))
        entries[index] = ranges
    if not entries:
        msg = f"{path} holds no 'TestVideoFile{{...}}.gt_frame = [...]' lines"
        raise DatasetError(msg)
    if sorted(entries) != list(range(1, len(entries) + 1)):
        msg = f"{path}: test video indices {sorted(entries)} are not 1..{len(entries)}"
        raise DatasetError(msg)
    return [entries[i] for i in range(1, len(entries) + 1)]


def labels_from_intervals(
    intervals: list[list[tuple[int, int]]], names: Sequence[str], frame_counts: Sequence[int], source: Path
) -> list[np.ndarray]:
    check_lengths(names, frame_counts, len(intervals), source)
    return [intervals_to_labels(iv, n, name) for iv, n, name in zip(intervals, frame_counts, names, strict=True)]


def labels_from_concatenated(path: Path, names: Sequence[str], frame_counts: Sequence[int]) -> list[np.ndarray]:
    """`frame_labels_*.npy`: shape (1, total) or (total,), test videos concatenated in sorted order."""
    flat = np.load(path, allow_pickle=False).reshape(-1)
    total = int(sum(frame_counts))
    if flat.size != total:
        msg = f"{path} holds {flat.size} labels but the {len(names)} test videos have {total} frames in total"
        raise DatasetError(msg)
    return [part.astype(np.uint8) for part in np.split(flat, np.cumsum(frame_counts)[:-1])]


def labels_from_masks(folder: Path, names: Sequence[str], frame_counts: Sequence[int]) -> list[np.ndarray]:
    """ShanghaiTech `test_frame_mask/<video>.npy`: one (num_frames,) 0/1 mask per test video."""
    out = []
    for name, count in zip(names, frame_counts, strict=True):
        path = folder / f"{name}.npy"
        if not path.is_file():
            msg = f"no frame mask for test video {name}: expected {path}"
            raise DatasetError(msg)
        mask = np.load(path, allow_pickle=False).reshape(-1)
        check_video_labels(name, count, mask)
        out.append((mask > 0).astype(np.uint8))
    return out


def check_video_labels(name: str, num_frames: int, labels: np.ndarray) -> None:
    if len(labels) != num_frames:
        msg = f"video {name}: {num_frames} frames found but {len(labels)} labels given"
        raise DatasetError(msg)


def load_labels(path: Path, names: Sequence[str], frame_counts: Sequence[int]) -> list[np.ndarray]:
    """Labels per test video from any supported ground-truth file or mask folder."""
    if path.is_dir():
        labels = labels_from_masks(path, names, frame_counts)
    elif path.suffix == ".mat":
        labels = labels_from_intervals(read_mat_intervals(path), names, frame_counts, path)
    elif path.suffix == ".m":
        labels = labels_from_intervals(read_m_intervals(path), names, frame_counts, path)
    elif path.suffix == ".npy":
        labels = labels_from_concatenated(path, names, frame_counts)
    else:
        msg = f"unknown ground-truth format {path}; use a .mat (gt intervals), .m (UCSD), .npy or a mask folder"
        raise DatasetError(msg)
    for name, count, lab in zip(names, frame_counts, labels, strict=True):
        check_video_labels(name, count, lab)
    return labels
