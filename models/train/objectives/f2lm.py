"""F2LM training in two phases (METHODS.md (c)), chosen by the method config's `phase`.

Phase `generator`: per step one least-squares discriminator step, then one generator step with
intensity + gradient + 0.05 adversarial + triplet (motion and label, margin 0.2) losses; AdamW with weight
decay equal to the learning rate (official). Phase `destroyer`: starts from the registered phase-1 model
(`init_from`), freezes the generator and trains the Destroyer U-Net on the generator's predictions with a
random subset of patches corrupted by channel dropout; each corrupted patch gets the target weight
d = min(lambda * (1 - SSIM(corrupted patch, real patch)), 1), loss per patch d * MSE(out, black) +
(1 - d) * MSE(out, clean prediction), summed over patches and batch. Uncorrupted patches have d = 0.
SSIM (window 11, sigma 1.5, on [0, 1]) is computed on each patch crop on its own, as the official code does
(reflect padding inside the crop, so a patch needs at least 6 pixels a side), so a corrupted patch never
changes the weight of its neighbours.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from pydantic import Field

from models.components.discriminator import PixelDiscriminator
from models.components.losses import gradient_loss, intensity_loss
from models.io import load_model
from models.methods.f2lm import PAST, F2lm, triplet
from models.methods.f2lm_streams import StreamCache
from models.store import ModelStore
from models.train.objectives import StepDecay, register_objective
from models.train.objectives.common import Adversary, adam_with_drop, autocast_for

if TYPE_CHECKING:
    from models.train.config import TrainConfig


class F2lmOptim(StepDecay):
    """AdamW with weight decay equal to the learning rate (official) for each net a phase trains: the generator
    and the pixel discriminator in phase `generator`, the Destroyer in phase `destroyer`."""

    generator_lr: float = Field(default=1e-4, gt=0)
    discriminator_lr: float = Field(default=1e-5, gt=0)
    destroyer_lr: float = Field(default=1e-4, gt=0)


# Config fields that must match between the phase-1 model and phase 2 (weights or streams depend on them).
ARCHITECTURE_FIELDS = (
    "height",
    "width",
    "channels",
    "base_channels",
    "destroyer_base_channels",
    "flow",
    "flow_scale",
    "label_blocks",
)
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5


def ssim_map(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM of (B, C, H, W) images in [0, 1] per pixel, Gaussian window 11 / sigma 1.5, averaged over C -> (B, H, W)."""
    c = x.shape[1]
    coords = torch.arange(SSIM_WINDOW, dtype=x.dtype, device=x.device) - SSIM_WINDOW // 2
    g = torch.exp(-(coords**2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(c, 1, SSIM_WINDOW, SSIM_WINDOW)

    def blur(t: torch.Tensor) -> torch.Tensor:
        pad = SSIM_WINDOW // 2
        return F.conv2d(F.pad(t, (pad, pad, pad, pad), mode="reflect"), kernel, groups=c)

    c1, c2 = 0.01**2, 0.03**2  # K1, K2 of Wang et al. 2004 for a dynamic range of 1
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.mean(dim=1)


def per_patch(values: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, H, W) -> (B, grid, grid) patch means."""
    h, w = values.shape[-2:]
    return F.avg_pool2d(values[:, None], (h // grid, w // grid))[:, 0]


def corrupt_patches(pred: torch.Tensor, grid: int, fraction: float, drop_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel dropout (Dropout2d semantics) on a random `fraction` of the grid's patches.

    pred (B, C, H, W) in [-1, 1] -> (corrupted (B, C, H, W), mask (B, grid, grid) bool of corrupted patches).
    """
    b, c, h, w = pred.shape
    mask = torch.rand(b, grid, grid, device=pred.device) < fraction
    keep = (torch.rand(b, c, grid, grid, device=pred.device) >= drop_p).to(pred.dtype) / (1 - drop_p)
    factor = torch.where(mask[:, None], keep, torch.ones_like(keep))  # (B, C, grid, grid)
    factor = factor.repeat_interleave(h // grid, dim=2).repeat_interleave(w // grid, dim=3)
    return pred * factor, mask


def patch_ssim(x: torch.Tensor, y: torch.Tensor, grid: int) -> torch.Tensor:
    """Mean SSIM of each patch crop of (B, C, H, W) images in [0, 1], crops compared on their own -> (B, grid, grid)."""
    b, c, h, w = x.shape

    def crops(t: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B * grid * grid, C, H / grid, W / grid)
        t = t.reshape(b, c, grid, h // grid, grid, w // grid).permute(0, 2, 4, 1, 3, 5)
        return t.reshape(b * grid * grid, c, h // grid, w // grid)

    return ssim_map(crops(x), crops(y)).mean(dim=(1, 2)).reshape(b, grid, grid)


def patch_weights(
    corrupted: torch.Tensor, real: torch.Tensor, mask: torch.Tensor, grid: int, lam: float
) -> torch.Tensor:
    """Target weight per patch (B, grid, grid): min(lam * (1 - SSIM), 1) on corrupted patches, 0 elsewhere.

    corrupted, real: (B, C, H, W) in [-1, 1].
    """
    ssim = patch_ssim((corrupted + 1) / 2, (real + 1) / 2, grid)
    return torch.where(mask, (lam * (1 - ssim)).clamp(0.0, 1.0), torch.zeros_like(ssim))


def destroyer_loss(output: torch.Tensor, clean: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sum over patches and batch of d * MSE(output, black) + (1 - d) * MSE(output, clean); images in [-1, 1]."""
    grid = weights.shape[-1]
    to_black = per_patch((output + 1).pow(2).mean(dim=1), grid)  # black is -1 in [-1, 1]
    to_clean = per_patch((output - clean).pow(2).mean(dim=1), grid)
    return (weights * to_black + (1 - weights) * to_clean).sum()


class F2lmObjective:
    def __init__(self, method: F2lm, config: TrainConfig, device: torch.device) -> None:
        self.method = method
        self.cfg = method.config
        self.device = device
        self.amp = config.amp
        self.phase = self.cfg.phase
        self.cache = StreamCache(method.flow, method.backbone, self.cfg.flow_scale)
        optim = config.optim
        assert isinstance(optim, F2lmOptim)
        if self.phase == "generator":
            discriminator = PixelDiscriminator(self.cfg.channels, self.cfg.discriminator_channels).to(device)
            # Official: AdamW with weight decay equal to the learning rate, for G and D.
            lr_g, lr_d = optim.generator_lr, optim.discriminator_lr
            self.opt, self.sched = adam_with_drop(method.generator.parameters(), lr_g, optim, optim, lr_g, True)
            self.adversary = Adversary(discriminator, lr_d, optim, optim, config.amp, lr_d, decoupled=True)
        else:
            self._start_from_phase_one(config)
            lr = optim.destroyer_lr
            self.opt, self.sched = adam_with_drop(method.destroyer.parameters(), lr, optim, optim, lr, True)

    def _start_from_phase_one(self, config: TrainConfig) -> None:
        ref, registry = self.cfg.init_from, config.registration.registry
        if ref is None or registry is None:
            msg = (
                "phase 'destroyer' starts from the registered phase-1 generator: set method.init_from=<name@vN> "
                f"and register.registry (got init_from={ref!r}, registry={registry!r})"
            )
            raise ValueError(msg)
        phase_one, card, version = load_model(ModelStore(registry), ref, device=self.device)
        diff = [k for k in ARCHITECTURE_FIELDS if card.config.get(k) != getattr(self.cfg, k)]
        if card.method != "f2lm" or diff:
            msg = f"{version.ref} is not an f2lm model with this architecture (differs in {diff or 'method'})"
            raise ValueError(msg)
        self.method.load_state_dict(phase_one.state_dict())
        self.method.generator.requires_grad_(False)
        self.method.destroyer_trained.fill_(1.0)

    def step(self, batch: torch.Tensor) -> dict[str, float]:
        batch = batch.to(self.device, non_blocking=True)  # (B, 5, C, H, W) in [0, 1]
        frames, target = batch[:, :PAST], batch[:, PAST] * 2 - 1  # target (B, C, H, W) in [-1, 1]
        flows, labels = self.cache.streams(frames)  # each frame's flow and label map computed once per run
        if self.phase == "generator":
            return self._generator_step(frames, flows, labels, target)
        return self._destroyer_step(frames, flows, labels, target)

    def _generator_step(
        self, frames: torch.Tensor, flows: torch.Tensor, labels: torch.Tensor, target: torch.Tensor
    ) -> dict[str, float]:
        cfg = self.cfg
        self.method.generator.train()
        with autocast_for(self.device, self.amp):
            out = self.method.generate(frames, flows, labels)
        pred = out.pred.float()
        d_loss = self.adversary.step(target, pred.detach())
        adv = self.adversary.generator_loss(pred)
        l_int, l_gd = intensity_loss(pred, target), gradient_loss(pred, target)
        feats = [t.float() for t in out[1:]]  # frame, motion, label, frame->motion, frame->label
        l_motion = triplet(feats[3], feats[1], feats[0], cfg.triplet_margin).mean()
        l_label = triplet(feats[4], feats[2], feats[0], cfg.triplet_margin).mean()
        loss = (
            cfg.lambda_intensity * l_int
            + cfg.lambda_gradient * l_gd
            + cfg.lambda_adversarial * adv
            + cfg.lambda_triplet * (l_motion + l_label)
        )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.adversary.clear_grads()
        self.opt.step()
        self.sched.step()
        return {
            "g": loss.item(),
            "d": d_loss.item(),
            "int": l_int.item(),
            "gd": l_gd.item(),
            "adv": adv.item(),
            "tri_motion": l_motion.item(),
            "tri_label": l_label.item(),
        }

    def _destroyer_step(
        self, frames: torch.Tensor, flows: torch.Tensor, labels: torch.Tensor, target: torch.Tensor
    ) -> dict[str, float]:
        cfg = self.cfg
        self.method.generator.eval()
        with torch.no_grad(), autocast_for(self.device, self.amp):
            pred = self.method.generate(frames, flows, labels).pred.float()
        fraction = float(torch.empty(()).uniform_(*cfg.corrupt_fraction))
        drop_p = float(torch.empty(()).uniform_(*cfg.dropout_p))
        corrupted, mask = corrupt_patches(pred, cfg.destroyer_grid, fraction, drop_p)
        weights = patch_weights(corrupted, target, mask, cfg.destroyer_grid, cfg.destroyer_lambda)
        self.method.destroyer.train()
        with autocast_for(self.device, self.amp):
            output = self.method.destroyer(corrupted).float()
        loss = destroyer_loss(output, pred, weights)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.opt.step()
        self.sched.step()
        corrupted_weights = weights[mask]
        mean_d = corrupted_weights.mean().item() if corrupted_weights.numel() else math.nan
        return {"destroyer": loss.item(), "corrupted": float(mask.float().mean()), "mean_d": mean_d}

    def finish(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "phase": self.phase,
            "method": self.method.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
        }
        if self.phase == "generator":
            state.update(self.adversary.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("phase") != self.phase:
            msg = f"checkpoint is from phase {state.get('phase')!r}, this run is phase {self.phase!r}"
            raise ValueError(msg)
        self.method.load_state_dict(state["method"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        if self.phase == "generator":
            self.adversary.load_state_dict(state)


@register_objective("f2lm", optim=F2lmOptim)
def build_f2lm_objective(method: Any, config: TrainConfig, device: torch.device) -> F2lmObjective:
    if not isinstance(method, F2lm):
        msg = f"the f2lm objective trains an F2lm method, got {type(method).__name__}"
        raise TypeError(msg)
    return F2lmObjective(method, config, device)
