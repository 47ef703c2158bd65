"""Ground-truth parsing: .mat intervals, UCSD .m text, concatenated and per-video .npy masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.data.groundtruth import intervals_to_labels, load_labels, read_m_intervals, read_mat_intervals
from models.errors import DatasetError
from tests.conftest import PED2

needs_ped2 = pytest.mark.skipif(not (PED2 / "ped2.mat").is_file(), reason=f"UCSD Ped2 is not at {PED2}; set VIGIL_PED2")


def test_intervals_are_one_based_inclusive() -> None:
    labels = intervals_to_labels([(2, 3), (6, 6)], 6, "v")
    assert labels.tolist() == [0, 1, 1, 0, 0, 1]
    with pytest.raises(DatasetError, match=r"video v: anomalous interval \[5, 7\]"):
        intervals_to_labels([(5, 7)], 6, "v")


def test_m_file_variants(tmp_path: Path) -> None:
    path = tmp_path / "gt.m"
    path.write_text(
        "TestVideoFile = {};\n"
        "TestVideoFile{end+1}.gt_frame = [61:180];\n"
        "% TestVideoFile{end+1}.gt_frame = [1:2];  a comment, not a video\n"
        "TestVideoFile{2}.gt_frame = [5:90, 140 : 200];\n"
        "TestVideoFile{end+1}.gt_frame = [7];\n"
    )
    assert read_m_intervals(path) == [[(61, 180)], [(5, 90), (140, 200)], [(7, 7)]]


def test_synthetic_mat(synthetic_dataset: Path) -> None:
    labels = load_labels(synthetic_dataset / "synthetic.mat", ["01", "02"], [40, 40])
    assert np.flatnonzero(labels[0]).tolist() == list(range(20, 30))
    assert np.flatnonzero(labels[1]).tolist() == list(range(5, 15))


def test_video_count_mismatch(synthetic_dataset: Path) -> None:
    with pytest.raises(DatasetError, match="labels 2 test videos but 3 were found"):
        load_labels(synthetic_dataset / "synthetic.mat", ["01", "02", "03"], [40, 40, 40])


def test_concatenated_npy_length_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "frame_labels_x.npy"
    np.save(path, np.zeros((1, 50), dtype=np.uint8))
    with pytest.raises(DatasetError, match="holds 50 labels but the 2 test videos have 60 frames"):
        load_labels(path, ["a", "b"], [30, 30])
    labels = load_labels(path, ["a", "b"], [20, 30])
    assert [len(x) for x in labels] == [20, 30]


def test_mask_folder(tmp_path: Path) -> None:
    np.save(tmp_path / "01_0014.npy", np.array([0, 1, 1, 0]))
    assert load_labels(tmp_path, ["01_0014"], [4])[0].tolist() == [0, 1, 1, 0]
    with pytest.raises(DatasetError, match="video 01_0014: 5 frames found but 4 labels given"):
        load_labels(tmp_path, ["01_0014"], [5])
    with pytest.raises(DatasetError, match="no frame mask for test video 02"):
        load_labels(tmp_path, ["02"], [4])


@needs_ped2
def test_real_ped2_mat_and_m_agree_with_npy() -> None:
    counts = [180, 180, 150, 180, 150, 180, 180, 180, 120, 150, 180, 180]
    names = [f"{i:02d}" for i in range(1, 13)]
    expected = np.load(PED2 / "frame_labels_ped2.npy").reshape(-1)
    assert read_mat_intervals(PED2 / "ped2.mat") == read_m_intervals(PED2 / "UCSDped2.m")
    for source in ("ped2.mat", "UCSDped2.m", "frame_labels_ped2.npy"):
        labels = np.concatenate(load_labels(PED2 / source, names, counts))
        assert np.array_equal(labels, expected), source
    assert int(expected.sum()) == 1648
