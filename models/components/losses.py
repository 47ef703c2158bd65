"""Frame-prediction losses (intensity, gradient, least-squares adversarial) and PSNR, shared by FFP-like methods."""

from __future__ import annotations

import torch
import torch.nn.functional as F

_MIN_MSE = 1e-10  # a perfect prediction would give PSNR = inf; cap it at 100 dB


def intensity_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared pixel difference (FFP L_int); (B, C, H, W) each, same range."""
    return torch.mean((pred - target) ** 2)


def gradient_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Gradient difference loss (alpha = 1): compare |neighbour differences| of prediction and target.

    Official FFP pads before differencing; plain interior differences give the same gradient away from the border.
    """
    pred_dx = (pred[..., :, 1:] - pred[..., :, :-1]).abs()  # (B, C, H, W - 1)
    pred_dy = (pred[..., 1:, :] - pred[..., :-1, :]).abs()  # (B, C, H - 1, W)
    tgt_dx = (target[..., :, 1:] - target[..., :, :-1]).abs()
    tgt_dy = (target[..., 1:, :] - target[..., :-1, :]).abs()
    return (pred_dx - tgt_dx).abs().mean() + (pred_dy - tgt_dy).abs().mean()


def generator_adversarial_loss(fake_prob: torch.Tensor) -> torch.Tensor:
    """Least squares on sigmoid outputs: the generator wants D(fake) = 1."""
    return torch.mean((fake_prob - 1) ** 2) / 2


def discriminator_loss(real_prob: torch.Tensor, fake_prob: torch.Tensor) -> torch.Tensor:
    """Least squares on sigmoid outputs: D(real) -> 1, D(fake) -> 0."""
    return torch.mean((real_prob - 1) ** 2) / 2 + torch.mean(fake_prob**2) / 2


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR in dB of (B, ...) tensors in [0, 1]: 10 * log10(1 / MSE over all other dims) -> (B,)."""
    mse = ((pred.float() - target.float()) ** 2).flatten(1).mean(dim=1)
    return 10 * torch.log10(1.0 / mse.clamp_min(_MIN_MSE))


def error_map(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error of (B, C, H, W) tensors averaged over channels -> (B, H, W): where a frame was predicted or
    reconstructed badly (the localisation map of the prediction and reconstruction methods)."""
    return ((pred.float() - target.float()) ** 2).mean(dim=1)


def window_mse(pred: torch.Tensor, target: torch.Tensor, patch: int) -> torch.Tensor:
    """Mean squared error of every `patch` x `patch` window (stride patch // 2, channels averaged) of (B, C, H, W)
    tensors -> (B, h, w), h x w = `window_grid`."""
    err = ((pred.float() - target.float()) ** 2).mean(dim=1, keepdim=True)  # (B, 1, H, W)
    k = (min(patch, err.shape[2]), min(patch, err.shape[3]))
    return F.avg_pool2d(err, k, stride=(max(1, k[0] // 2), max(1, k[1] // 2)))[:, 0]


def window_grid(height: int, width: int, patch: int) -> tuple[int, int]:
    """Rows and columns of the windows `window_mse` cuts a height x width frame into."""
    kh, kw = min(patch, height), min(patch, width)
    return (height - kh) // max(1, kh // 2) + 1, (width - kw) // max(1, kw // 2) + 1


def patch_mse(pred: torch.Tensor, target: torch.Tensor, patch: int) -> torch.Tensor:
    """Per-sample mean squared error of the worst square patch of (B, C, H, W) tensors -> (B,).

    The squared error is averaged over channels and over each `patch` x `patch` window (stride patch // 2), and
    the window with the largest mean is kept: a small object predicted badly is not averaged away by the rest of
    the frame, and the value depends less on how many well-predicted things share the scene.
    """
    return window_mse(pred, target, patch).flatten(1).amax(dim=1)


def window_psnr(pred: torch.Tensor, target: torch.Tensor, patch: int) -> torch.Tensor:
    """PSNR in dB of every window of `window_mse` of (B, C, H, W) tensors in [0, 1] -> (B, h, w)."""
    return 10 * torch.log10(1.0 / window_mse(pred, target, patch).clamp_min(_MIN_MSE))


def patch_psnr(pred: torch.Tensor, target: torch.Tensor, patch: int) -> torch.Tensor:
    """Per-sample PSNR in dB of the worst square patch (`patch_mse`) of (B, C, H, W) tensors in [0, 1] -> (B,)."""
    return window_psnr(pred, target, patch).flatten(1).amin(dim=1)
