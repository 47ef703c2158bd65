"""DAST-Net: scoring matches the clip reconstruction, training lowers the loss, the trainer registers it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from models.io import load_model
from models.methods.dast import DastConfig, DastNet
from models.store import ModelStore
from models.train.config import TrainConfig
from models.train.loop import train
from models.train.objectives import build_objective


def _tiny(**overrides: object) -> DastNet:
    torch.manual_seed(0)
    return DastNet(DastConfig.model_validate({**DastConfig.tiny().model_dump(), **overrides})).eval()


@pytest.mark.parametrize("skip_levels", [3, 1, 0])
def test_score_is_minus_psnr_of_each_clips_reconstructed_last_frame(skip_levels: int) -> None:
    method = _tiny(skip_levels=skip_levels)
    assert len(method.gates) == skip_levels
    window = torch.rand(2, 7, 1, 32, 32, generator=torch.Generator().manual_seed(1))  # scores frames 4, 5, 6
    with torch.no_grad():
        scores = method.score(window)
        for i in range(3):
            clip = window[:, i : i + 5]
            recon = method(clip)  # (B, 5, 1, H, W), the full training-path reconstruction
            mse = (recon[:, -1] - clip[:, -1]).pow(2).mean(dim=(1, 2, 3))
            torch.testing.assert_close(scores[:, i, 0], 10 * torch.log10(mse), rtol=1e-4, atol=1e-4)


def test_reconstruction_keeps_clip_shape_and_range() -> None:
    method = _tiny()
    with torch.no_grad():
        recon = method(torch.rand(3, 5, 1, 32, 32))
    assert recon.shape == (3, 5, 1, 32, 32)
    assert recon.min() >= 0
    assert recon.max() <= 1


@pytest.mark.parametrize(
    ("overrides", "match"),
    [({"height": 36}, "multiples of 8"), ({"widths": (1, 8, 8, 16)}, "widths must be >= 2"), ({"depth": 3}, "extra")],
)
def test_bad_config_is_rejected_with_a_reason(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        DastConfig.model_validate({**DastConfig.tiny().model_dump(), **overrides})


def _train_config(root: Path, tmp_path: Path, steps: int) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "method": {"name": "dast", "preset": "tiny"},
            "data": {"root": str(root), "num_val": 1},
            "optim": {"lr": 2e-3, "lr_drop_step": None},
            "steps": steps,
            "batch_size": 2,
            "checkpoint_every": steps,
            "out_dir": str(tmp_path / "run"),
            "register": {"registry": str(tmp_path / "registry"), "name": "dast-test"},
        }
    )


def test_objective_lowers_the_loss_on_a_fixed_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    method = DastNet(DastConfig.tiny())
    cfg = _train_config(tmp_path, tmp_path, steps=1)
    objective = build_objective(method, cfg, torch.device("cpu"))
    # A smooth moving gradient: learnable within a few dozen steps even by the tiny network.
    ramp = torch.linspace(0, 1, 32)
    clip = torch.stack([(ramp[None, :] + 0.03 * t).remainder(1).expand(32, 32) for t in range(5)])[:, None]
    batch = clip[None].repeat(2, 1, 1, 1, 1)  # (2, 5, 1, 32, 32)
    first = objective.step(batch)["loss"]
    for _ in range(20):
        last = objective.step(batch)["loss"]
    assert last < 0.7 * first


def test_trains_on_the_synthetic_dataset_and_registers(synthetic_dataset: Path, tmp_path: Path) -> None:
    result = train(_train_config(synthetic_dataset, tmp_path, steps=3))
    assert result.ref == "dast-test@v1"
    method, card, _ = load_model(ModelStore(tmp_path / "registry"), "dast-test")
    assert card.calibration is not None
    assert [s.name for s in card.calibration.signals] == ["neg_psnr"]
    assert card.metrics["train"]["steps"] == 3
    with torch.no_grad():
        scores = method.score(torch.rand(1, 6, 1, 32, 32))
    assert scores.shape == (1, 2, 1)
    assert torch.isfinite(scores).all()


def test_patch_signal_is_opt_in_and_leaves_the_published_one_unchanged() -> None:
    torch.manual_seed(0)
    both = DastNet(DastConfig.tiny().model_copy(update={"signals": ("frame", "patch"), "patch": 8})).eval()
    plain = DastNet(DastConfig.tiny()).eval()
    plain.load_state_dict(both.state_dict())
    window = torch.rand(2, 4 + 3, 1, 32, 32)
    with torch.no_grad():
        out, ref = both.score(window), plain.score(window)
    assert both.signal_names == ("neg_psnr", "neg_patch_psnr")
    torch.testing.assert_close(out[..., :1], ref)
    assert (out[..., 1] >= out[..., 0]).all()  # the worst 8x8 window is predicted no better than the frame
