"""Batch windows by model and shape, and run one forward pass per batch, in the precision of the model's card.

Windows of different cameras that go to the same resolved model version and have the same number of
frames stack into one (B, T, C, H, W) tensor; everything else forms separate batches.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from models.inference import forward_windows, forward_windows_maps
from service.errors import ModelUnavailableError
from service.messages import WindowMsg
from service.metrics import BATCH_SIZE, INFERENCE_SECONDS, WINDOWS_SCORED
from service.worker.models import LoadedModel


@dataclass(frozen=True)
class Job:
    """A window read from the stream, waiting to be scored and acknowledged."""

    entry_id: str
    window: WindowMsg


def fit_window(window: WindowMsg, model: LoadedModel) -> np.ndarray:
    """The window's frames as the model needs them: (context + N, H, W, C) uint8; raises when they cannot fit.

    Extra leading context frames (a producer that sends more than this model needs) are dropped.
    """
    spec = model.method.input_spec
    frames = window.frames
    if frames.shape[1:] != (spec.height, spec.width, spec.channels):
        msg = (
            f"window of camera {window.camera} has frames {frames.shape[1:]} (h, w, C) but {model.ref} expects "
            f"{(spec.height, spec.width, spec.channels)}; the ingester must prepare frames for this model"
        )
        raise ModelUnavailableError(msg)
    if window.context < spec.context:
        msg = f"camera {window.camera} sends {window.context} context frames but {model.ref} needs {spec.context}"
        raise ModelUnavailableError(msg)
    return frames[window.context - spec.context :]


def make_batches(jobs: list[tuple[Job, np.ndarray]], max_batch: int) -> list[list[tuple[Job, np.ndarray]]]:
    """Group (job, frames) of one model by frame-array shape, in chunks of at most `max_batch`."""
    by_shape: dict[tuple[int, ...], list[tuple[Job, np.ndarray]]] = defaultdict(list)
    for item in jobs:
        by_shape[item[1].shape].append(item)
    return [group[i : i + max_batch] for group in by_shape.values() for i in range(0, len(group), max_batch)]


def window_tensor(frames: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """Stack windows for a forward pass: list of (T, H, W, C) uint8 -> (B, T, C, H, W) float32 in [0, 1] on `device`."""
    batch = torch.from_numpy(np.stack(frames))  # (B, T, H, W, C) uint8, converted on the device
    if device.type == "cuda":
        batch = batch.pin_memory().to(device, non_blocking=True)
    return batch.permute(0, 1, 4, 2, 3).float().div_(255.0)


def finish_batch(model: LoadedModel, raw: torch.Tensor, started: float) -> np.ndarray:
    """(B, N, S) raw signals of a scored batch -> float64 array; records the batch's metrics, refuses NaN or inf."""
    out = raw.float().cpu().numpy().astype(np.float64)
    INFERENCE_SECONDS.labels(model.ref).observe(time.perf_counter() - started)
    BATCH_SIZE.observe(len(out))
    WINDOWS_SCORED.labels(model.ref).inc(len(out))
    if not np.isfinite(out).all():
        msg = f"{model.ref} produced NaN or inf signals; the model or the frames are broken"
        raise ModelUnavailableError(msg)
    return out


def score_frames(model: LoadedModel, frames: list[np.ndarray], device: torch.device) -> np.ndarray:
    """Stack windows and score them in the card's precision: list of (T, H, W, C) uint8 -> (B, N, S) float64."""
    started = time.perf_counter()
    raw = forward_windows(model.method, window_tensor(frames, device), model.card.precision)  # (B, N, S)
    return finish_batch(model, raw, started)


def score_frames_maps(
    model: LoadedModel, frames: list[np.ndarray], device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """`score_frames` of a model with a localisation map, plus its coarse maps (B, N, h, w) float32 from the same
    forward pass (models/heatmap.py)."""
    started = time.perf_counter()
    raw, maps = forward_windows_maps(model.method, window_tensor(frames, device), model.card.precision)
    return finish_batch(model, raw, started), maps.cpu().numpy()
