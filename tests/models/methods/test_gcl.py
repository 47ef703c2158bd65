"""gcl: config checks, snippet tiling of a window, negative learning, training through `vigil train`, round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from models.evaluate.metrics import roc_auc
from models.io import load_model
from models.methods.gcl import Gcl, GclConfig
from models.registry import get_method
from models.store import ModelStore
from models.train.config import load_train_config
from models.train.loop import train
from models.train.objectives.gcl import PSEUDO_TARGET, GclObjective, GclOptim

TINY_YAML = Path(__file__).resolve().parents[3] / "models" / "configs" / "gcl_tiny.yaml"
LR = GclOptim(generator_lr=1e-3, discriminator_lr=1e-3)


def tiny() -> Gcl:
    torch.manual_seed(0)
    return Gcl(GclConfig.tiny()).eval()


def test_config_errors_say_what_fits() -> None:
    with pytest.raises(ValidationError, match="does not match the I3D"):
        GclConfig(feature_dim=512)
    with pytest.raises(ValidationError, match="backbone=random"):
        GclConfig(size=112)
    with pytest.raises(ValidationError, match="extra"):
        get_method("gcl").make_config("tiny", hidden=3)


def test_each_scored_frame_gets_the_snippet_ending_at_it() -> None:
    method = tiny()
    window = torch.rand(2, 15 + 20, 3, 64, 64) * 0.2
    window[:, 19:] += 0.8  # a bright change, so snippets ending at different frames have different features
    with torch.no_grad():
        out = method.score(window)  # 20 scored frames: window indices 15..34
        for i in (0, 4, 19):
            end = 15 + i
            expected = method.snippet_signals(method.features(window[:, end - 15 : end + 1]))  # (2, S)
            torch.testing.assert_close(out[:, i], expected)
        # The same frames scored through a shorter window give the same signals (no dependence on windowing).
        torch.testing.assert_close(method.score(window[:, 10:])[:, -10:], out[:, -10:])
    assert out.shape == (2, 20, 2)
    assert out.dtype == torch.float32
    assert not torch.allclose(out[:, 0], out[:, 19])
    with pytest.raises(ValueError, match="more than 15 context frames"):
        method.score(torch.rand(1, 15, 3, 64, 64))


def test_negative_learning_targets_input_for_normal_and_pseudo_target_for_anomalies() -> None:
    method = tiny()
    objective = GclObjective(method, total_steps=10, optim=LR)
    features = torch.rand(8, method.config.feature_dim)
    anomalous = torch.tensor([True, False, False, True, False, False, False, False])
    method.train()
    with torch.no_grad():
        recon = method.generator(features)
    expected_target = features.clone()
    expected_target[anomalous] = PSEUDO_TARGET
    expected = torch.nn.functional.mse_loss(recon, expected_target).item()
    wrong = torch.nn.functional.mse_loss(recon, features).item()
    got = objective._generator_step(features, anomalous)
    assert got == pytest.approx(expected, rel=1e-5)
    assert abs(got - wrong) > 1e-3  # the anomalies' target really is different


def test_phases_run_in_order() -> None:
    objective = GclObjective(tiny(), total_steps=10, optim=LR)
    phases, keys = [], []
    for _ in range(10):
        phases.append(objective.phase)
        keys.append(set(objective.step_features(torch.rand(16, 128))))
    assert phases == ["pretrain_g"] * 2 + ["pretrain_d"] + ["cooperative"] * 7
    assert keys[0] == {"g"}
    assert keys[2] == {"d"}
    assert keys[-1] == {"g", "d", "d_flagged"}


def test_cooperative_training_separates_unlabelled_outliers() -> None:
    """Unsupervised: 10% of the training features come from another distribution; no labels are given."""
    torch.manual_seed(0)
    basis = torch.randn(8, 128)
    normal = torch.relu(torch.randn(270, 8) @ basis * 0.1 + 0.5)  # low-rank cluster, like I3D features
    outliers = torch.relu(torch.randn(30, 128) * 0.4 + 0.5)
    features = torch.cat([normal, outliers])
    labels = np.r_[np.zeros(270), np.ones(30)]
    method = Gcl(GclConfig.tiny())
    objective = GclObjective(method, total_steps=60, optim=LR)
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        objective.step_features(features[torch.randperm(300, generator=generator)[:64]])
    method.eval()
    with torch.no_grad():
        signals = method.snippet_signals(features).numpy()
    # Measured 0.83 (D) and 0.90 (G) at this seed; an untrained or label-inverted pair sits near or below 0.5.
    assert roc_auc(labels, signals[:, 0]) > 0.75  # discriminator probability
    assert roc_auc(labels, signals[:, 1]) > 0.85  # reconstruction error


def test_kinetics_backbone_needs_a_weights_path() -> None:
    method = Gcl(GclConfig.small())
    with pytest.raises(ValueError, match="convert-i3d"):
        method.load_pretrained()


@pytest.mark.slow
def test_trains_with_vigil_train_and_round_trips(synthetic_dataset: Path, tmp_path: Path) -> None:
    cfg = load_train_config(
        TINY_YAML,
        [f"data.root={synthetic_dataset}", f"out_dir={tmp_path / 'run'}", f"register.registry={tmp_path / 'reg'}"],
    )
    result = train(cfg)
    assert result.ref == "gcl-tiny@v1"
    assert set(result.metrics["train"]["losses"]) == {"g", "d", "d_flagged"}
    method, card, _ = load_model(ModelStore(tmp_path / "reg"), "gcl-tiny")
    assert card.calibration is not None
    assert [s.name for s in card.calibration.signals] == ["disc_prob", "recon_error"]
    again, _, _ = load_model(ModelStore(tmp_path / "reg"), "gcl-tiny@v1")
    window = torch.rand(1, 15 + 8, 3, 64, 64)
    with torch.no_grad():
        scores = method.score(window)
        torch.testing.assert_close(scores, again.score(window))
    assert scores.shape == (1, 8, 2)
    assert torch.isfinite(scores).all()
    # The trainer seeds, then builds the method: the same seed rebuilds the backbone it started from. The frozen
    # I3D must come back unchanged (saved with the model, never trained), G must have moved.
    torch.manual_seed(cfg.seed)
    initial = Gcl(GclConfig.tiny())
    for key, value in initial.i3d.state_dict().items():
        torch.testing.assert_close(method.i3d.state_dict()[key], value, msg=key)
    assert not torch.equal(method.generator[0].weight, initial.generator[0].weight)
