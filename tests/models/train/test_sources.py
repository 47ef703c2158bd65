"""The one training loop over every data source: each trains, checkpoints and resumes to the weights of an
uninterrupted run; bad input is refused in one line before any decoding."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

import models.train.loop as loop_module
from cli.main import main
from models.errors import IncompatibleCheckpointError
from models.features.cache import FeatureCache, FeatureCacheError, FeatureIndex
from models.features.extract import extract_dataset, feature_index, i3d_encoder
from models.methods.gcl import Gcl, GclConfig
from models.methods.vadclip import Vadclip, VadclipConfig
from models.train.checkpoint import TENSORS_FILE, list_checkpoints
from models.train.config import TrainConfig, load_train_config
from models.train.loop import train

CONFIGS = Path(__file__).resolve().parents[3] / "models" / "configs"
REPO = CONFIGS.parents[1]


@pytest.fixture(scope="module")
def weak(synthetic_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A weak split of the synthetic set, an I3D cache (gcl tiny's random I3D) and a CLIP cache (vadclip tiny's)."""
    root = tmp_path_factory.mktemp("weak")
    split = {
        "dataset": "synthetic",
        "train": {"normal": ["train/01", "train/02"], "anomalous": ["test/02"]},
        "calibration": ["train/03"],
        "test": ["test/01"],  # its anomaly (frames 20-29) lies where the causal protocol scores (frames 15-39)
    }
    (root / "split.yaml").write_text(yaml.safe_dump(split))
    torch.manual_seed(0)  # seed 0 then build: the backbone a run with seed=0 builds
    gcl = Gcl(GclConfig.tiny()).eval()
    i3d = FeatureCache.create_or_open(root / "i3d", feature_index(gcl.i3d, 64, "random:0", name="i3d-random"))
    extract_dataset(synthetic_dataset, i3d, i3d_encoder(gcl.i3d), 64)
    torch.manual_seed(0)
    vadclip = Vadclip(VadclipConfig.tiny()).eval()
    clip_index = FeatureIndex(
        backbone="clip-vigil-tiny", feature_dim=32, snippet_frames=16, weights_sha256="random:0", preprocessing="-"
    )
    clip = FeatureCache.create_or_open(root / "clip", clip_index)
    extract_dataset(synthetic_dataset, clip, vadclip.encode_snippets, 64)
    return {"split": root / "split.yaml", "i3d": root / "i3d", "clip": root / "clip"}


# (id, config file, overrides beyond data.root/out_dir/registry): one per method and data source.
RUNS = [
    ("ffp-clips", "ffp_tiny.yaml", ["steps=6", "checkpoint_every=2"]),
    ("dast-clips", "dast_tiny.yaml", ["steps=6", "checkpoint_every=2"]),
    ("f2lm-clips", "f2lm_tiny.yaml", ["steps=4", "checkpoint_every=2"]),
    ("gcl-clips", "gcl_tiny.yaml", ["steps=6", "checkpoint_every=2"]),
    ("flowmem-clips", "flowmem_tiny.yaml", ["checkpoint_every=2"]),  # epochs=1: 20 steps, the reservoir overflows
    ("gcl-snippets", "gcl_tiny.yaml", ["steps=10", "checkpoint_every=3", "batch_size=4", "split", "i3d"]),
    ("vadclip-videos", "vadclip_tiny.yaml", ["steps=6", "checkpoint_every=2", "split", "clip"]),
]


def _config(name: str, extra: list[str], dataset: Path, weak: dict[str, Path], out: Path, *more: str) -> TrainConfig:
    overrides = [f"data.root={dataset}", f"out_dir={out}", f"register.registry={out.parent / 'registry'}"]
    for item in extra:
        if item == "split":
            overrides.append(f"data.split={weak['split']}")
        elif item in ("i3d", "clip"):
            overrides.append(f"data.features={weak[item]}")
        else:
            overrides.append(item)
    return load_train_config(CONFIGS / name, [*overrides, *more])


def _weights(out: Path) -> dict[str, torch.Tensor]:
    tensors = load_file(str(list_checkpoints(out)[-1] / TENSORS_FILE))
    return {k: v for k, v in tensors.items() if k.startswith("t.objective.") and ".state." not in k}


class Killed(Exception):
    pass


def _dies_after(count: int, real: Any) -> Any:
    """open_source whose batches stop the run with an exception after `count` batches (a crash mid-run)."""

    def open_source(*args: Any) -> Any:
        source = real(*args)
        batches = source.batches

        def dying(start: int) -> Iterator[Any]:
            for i, batch in enumerate(batches(start)):
                if i == count:
                    raise Killed
                yield batch

        source.batches = dying
        return source

    return open_source


@pytest.mark.parametrize(("name", "extra"), [r[1:] for r in RUNS], ids=[r[0] for r in RUNS])
def test_every_source_trains_and_resumes_after_a_crash_to_the_same_weights(
    name: str,
    extra: list[str],
    synthetic_dataset: Path,
    weak: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    straight = train(_config(name, extra, synthetic_dataset, weak, tmp_path / "straight"))
    assert straight.ref is not None
    assert straight.metrics["train"]["data"] in {"clips", "snippets", "videos"}
    assert straight.metrics["train"]["train_cpu_s"] >= 0
    crashed = tmp_path / "crashed"
    with monkeypatch.context() as patch:
        patch.setattr(loop_module, "open_source", _dies_after(3, loop_module.open_source))
        with pytest.raises(Killed):
            train(_config(name, extra, synthetic_dataset, weak, crashed))
    assert list_checkpoints(crashed), "the crashed run left no checkpoint"
    resumed = train(_config(name, extra, synthetic_dataset, weak, crashed, "resume=auto"))
    assert resumed.metrics["train"]["steps"] == straight.metrics["train"]["steps"]
    expected, got = _weights(tmp_path / "straight"), _weights(crashed)
    assert expected.keys() == got.keys()
    assert any(".method." in k for k in expected)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)


def test_ffp_resumes_after_sigkill_to_the_uninterrupted_weights(synthetic_dataset: Path, tmp_path: Path) -> None:
    """A real kill (SIGKILL) of `vigil train` mid-run; resuming to step k + 4 equals a straight run of k + 4 steps."""
    out = tmp_path / "killed"
    args = [
        sys.executable, "-m", "cli.main", "train", str(CONFIGS / "ffp_tiny.yaml"), f"data.root={synthetic_dataset}",
        f"out_dir={out}", "steps=100000", "checkpoint_every=2", "register.enabled=false",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not any(int(c.name.split("_")[1]) >= 4 for c in list_checkpoints(out)):
            assert proc.poll() is None, "vigil train exited before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    step = int(list_checkpoints(out)[-1].name.split("_")[1])
    common = ("register.enabled=false", "checkpoint_every=2", f"steps={step + 4}")
    base = [f"data.root={synthetic_dataset}"]
    train(load_train_config(CONFIGS / "ffp_tiny.yaml", [*base, f"out_dir={out}", "resume=auto", *common]))
    train(load_train_config(CONFIGS / "ffp_tiny.yaml", [*base, f"out_dir={tmp_path / 'straight'}", *common]))
    expected, got = _weights(tmp_path / "straight"), _weights(out)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    text = (captured.out + captured.err).strip()
    assert len(text.splitlines()) == 1, text
    return text


def test_weak_method_without_a_split_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # data.root does not exist: an answer about the split shows nothing was opened or decoded first.
    args = ["train", str(CONFIGS / "vadclip_tiny.yaml"), "data.root=/nonexistent", "data.split=null"]
    assert main(args) == 2
    assert "set data.split (e.g. data.split=ped2_weak)" in _one_line(capsys)


def test_frame_method_with_a_split_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(CONFIGS / "ffp_tiny.yaml"), "data.root=/nonexistent", "data.split=ped2_weak"]) == 2
    assert "ffp trains on frame clips" in _one_line(capsys)


def test_cache_of_another_backbone_is_refused_before_decoding(
    weak: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", str(CONFIGS / "gcl_tiny.yaml"), "data.root=/nonexistent", f"data.split={weak['split']}"]
    assert main([*args, f"data.features={weak['clip']}"]) == 1
    line = _one_line(capsys)
    assert "holds 32-d clip-vigil-tiny features but gcl reads 128-d i3d-random features" in line
    with pytest.raises(FeatureCacheError, match=r"set data\.features to a cache made with that backbone"):
        train(load_train_config(CONFIGS / "gcl_tiny.yaml", [*args[2:], f"data.features={weak['clip']}"]))


def test_resume_from_another_methods_checkpoint_is_refused_before_decoding(
    synthetic_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    train(load_train_config(CONFIGS / "ffp_tiny.yaml", [f"data.root={synthetic_dataset}", f"out_dir={out}", "steps=2",
                                                         "register.enabled=false"]))  # fmt: skip
    capsys.readouterr()
    args = ["train", str(CONFIGS / "dast_tiny.yaml"), "data.root=/nonexistent", f"out_dir={out}", "--resume", "auto"]
    assert main(args) == 1
    line = _one_line(capsys)
    assert "is from a ffp run and this config trains dast: resume from a dast run's checkpoint" in line
    with pytest.raises(IncompatibleCheckpointError, match="from a ffp run"):
        train(load_train_config(CONFIGS / "dast_tiny.yaml", [f"data.root={synthetic_dataset}", f"out_dir={out}",
                                                              "resume=auto"]))  # fmt: skip


def test_cpu_budget_stops_the_run_and_snapshots_are_kept(synthetic_dataset: Path, tmp_path: Path) -> None:
    from models.train.checkpoint import list_snapshots

    out = tmp_path / "run"
    cfg = load_train_config(
        CONFIGS / "ffp_tiny.yaml",
        [f"data.root={synthetic_dataset}", f"out_dir={out}", "steps=100000", "register.enabled=false",
         "max_cpu_minutes=0.03", "snapshot_cpu_minutes=[0.01,0.02]", "checkpoint_every=1000"],
    )  # fmt: skip
    result = train(cfg)
    assert 1.8 <= result.metrics["train"]["train_cpu_s"] < 10
    assert [p.name for p in list_snapshots(out)] == ["cpu_00000.01min", "cpu_00000.02min"]
    assert len(list_checkpoints(out)) == 1  # the final one, written when the budget ran out
    # A snapshot registers as the end of a run would, here scored with another signal set (same weights).
    first = list_snapshots(out)[0]
    registry = tmp_path / "registry"
    assert main(["train", str(first), "method.signals=[patch]", "register.enabled=true", "register.name=snap",
                 "--registry", str(registry)]) == 0  # fmt: skip
    from models.io import load_model
    from models.store import ModelStore

    method, card, _ = load_model(ModelStore(registry), "snap@v1")
    assert method.signal_names == ("neg_patch_psnr",)
    assert card.calibration is not None
    assert [s.name for s in card.calibration.signals] == ["neg_patch_psnr"]
    assert card.metrics["train"]["snapshot"] == str(first)
    assert card.metrics["train"]["train_cpu_s"] < result.metrics["train"]["train_cpu_s"]
    snap = load_file(str(first / "method.safetensors"))
    assert all(torch.equal(method.state_dict()[k], v) for k, v in snap.items())
    # With the local signal the registration also fits each window's normal level on the training videos.
    assert main(["train", str(first), "method.signals=[patch,local]", "method.patch=16", "register.enabled=true",
                 "register.name=snap-local", "--registry", str(registry)]) == 0  # fmt: skip
    method, card, _ = load_model(ModelStore(registry), "snap-local@v1")
    assert method.window_reference.shape == (3, 3)  # 16x16 windows at stride 8 on the tiny preset's 32x32
    assert torch.isfinite(method.window_reference).all()
    assert [s.name for s in card.calibration.signals] == ["neg_patch_psnr", "neg_patch_psnr_local"]


def test_snapshot_registration_refuses_what_would_need_retraining(
    synthetic_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from models.train.checkpoint import list_snapshots

    out = tmp_path / "run"
    cfg = load_train_config(
        CONFIGS / "ffp_tiny.yaml",
        [f"data.root={synthetic_dataset}", f"out_dir={out}", "steps=3", "register.enabled=false",
         "snapshot_cpu_minutes=[0.0001]"],
    )  # fmt: skip
    train(cfg)
    (snapshot,) = list_snapshots(out)
    registry = tmp_path / "registry"
    assert main(["train", str(snapshot), "data.num_val=1", "--registry", str(registry)]) == 2
    assert "cannot change data.num_val=1" in capsys.readouterr().out
    assert main(["train", str(snapshot), "--resume", "auto", "--registry", str(registry)]) == 2
    assert "a snapshot is registered as it is" in capsys.readouterr().out
    assert main(["train", str(snapshot), "method.base_channels=8", "--registry", str(registry)]) == 1
    assert "do not fit the model built from its config" in capsys.readouterr().out
    assert not registry.exists() or not any(registry.iterdir())
