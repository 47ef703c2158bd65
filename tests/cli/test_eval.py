"""`vigil eval` end to end on the synthetic Ped2-layout dataset with a registered tiny FFP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from models.store import ModelStore


def test_eval_writes_report_and_records(
    tiny_registry: Path, synthetic_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval"
    rc = main(
        [
            "eval",
            "tiny@v1",
            "--dataset",
            str(synthetic_dataset),
            "--registry",
            str(tiny_registry),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--record",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "micro AUC" in printed
    assert "recorded the metrics" in printed
    report = json.loads((out / "eval.json").read_text())
    assert report["model"] == "tiny@v1"
    assert report["context"] == 4
    # 2 test videos x (40 frames - 4 context)
    assert report["paper"]["num_frames"] == 72
    assert report["paper"]["num_anomalous"] == 20
    assert set(report["paper"]["per_video_auc"]) == {"01", "02"}
    assert 0.0 <= report["online"]["micro_auc"] <= 1.0
    assert (out / "eval.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "signals.npz").is_file()
    # What an operator sees: the test videos through the camera calibration (learned from the training videos) and
    # the service's alert machine, back to back and one by one; each test video holds one anomalous event.
    assert "learned the camera's mono reference from" in printed  # the synthetic frames are grey: the mono profile
    for mode in ("stream", "per-video"):
        events = report["events"][mode]
        assert events["events"] == 2
        assert events["normal_frames"] == 72 - 20
        assert 0 <= events["detected"] <= 2
        assert events["false_alerts"] <= events["alerts"]
        assert 0.0 <= events["chance_recall"] <= 1.0
    assert report["alert_params"]["threshold"] == 0.5
    assert "training videos" in report["camera_calibration"]
    assert 0.0 <= report["camera"]["micro_auc"] <= 1.0
    assert (out / "events.png").read_bytes()[:4] == b"\x89PNG"
    card = ModelStore(tiny_registry).resolve("tiny@v1").card()
    assert card.metrics["eval"]["paper_micro_auc"] == pytest.approx(report["paper"]["micro_auc"])
    assert card.metrics["eval"]["online_micro_auc"] == pytest.approx(report["online"]["micro_auc"])
    assert card.metrics["eval"]["stream_recall"] == report["events"]["stream"]["recall"]
    assert len(card.metrics["eval"]["dataset_fingerprint"]) == 64


def test_eval_without_calibration_skips_online(
    tiny_registry: Path, synthetic_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        [
            "eval",
            "raw-only",
            "--dataset",
            str(synthetic_dataset),
            "--registry",
            str(tiny_registry),
            "--out",
            str(tmp_path),
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    assert "online protocol skipped: the model card has no calibration" in capsys.readouterr().out
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["online"] is None


def test_eval_bad_input(
    tiny_registry: Path, synthetic_video: tuple[Path, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", "tiny", "--dataset", str(tmp_path / "none"), "--registry", str(tiny_registry)]) == 1
    assert "dataset path" in capsys.readouterr().err
    # a plain video has no ground truth
    args = [
        "eval",
        "tiny",
        "--dataset",
        str(synthetic_video[0]),
        "--registry",
        str(tiny_registry),
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 1
    assert "has no ground truth for test videos clip" in capsys.readouterr().err


def test_eval_on_a_weak_split_scores_only_its_test_videos(
    tiny_registry: Path, synthetic_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    def split_file(test: list[str]) -> Path:
        path = tmp_path / f"split-{len(test)}-{test[0].replace('/', '_')}.yaml"
        split = {"dataset": "synthetic", "train": {"normal": ["train/01"]}, "calibration": ["train/02"], "test": test}
        path.write_text(yaml.safe_dump(split))
        return path

    base = ["eval", "tiny@v1", "--dataset", str(synthetic_dataset), "--registry", str(tiny_registry)]
    out = tmp_path / "eval"
    assert main([*base, "--split", str(split_file(["test/02"])), "--out", str(out), "--record"]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert set(report["paper"]["per_video_auc"]) == {"02"}
    assert report["paper"]["num_frames"] == 36
    assert ModelStore(tiny_registry).resolve("tiny@v1").card().metrics["eval"]["videos"] == ["02"]
    capsys.readouterr()
    assert main([*base, "--split", str(split_file(["test/99"]))]) == 1
    assert "tests on videos ['99']" in capsys.readouterr().err


def test_eval_heatmaps_measures_pixel_localisation(
    tiny_registry: Path, synthetic_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--heatmaps` with per-frame masks of the synthetic anomaly (tests/synthetic.py: an 8x8 block at 250)."""
    import shutil

    import numpy as np

    from tests.synthetic import render_frames

    root = tmp_path / "dataset"
    shutil.copytree(synthetic_dataset, root)
    masks = {}
    for i, span in enumerate([(20, 30), (5, 15)], start=1):  # as conftest.synthetic_dataset renders them
        frames = render_frames(40, (64, 64), span, seed=10 + i)[0]
        masks[f"Test{i:03d}_gt"] = frames[..., 0] == 250
    np.savez_compressed(root / "pixel_masks_synthetic.npz", **masks)
    out = tmp_path / "eval"
    args = ["eval", "tiny@v1", "--dataset", str(root), "--registry", str(tiny_registry), "--out", str(out)]
    assert main([*args, "--device", "cpu", "--heatmaps"]) == 0
    heat = json.loads((out / "eval.json").read_text())["heatmaps"]
    assert heat["map_grid"] == [32, 32]  # the tiny model's 32x32 input: one cell per input pixel
    assert heat["compare_grid"] == [16, 16]  # masks at 64x64 / 4
    assert (heat["frames"], heat["anomalous_frames"]) == (72, 20)
    assert heat["chance"]["random"] == 0.5
    assert {"centre_prior", "frame_difference", "frame_difference_anomalous_frames"} <= set(heat["chance"])
    # The block is new in every anomalous frame and brighter than anything normal: even a tiny model finds it.
    assert heat["pixel_auc"] > 0.8
    assert heat["pixel_auc_anomalous_frames"] > 0.8
    frames = heat["peaks_masked_frames"]
    assert frames["frames"] == frames["masked"] == 20
    assert frames["chance"]["random"] == pytest.approx(8 * 8 / (64 * 64))
    assert frames["peak_in_mask"] > 0.5  # the brightest error is on the block in most anomalous frames
    assert set(heat["peaks_alerts"]) == {"stream", "per-video"}
    for peaks in heat["peaks_alerts"].values():
        assert peaks["masked"] <= peaks["frames"]
        if peaks["frames"]:
            assert 0.0 <= peaks["peak_in_mask"] <= 1.0
            assert {"random", "frame_difference"} == set(peaks["chance"])
    assert "pixel AUC" in capsys.readouterr().out
