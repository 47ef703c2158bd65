"""End of every training run: fit what the method keeps of the normal footage beside its weights, score the held-out
normal videos, fit the online calibration, register the model."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from models.base import AnomalyMethod
from models.calibration import fit_calibration
from models.card import Calibration
from models.io import build_card, save_model
from models.store import ModelStore
from models.train.config import TrainConfig

if TYPE_CHECKING:
    from models.train.sources import DataSource

log = logging.getLogger(__name__)


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


def signal_stats(method: AnomalyMethod, raw: np.ndarray) -> dict[str, Any]:
    """Per-signal statistics of (N, S) raw signals of the held-out frames, for the card."""
    return {
        name: {
            "mean": float(raw[:, i].mean()),
            "std": float(raw[:, i].std()),
            "min": float(raw[:, i].min()),
            "max": float(raw[:, i].max()),
            "frames": len(raw),
        }
        for i, name in enumerate(method.signal_names)
    }


def finish_run(
    cfg: TrainConfig,
    method: AnomalyMethod,
    source: DataSource,
    train_metrics: dict[str, Any],
    device: torch.device,
) -> tuple[str | None, dict[str, Any]]:
    """Calibrate the trained method on the source's held-out normal videos, evaluate where the source has labelled
    test videos, then (if enabled) register; returns (reference or None, the card's metrics)."""
    method.eval()
    method.fit_reference(source.normal_windows(method, device))
    held = source.held_out(method, device)
    calibration, raw = fit_on_videos(method, held.parts, held.source, held.too_short, fps=source.fps)
    metrics: dict[str, Any] = {"train": train_metrics, "val_raw": signal_stats(method, raw)}
    if (test := source.test_metrics(method, calibration)) is not None:
        metrics["test"] = test
    notes = f"vigil train: {train_metrics['steps']} steps on {source.root} ({source.kind})"
    return register_run(cfg, method, calibration, metrics, source.fingerprint, notes), metrics


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
    name = reg.name or cfg.method_name
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
