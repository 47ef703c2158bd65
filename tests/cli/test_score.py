"""`vigil score` end to end on a real H.264 clip with a registered tiny FFP."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from cli.main import main
from models.data.video import open_video
from models.inference import score_video
from models.io import load_model
from models.store import ModelStore
from tests.calibration_util import card_camera_reference, offline_scores


def test_score_writes_csv_json_png(
    tiny_registry: Path, synthetic_video: tuple[Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, labels = synthetic_video
    out = tmp_path / "out"
    rc = main(
        [
            "score",
            str(path),
            "--model",
            "tiny@v1",
            "--registry",
            str(tiny_registry),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--batch-size",
            "3",
        ]
    )
    assert rc == 0
    assert "clip: 64 frames, max score" in capsys.readouterr().out
    method, card, _ = load_model(ModelStore(tiny_registry), "tiny@v1")
    context = method.input_spec.context
    assert card.calibration is not None

    with (out / "clip.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(labels)
    assert [r["frame"] for r in rows[:3]] == ["0", "1", "2"]
    assert float(rows[1]["pts"]) == pytest.approx(0.04)
    assert all(r["score"] == "" for r in rows[:context])
    scores = np.array([float(r["score"]) for r in rows[context:]])
    assert ((scores >= 0) & (scores <= 1)).all()
    # The numbers a camera with the card's reference (the default --learn-from card) publishes for these frames.
    _, raw = score_video(method, open_video(path))
    reference = card_camera_reference(card.calibration, "tiny@v1")
    expected = offline_scores(card.calibration, "tiny@v1", raw.astype(np.float64), reference).scores
    np.testing.assert_allclose(scores, expected, atol=2e-6)
    assert all(r["alertable"] == "1" for r in rows[context:])
    signal = method.signal_names[0]
    np.testing.assert_allclose([float(r[signal]) for r in rows[context:]], raw[:, 0], rtol=1e-5)

    doc = json.loads((out / "clip.json").read_text())
    assert doc["model"] == "tiny@v1"
    assert doc["context"] == context
    assert len(doc["frames"]) == len(labels)
    assert doc["frames"][0]["score"] is None
    assert doc["frames"][context]["score"] == pytest.approx(expected[0])
    assert (out / "clip.png").read_bytes()[:4] == b"\x89PNG"


def test_score_frame_folder_and_uncalibrated_model(
    tiny_registry: Path, synthetic_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = synthetic_dataset / "testing" / "frames" / "02"
    rc = main(
        [
            "score",
            str(folder),
            "--model",
            "raw-only",
            "--registry",
            str(tiny_registry),
            "--out",
            str(tmp_path),
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    assert "has no calibration" in capsys.readouterr().out
    doc = json.loads((tmp_path / "02.json").read_text())
    assert doc["calibrated"] is False
    assert len(doc["frames"]) == 40
    assert all(fr["score"] is None for fr in doc["frames"])
    assert doc["frames"][-1]["raw"] is not None


def test_score_bad_input(tiny_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score", str(tmp_path / "nope.mp4"), "--model", "tiny", "--registry", str(tiny_registry)]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["score", str(tmp_path), "--model", "missing", "--registry", str(tiny_registry)]) == 1
    assert "no model named 'missing'" in capsys.readouterr().err


def test_replay_reproduces_the_alerts_of_vigil_score_and_tries_other_parameters(
    tiny_registry: Path, synthetic_video: tuple[Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = synthetic_video
    out = tmp_path / "scored"
    base = ["--model", "tiny@v1", "--registry", str(tiny_registry), "--device", "cpu"]
    assert main(["score", str(path), *base, "--out", str(out), "--learn-from", "first", "--learn-s", "0.5"]) == 0
    written = json.loads((out / "clip.alerts.json").read_text())
    capsys.readouterr()
    # The same parameters: the same alerts as vigil score found (held-back frames stay held back).
    assert main(["replay", str(out), "--out", str(tmp_path / "same.json")]) == 0
    same = json.loads((tmp_path / "same.json").read_text())["results"][0]["alerts"]
    key = ("start_frame", "end_frame", "peak_frame", "peak_score")
    assert [[a[k] for k in key] for a in same] == [[a[k] for k in key] for a in written["alerts"]]
    # A stricter threshold never gives more alert frames.
    assert main(["replay", str(out), "--threshold", "0.95", "--out", str(tmp_path / "strict.json")]) == 0
    strict = json.loads((tmp_path / "strict.json").read_text())["results"][0]["alerts"]

    def frames(alerts: list[dict]) -> int:
        return sum(a["end_frame"] - a["start_frame"] + 1 for a in alerts if a["end_frame"] is not None)

    assert frames(strict) <= frames(same)
    assert main(["replay", str(tmp_path / "nothing-here")]) == 1
    assert "no `vigil score` output" in capsys.readouterr().err
    assert main(["replay", str(out), "--threshold", "1.5"]) == 2  # validated: 0 < threshold < 1
