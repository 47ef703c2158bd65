"""End of a training run: score the held-out normal videos, fit the online calibration, register the model."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from models.base import AnomalyMethod
from models.calibration import fit_calibration
from models.card import Calibration
from models.inference import score_frames
from models.io import build_card, save_model
from models.store import ModelStore
from models.train.config import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class ValidationData:
    """Held-out *training* videos (all normal), prepared to the method's input spec."""

    names: list[str]
    frames: list[np.ndarray]  # uint8 (N, h, w, C) per video
    fingerprint: str  # of the whole training split the run read
    root: str
    fps: float | None = None  # frame rate of the footage (DataConfig.fps, else the videos' own)


def fit_on_videos(
    method: AnomalyMethod, parts: list[np.ndarray], source: str, too_short: str, fps: float | None = None
) -> tuple[Calibration, np.ndarray]:
    """The calibration of raw signals (N_i, S) of held-out normal videos, the EMA restarting at each video, with
    the method's own signal weights; also returns the signals concatenated. Videos with no signal are left out,
    and none at all raises ValueError(too_short)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        raise ValueError(too_short)
    raw = np.concatenate(parts)  # (sum N_i, S)
    calibration = fit_calibration(
        raw,
        list(method.signal_names),
        weights=method.calibration_weights(raw),
        segments=[len(p) for p in parts],
        source=source,
        fps=fps,
    )
    return calibration, raw


def calibrate_on(
    method: AnomalyMethod, val: ValidationData, device: torch.device
) -> tuple[Calibration, dict[str, Any]]:
    """Raw signals of every validation frame -> (calibration, per-signal statistics)."""
    method.eval()
    need = method.input_spec.context + 1
    calibration, raw = fit_on_videos(
        method,
        [score_frames(method, frames, device=device) for frames in val.frames],  # (N_i - context, S) each
        source=f"held-out training videos {', '.join(val.names)} of {val.root}",
        too_short=f"validation videos {val.names} are too short to score: each needs at least {need} frames",
        fps=val.fps,
    )
    stats = {
        name: {
            "mean": float(raw[:, i].mean()),
            "std": float(raw[:, i].std()),
            "min": float(raw[:, i].min()),
            "max": float(raw[:, i].max()),
            "frames": len(raw),
        }
        for i, name in enumerate(method.signal_names)
    }
    return calibration, stats


def finish_run(
    cfg: TrainConfig, method: AnomalyMethod, val: ValidationData, train_metrics: dict[str, Any], device: torch.device
) -> tuple[str | None, dict[str, Any]]:
    """Calibrate, then (if enabled) register; returns (reference or None, the card's metrics)."""
    calibration, val_stats = calibrate_on(method, val, device)
    metrics = {"train": train_metrics, "val_raw": val_stats}
    notes = f"vigil train: {train_metrics['steps']} steps on {val.root}"
    return register_run(cfg, method, calibration, metrics, val.fingerprint, notes), metrics


def register_run(
    cfg: TrainConfig,
    method: AnomalyMethod,
    calibration: Calibration,
    metrics: dict[str, Any],
    data_fingerprint: str,
    notes: str,
) -> str | None:
    """Register the trained method under `register.name` (default: the method name) when registration is on."""
    reg = cfg.registration
    if not reg.enabled:
        return None
    if reg.registry is None:
        msg = "register.registry is not set; the CLI fills it from VIGIL_STORE__ROOT, or set register.registry=PATH"
        raise ValueError(msg)
    name = reg.name or str(cfg.method.name)  # type: ignore[attr-defined]
    card = build_card(
        method.cpu(),
        name,
        calibration=calibration,
        metrics=metrics,
        data_fingerprint=data_fingerprint,
        notes=notes,
    )
    version = save_model(ModelStore(reg.registry), method, card)
    log.info("registered %s in %s", version.ref, reg.registry)
    return version.ref
