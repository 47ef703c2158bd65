"""F2LM: pretrained label backbone, per-call and training stream caches, Destroyer loss, two-phase training."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from matplotlib import cbook
from scipy.ndimage import gaussian_filter

from models.io import load_model
from models.methods.f2lm import F2lm, F2lmConfig, fit_signal_weights
from models.methods.f2lm_streams import StreamCache
from models.pretrained.efficientnet_lite0 import load_pretrained
from models.store import ModelStore
from models.train.config import TrainConfig
from models.train.loop import train
from models.train.objectives.f2lm import corrupt_patches, destroyer_loss, patch_weights

MILITARY_UNIFORM = 652  # ImageNet class of the Grace Hopper portrait that matplotlib ships


@pytest.fixture(scope="module")
def tiny() -> F2lm:
    torch.manual_seed(0)
    return F2lm(F2lmConfig.tiny()).eval()


def _moving_video(num_frames: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """(T, 3, size, size) in [0, 1]: a smooth texture translating 1 px per frame, so flows are non-trivial."""
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.random((size, size * 2)).astype(np.float32), (7, 7), 0)
    frames = [np.repeat(texture[None, :, t : t + size], 3, axis=0) for t in range(num_frames)]
    return torch.from_numpy(np.stack(frames))


def test_efficientnet_lite0_recognises_a_real_photo() -> None:
    img = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), cv2.IMREAD_COLOR)
    assert img is not None
    rgb = cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        probs = load_pretrained()(x).softmax(dim=1)[0]
    assert int(probs.argmax()) == MILITARY_UNIFORM
    assert float(probs.max()) > 0.3


def test_label_backbone_stays_frozen_when_the_method_trains(tiny: F2lm) -> None:
    tiny.train()
    try:
        assert not tiny.backbone.training
        assert not any(p.requires_grad for p in tiny.backbone.parameters())
        assert tiny.generator.training
    finally:
        tiny.eval()


def test_score_computes_each_flow_and_label_map_once_per_call(tiny: F2lm) -> None:
    video = _moving_video(10)
    window = torch.stack([video, video.flip(0)])  # (B=2, T=10, 3, 32, 32): scores frames 4..9
    tiny.flow.calls, tiny.backbone.frames_seen = 0, 0
    with torch.no_grad():
        scores = tiny.score(window)
    # Input frames are 0..8 (frame 9 is only a target): 8 consecutive pairs and 9 frames per clip, each once.
    assert tiny.flow.calls == 2 * 8
    assert tiny.backbone.frames_seen == 2 * 9
    with torch.no_grad():  # the shared computation gives what scoring every 5-frame window alone gives
        alone = torch.cat([tiny.score(window[:, i : i + 5]) for i in range(6)], dim=1)
    torch.testing.assert_close(scores, alone, rtol=1e-4, atol=1e-5)
    assert tiny.flow.calls == 2 * 8 + 6 * 2 * 3


def test_training_stream_cache_processes_each_frame_once(tiny: F2lm) -> None:
    video = _moving_video(8, seed=3)
    cache = StreamCache(tiny.flow, tiny.backbone, tiny.config.flow_scale)
    tiny.flow.calls, tiny.backbone.frames_seen = 0, 0
    flows, labels = cache.streams(torch.stack([video[0:4], video[1:5], video[2:6]]))
    assert (tiny.flow.calls, tiny.backbone.frames_seen) == (5, 6)  # pairs (0,1)..(4,5), frames 0..5
    cache.streams(torch.stack([video[1:5], video[3:7]]))
    assert (tiny.flow.calls, tiny.backbone.frames_seen) == (6, 7)  # only pair (5,6) and frame 6 are new
    with torch.no_grad():
        ref_flows, ref_labels = tiny.streams(video[None, 1:5])
    torch.testing.assert_close(flows[1], ref_flows[0], atol=2e-3, rtol=1e-3)  # float16 storage
    torch.testing.assert_close(labels[1], ref_labels[0], atol=2e-2, rtol=1e-2)
    assert float(flows[1, :, 0].mean()) < -0.05  # texture moves left by 1 px/frame: dx < 0 (scaled by 1/8)


def _reference_patch_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (window 11, sigma 1.5, mirrored borders) of two gray patches in [0, 1], computed with scipy."""

    def blur(x: np.ndarray) -> np.ndarray:
        return np.asarray(gaussian_filter(x, sigma=1.5, truncate=3.5, mode="mirror"))  # radius 5 -> 11 taps

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def test_corrupted_patch_gets_target_weight_min_4_one_minus_ssim() -> None:
    real = _moving_video(1, seed=5)[:, :1] * 2 - 1  # (1, 1, 32, 32) in [-1, 1], grid 2 -> 16x16 patches
    noise = 0.03 * torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    corrupted = real.clone()
    corrupted[..., :16, :16] = -1.0  # black patch: structure gone -> weight 1
    corrupted[..., :16, 16:] += noise  # mildly noisy patch -> weight strictly between 0 and 1
    corrupted[..., 16:, 16:] += noise  # changed but not marked corrupted -> weight 0
    mask = torch.tensor([[[True, True], [True, False]]])  # patch (1, 0) is marked but unchanged -> weight 0
    d = patch_weights(corrupted, real, mask, grid=2, lam=4.0)[0]
    a, b = (corrupted[0, 0, :16, 16:].numpy() + 1) / 2, (real[0, 0, :16, 16:].numpy() + 1) / 2
    expected_noisy = min(4 * (1 - _reference_patch_ssim(a, b)), 1.0)
    assert 0.05 < expected_noisy < 0.95  # the example really exercises the unclipped branch
    torch.testing.assert_close(d, torch.tensor([[1.0, expected_noisy], [0.0, 0.0]]), atol=1e-4, rtol=0)


def test_destroyer_loss_blanks_weighted_patches_and_copies_the_rest() -> None:
    clean = torch.rand(2, 3, 32, 32) * 2 - 1
    weights = torch.zeros(2, 2, 2)
    weights[0, 0, 1] = 1.0
    weights[1, 1, 1] = 0.25
    ideal = clean.clone()
    ideal[0, :, :16, 16:] = -1.0  # d = 1: the Destroyer should output black there
    # A patch with 0 < d < 1 cannot be matched exactly: the optimum mixes black and clean.
    ideal[1, :, 16:, 16:] = 0.25 * -1.0 + 0.75 * clean[1, :, 16:, 16:]
    expected = 0.25 * 0.75 * ((clean[1, :, 16:, 16:] + 1) ** 2).mean()  # d(1-d) * MSE(clean, black)
    torch.testing.assert_close(destroyer_loss(ideal, clean, weights), expected, rtol=1e-5, atol=1e-6)
    assert destroyer_loss(clean, clean, weights) > destroyer_loss(ideal, clean, weights)


def test_corruption_drops_channels_only_in_marked_patches() -> None:
    torch.manual_seed(0)
    pred = torch.rand(4, 3, 32, 32) * 2 - 1
    corrupted, mask = corrupt_patches(pred, grid=4, fraction=0.5, drop_p=0.4)
    ratio = (corrupted / pred).reshape(4, 3, 4, 8, 4, 8)  # (B, C, grid row, y, grid col, x)
    per_patch = ratio.permute(0, 1, 2, 4, 3, 5).flatten(4)  # (B, C, 4, 4, 64): one factor per channel and patch
    assert torch.allclose(per_patch, per_patch[..., :1], atol=1e-5)  # constant within a patch
    factors = per_patch[..., 0]
    assert torch.all(factors[~mask[:, None].expand_as(factors)] == 1)
    marked = factors[mask[:, None].expand_as(factors)]
    assert torch.all((marked.abs() < 1e-6) | ((marked - 1 / 0.6).abs() < 1e-5))
    assert 0 < mask.float().mean() < 1


def test_signal_weights_share_a_vote_between_redundant_signals() -> None:
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(3, 500))
    raw = np.stack([a, b, c, a * 2 + 0.01 * rng.normal(size=500)], axis=1)  # signal 3 duplicates signal 0
    w = fit_signal_weights(raw, [1.0, 1.0, 1.0, 1.0])
    assert w[0] == pytest.approx(0.5, abs=0.05)
    assert w[3] == pytest.approx(0.5, abs=0.05)
    assert w[1] == pytest.approx(1.0, abs=0.1)
    assert fit_signal_weights(raw, [1.0, 1.0, 1.0, 0.0])[3] == 0.0  # an untrained Destroyer stays out


def _config(root: Path, tmp_path: Path, name: str, **method: object) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "method": {"name": "f2lm", "preset": "tiny", **method},
            "data": {"root": str(root), "num_val": 1},
            "optim": {"generator_lr": 1e-3, "discriminator_lr": 1e-4, "lr_drop_step": None},
            "steps": 2,
            "batch_size": 2,
            "checkpoint_every": 2,
            "out_dir": str(tmp_path / name),
            "register": {"registry": str(tmp_path / "registry"), "name": name},
        }
    )


def test_two_phase_training_generator_then_destroyer(synthetic_dataset: Path, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "registry")
    with pytest.raises(ValueError, match="init_from"):
        train(_config(synthetic_dataset, tmp_path, "no-init", phase="destroyer"))
    gen_ref = train(_config(synthetic_dataset, tmp_path, "f2lm-gen")).ref
    phase_one, card_one, _ = load_model(store, "f2lm-gen")
    assert isinstance(phase_one, F2lm)
    assert gen_ref == "f2lm-gen@v1"
    assert card_one.calibration is not None
    assert phase_one.signal_weights == [1.0, 1.0, 1.0, 0.0]  # the Destroyer is untrained after phase 1
    # ... and the trainer's calibration takes the method's weights, so the card does not count it either.
    assert card_one.calibration.signals[3].weight == 0.0
    assert all(s.weight > 0 for s in card_one.calibration.signals[:3])

    ref = train(_config(synthetic_dataset, tmp_path, "f2lm-full", phase="destroyer", init_from="f2lm-gen")).ref
    full, card, _ = load_model(store, ref or "")
    assert isinstance(full, F2lm)
    assert card.config["phase"] == "destroyer"
    assert full.signal_weights == [1.0, 1.0, 1.0, 1.0]
    assert card.calibration is not None
    assert card.calibration.signals[3].weight > 0
    gen_one, gen_two = phase_one.generator.state_dict(), full.generator.state_dict()
    assert all(torch.equal(gen_one[k], gen_two[k]) for k in gen_one)  # frozen in phase 2
    destroyer_one, destroyer_two = phase_one.destroyer.state_dict(), full.destroyer.state_dict()
    assert any(not torch.equal(destroyer_one[k], destroyer_two[k]) for k in destroyer_one)
    with torch.no_grad():
        scores = full.score(torch.rand(1, 6, 3, 32, 32))
    assert scores.shape == (1, 2, 4)
    assert torch.isfinite(scores).all()


def test_patch_error_is_opt_in_and_leaves_the_other_signals_unchanged(tiny: F2lm) -> None:
    patchy = F2lm(F2lmConfig.tiny().model_copy(update={"error": "patch", "patch": 8})).eval()
    patchy.load_state_dict(tiny.state_dict())
    torch.manual_seed(0)
    window = torch.rand(1, 4 + 2, 3, 32, 32)
    with torch.no_grad():
        frame, patch = tiny.score(window), patchy.score(window)
    assert patchy.signal_names == ("pred_patch_mse", "motion_triplet", "label_triplet", "destroyer_patch_mse")
    torch.testing.assert_close(patch[..., 1:3], frame[..., 1:3])  # the triplet signals are the same
    assert (patch[..., 0] >= frame[..., 0]).all()  # the worst window errs at least as much as the frame on average
