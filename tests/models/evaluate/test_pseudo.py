"""The pseudo-anomaly yardstick (models/evaluate/pseudo.py) and scripts/curve.py, which chooses recipes with it:
injections change only their frames and region, the set is deterministic, the AUC tells a signal from noise, and a
run's snapshots become curve points, a table and a plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from models.calibration import fit_calibration
from models.evaluate.metrics import roc_auc
from models.evaluate.pseudo import (
    ALL_KINDS,
    inject_fast,
    inject_object,
    pseudo_auc,
    pseudo_online,
    pseudo_set,
    resampled_auc,
)
from models.train.config import load_train_config
from models.train.loop import train
from tests.synthetic import render_frames, write_frame_folder

REPO = Path(__file__).resolve().parents[3]


def _walkers(n: int = 80, seed: int = 0) -> np.ndarray:
    """(n, 48, 64) gray footage with two blocks walking across a textured background."""
    rng = np.random.default_rng(seed)
    frames = np.tile(rng.integers(60, 120, (48, 64), dtype=np.uint8), (n, 1, 1))
    for t in range(n):
        frames[t, 10:18, (t + 5) % 56 : (t + 5) % 56 + 8] = 200
        frames[t, 30:38, (2 * t) % 56 : (2 * t) % 56 + 8] = 220
    return frames


def test_fast_region_changes_only_its_box_and_frames() -> None:
    frames = _walkers()
    out = inject_fast(frames, start=20, length=10, speed=2, rng=np.random.default_rng(0))
    changed = np.any(out != frames, axis=(1, 2))
    assert not changed[:20].any()
    assert not changed[30:].any()
    assert changed[21:30].all()  # k=0 copies frame 20 onto itself
    ys, xs = np.nonzero(np.any(out[20:30] != frames[20:30], axis=0))
    assert ys.max() - ys.min() < 48 // 3 + 1
    assert xs.max() - xs.min() < 64 // 4 + 1
    # Inside the box, frame 20 + k shows frame 20 + 2k: the region runs twice as fast.
    y, x = ys.min(), xs.min()
    assert np.array_equal(out[25, y : ys.max() + 1, x : xs.max() + 1], frames[30, y : ys.max() + 1, x : xs.max() + 1])


def test_object_glides_inside_its_frames_only() -> None:
    frames = _walkers()
    donor = _walkers(seed=1)[40]
    out = inject_object(frames, donor, start=30, length=20, rng=np.random.default_rng(3))
    changed = np.any(out != frames, axis=(1, 2))
    assert not changed[:30].any()
    assert not changed[50:].any()
    assert changed[30:50].sum() >= 18
    area = [np.count_nonzero(out[t] != frames[t]) for t in range(30, 50)]
    assert max(area) <= (48 // 6) * (64 // 12)  # one walker-sized patch
    centre = [np.argwhere(out[t] != frames[t]).mean(axis=0) for t in (30, 49) if (out[t] != frames[t]).any()]
    assert np.linalg.norm(centre[1] - centre[0]) > 20  # 3-6 px a frame for 19 frames


def test_shape_object_is_turned_doubled_and_slow() -> None:
    frames = _walkers()
    donor = _walkers(seed=1)[40]
    out = inject_object(frames, donor, start=30, length=20, rng=np.random.default_rng(3), reshape=True)
    changed = np.any(out != frames, axis=(1, 2))
    assert not changed[:30].any()
    assert not changed[50:].any()
    boxes = [np.argwhere(out[t] != frames[t]) for t in range(30, 50) if (out[t] != frames[t]).any()]
    assert len(boxes) >= 18
    # A walker's patch is 8 x 5 at 48 x 64; turned and doubled it is 10 x 16: wider than high, larger than a walker.
    heights = [b[:, 0].max() - b[:, 0].min() + 1 for b in boxes]
    widths = [b[:, 1].max() - b[:, 1].min() + 1 for b in boxes]
    assert max(heights) <= 10 < max(widths) + 1 <= 17
    assert max(len(b) for b in boxes) > (48 // 6) * (64 // 12)
    travel = np.linalg.norm(boxes[-1].mean(axis=0) - boxes[0].mean(axis=0))
    assert 8 < travel < 45  # 1-2 px a frame for 19 frames (the object kind moves 3-6)


def test_pseudo_set_is_deterministic_and_labelled() -> None:
    videos = [("a", _walkers(seed=0)), ("b", _walkers(seed=1)), ("short", _walkers(n=40, seed=2))]
    one, two = pseudo_set(videos, repeats=2, seed=7), pseudo_set(videos, repeats=2, seed=7)
    names = [v.name for v in one]
    assert names == ["a", "a+fast0", "a+object0", "a+fast1", "a+object1",
                     "b", "b+fast0", "b+object0", "b+fast1", "b+object1", "short"]  # fmt: skip
    for x, y in zip(one, two, strict=True):
        assert np.array_equal(x.frames, y.frames)
        assert np.array_equal(x.labels, y.labels)
    for v in one:
        clean = "+" not in v.name
        assert v.labels.sum() == (0 if clean else 30)
        if not clean:
            (span,) = np.nonzero(np.diff(np.concatenate([[0], v.labels, [0]])))[0].reshape(1, 2)
            assert span[1] - span[0] == 30
    assert not np.array_equal(pseudo_set(videos, seed=8)[1].frames, one[1].frames)
    # The shape kind is opt-in: asking for it adds its events and leaves the default set's draws as they were.
    every = pseudo_set(videos[:1], repeats=1, seed=7, kinds=ALL_KINDS)
    assert [v.name for v in every] == ["a", "a+fast0", "a+object0", "a+shape0"]
    assert np.array_equal(every[1].frames, pseudo_set(videos[:1], repeats=1, seed=7)[1].frames)


def test_pseudo_auc_tells_a_signal_from_noise() -> None:
    videos = pseudo_set([("a", _walkers(seed=0)), ("b", _walkers(seed=1))], repeats=2)
    context, rng = 4, np.random.default_rng(0)
    truth = [v.labels[context:] * 5.0 + rng.normal(0, 1, len(v.labels) - context) for v in videos]
    noise = [rng.normal(0, 1, len(v.labels) - context) for v in videos]
    clean = np.concatenate([n for n, v in zip(noise, videos, strict=True) if "+" not in v.name])
    calibration = fit_calibration(clean[:, None], ["s"])
    good = pseudo_auc([t[:, None] for t in truth], videos, context, calibration)
    bad = pseudo_auc([n[:, None] for n in noise], videos, context, calibration)
    assert good["online_micro_auc"] > 0.95
    assert good["online_micro_auc_fast"] > 0.95
    assert good["online_micro_auc_object"] > 0.95
    assert 0.35 < bad["online_micro_auc"] < 0.65
    assert good["anomalous"] == sum(int(v.labels[context:].sum()) for v in videos) > 6 * 30  # 8 events


def test_resamples_are_whole_videos_drawn_alike_for_every_model() -> None:
    videos = pseudo_set([("a", _walkers(seed=0)), ("b", _walkers(seed=1))], repeats=2)
    context, rng = 4, np.random.default_rng(0)
    strong = [v.labels[context:] * 3.0 + rng.normal(0, 1, len(v.labels) - context) for v in videos]
    weak = [v.labels[context:] * 1.0 + rng.normal(0, 1, len(v.labels) - context) for v in videos]
    clean = np.concatenate([w for w, v in zip(weak, videos, strict=True) if "+" not in v.name])
    calibration = fit_calibration(clean[:, None], ["s"])
    scores, labels, kinds = pseudo_online([x[:, None] for x in strong], videos, context, calibration)
    assert len(scores) == len(labels) == len(kinds) == len(videos)
    assert (
        roc_auc(np.concatenate(labels), np.concatenate(scores))
        == pseudo_auc([x[:, None] for x in strong], videos, context, calibration)["online_micro_auc"]
    )
    weak_scores, _, _ = pseudo_online([x[:, None] for x in weak], videos, context, calibration)
    a, b = resampled_auc(scores, labels, 200), resampled_auc(weak_scores, labels, 200)
    assert np.array_equal(a, resampled_auc(scores, labels, 200))  # the same draws every time (fixed seed)
    assert np.array_equal(resampled_auc(scores, labels, 200), resampled_auc(list(scores), labels, 200))
    assert a.std() > 0  # the draws differ from each other
    assert (a - b > 0).mean() > 0.95  # paired: the strong signal beats the weak one in (nearly) every draw
    # A draw of whole videos: with one video per draw the AUC is that video's own, never a mix of frames.
    one = resampled_auc(scores[1:2], labels[1:2], 5)
    assert np.allclose(one, roc_auc(labels[1], scores[1]))


@pytest.fixture(scope="module")
def long_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ped2 layout with videos long enough for pseudo events (80 frames): 3 training, 1 test."""
    root = tmp_path_factory.mktemp("long")
    write_frame_folder(root, {f"{i:02d}": render_frames(80, (64, 64), None, seed=i)[0] for i in (1, 2, 3)})
    write_frame_folder(root, {"01": render_frames(80, (64, 64), (40, 60), seed=11)[0]}, "testing")
    gt = np.empty((1, 1), dtype=object)
    gt[0, 0] = np.array([[41], [60]])
    savemat(root / "long.mat", {"gt": gt})
    return root


def test_curve_points_table_and_plot_from_a_runs_snapshots(long_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = load_train_config(
        REPO / "models" / "configs" / "ffp_tiny.yaml",
        [f"data.root={long_dataset}", f"out_dir={out}", "steps=100000", "register.enabled=false",
         "max_cpu_minutes=0.025", "snapshot_cpu_minutes=[0.01,0.02]", "checkpoint_every=100000"],
    )  # fmt: skip
    train(cfg)
    points = tmp_path / "points.json"
    script = [sys.executable, str(REPO / "scripts" / "curve.py")]
    done = subprocess.run(
        [*script, "points", str(out), "--out", str(points), "--test", "--signals", "neg_psnr", "neg_patch_psnr",
         "neg_patch_psnr_local", "neg_patch_psnr+neg_patch_psnr_contrast", "--patch", "8",
         "--kinds", "fast", "object", "shape"],
        capture_output=True, text=True, cwd=REPO, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(points.read_text())
    both = ["neg_patch_psnr", "neg_patch_psnr_contrast"]
    assert [(r["snapshot"], r["signals"]) for r in rows] == [
        ("cpu_00000.01min", ["neg_psnr"]), ("cpu_00000.01min", ["neg_patch_psnr"]),
        ("cpu_00000.01min", ["neg_patch_psnr_local"]),  # its reference fitted on the run's training videos
        ("cpu_00000.01min", both),
        ("cpu_00000.02min", ["neg_psnr"]), ("cpu_00000.02min", ["neg_patch_psnr"]),
        ("cpu_00000.02min", ["neg_patch_psnr_local"]), ("cpu_00000.02min", both),
    ]  # fmt: skip
    assert rows[0]["label"] == "run patch=8 neg_psnr kinds=fast+object+shape"
    assert rows[0]["step"] < rows[4]["step"]
    for r in rows:
        assert 0 <= r["pseudo"]["online_micro_auc"] <= 1
        assert r["pseudo"]["anomalous"] > 0
        assert {"online_micro_auc_fast", "online_micro_auc_object", "online_micro_auc_shape"} <= set(r["pseudo"])
        assert 0 <= r["test"]["online_micro_auc"] <= 1
    table = subprocess.run([*script, "table", str(points)], capture_output=True, text=True, cwd=REPO, check=True)
    lines = table.stdout.strip().splitlines()
    assert len(lines) == 2 + 8
    assert "pseudo AUC (fast / object / shape)" in lines[0]
    assert lines[2].startswith("| run patch=8 neg_patch_psnr kinds=fast+object+shape | ")
    png = tmp_path / "curves.png"
    subprocess.run([*script, "plot", str(points), "--out", str(png)], capture_output=True, cwd=REPO, check=True)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curve_models_scores_a_registered_version(long_dataset: Path, tmp_path: Path) -> None:
    """Versions fitted without snapshots (flowmem) get points on the same yardstick, from the registry."""
    registry = tmp_path / "registry"
    cfg = load_train_config(
        REPO / "models" / "configs" / "flowmem_tiny.yaml",
        [f"data.root={long_dataset}", f"out_dir={tmp_path / 'run'}", f"register.registry={registry}"],
    )
    train(cfg)
    points = tmp_path / "points.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "curve.py"), "models", "flowmem-tiny@v1", "--registry", str(registry),
         "--dataset", str(long_dataset), "--num-val", "1", "--signals", "motion_knn", "motion_knn+appearance_knn",
         "--kinds", "fast", "shape", "--repeats", "2", "--alerts", "--fps", "10", "--resamples", "50",
         "--out", str(points)],
        capture_output=True, text=True, cwd=REPO, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(points.read_text())
    assert [r["label"] for r in rows] == [
        "flowmem-tiny@v1 motion_knn kinds=fast+shape repeats=2",
        "flowmem-tiny@v1 motion_knn+appearance_knn kinds=fast+shape repeats=2",
    ]
    for r in rows:
        assert r["method"] == "flowmem"
        assert r["step"] > 0
        assert set(r["pseudo"]) >= {"online_micro_auc_fast", "online_micro_auc_shape"}
        assert "online_micro_auc_object" not in r["pseudo"]
        assert "test" not in r
        alerts = r["alerts"]  # the alert yardstick at the shipped settings (service/alerts/yardstick.py)
        assert alerts["events"] == 4  # the held-out video x 2 repeats x 2 kinds
        assert 0 <= alerts["detected"] <= 4
        assert {"recall_fast", "recall_shape"} <= set(alerts)
        assert alerts["false_alerts_per_hour"] is not None
        assert 0 <= alerts["normal_in_alerts"] <= 1
    table = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "curve.py"), "table", str(points)],
        capture_output=True, text=True, cwd=REPO, check=True,
    )  # fmt: skip
    header, rule, *body = table.stdout.strip().splitlines()
    assert "pseudo events detected (fast / shape) | false alerts / h | normal time in alerts |" in header
    assert rule.count("|---") == 9
    assert all(line.count(" | ") == 8 for line in body)
    base = "flowmem-tiny@v1 motion_knn kinds=fast+shape repeats=2"
    assert all(len(r["pseudo_resampled"]) == 50 for r in rows)
    compared = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "curve.py"), "compare", str(points), "--base", base],
        capture_output=True, text=True, cwd=REPO, check=True,
    )  # fmt: skip
    header, _, first, second = compared.stdout.strip().splitlines()
    assert "minus flowmem-tiny@v1 motion_knn kinds=fast+shape repeats=2 (paired, 95%)" in header
    assert "+0.0000 (+0.0000 to +0.0000) | 0% |" in first  # the base against itself
    assert second.startswith("| flowmem-tiny@v1 motion_knn+appearance_knn")
    wrong = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "curve.py"), "compare", str(points), "--base", "nope"],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert wrong.returncode == 1
    assert "--base must name exactly one row's label" in wrong.stdout
    typo = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "curve.py"), "models", "flowmem-tiny@v1", "--registry", str(registry),
         "--dataset", str(long_dataset), "--num-val", "1", "--signals", "motion_knn+apperance_knn",
         "--out", str(tmp_path / "typo.json")],
        capture_output=True, text=True, cwd=REPO, timeout=300, check=False,
    )  # fmt: skip
    assert typo.returncode == 1
    assert "--signals names apperance_knn, which flowmem-tiny@v1 does not give" in typo.stderr
    assert not (tmp_path / "typo.json").exists()
