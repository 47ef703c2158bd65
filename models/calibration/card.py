"""The model card's calibration: raw signals on held-out normal frames -> a fixed map to [0, 1].

`combine` (standardise and weight the raw signals) is the first step of every score, the camera calibration's
included; `to_unit`/`calibrate` are `vigil eval`'s frame-level "online" protocol. Pure numpy.
"""

from __future__ import annotations

import numpy as np

from models.card import Calibration, SignalCalibration

LEVELS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1.0)
_MAD_TO_STD = 1.4826
_MIN_SCALE = 1e-6


def fit_calibration(
    raw: np.ndarray,
    names: list[str],
    weights: list[float] | None = None,
    ema_alpha: float = 0.5,
    segments: list[int] | None = None,
    source: str = "",
    fps: float | None = None,
) -> Calibration:
    """Fit centre/scale per signal and the CDF of the combined, smoothed signal on normal frames.

    Args:
        raw: (N, S) raw signals of normal validation frames, in time order within each segment.
        segments: lengths of the consecutive videos in `raw`, so the EMA restarts at each video.
        fps: frame rate of those videos, kept with their combined values as the default camera reference.
    """
    if raw.ndim != 2 or raw.shape[1] != len(names) or raw.shape[0] < 2:
        msg = f"calibration needs (N >= 2, {len(names)}) raw signals, got shape {raw.shape}"
        raise ValueError(msg)
    if not np.isfinite(raw).all():
        msg = "calibration signals contain NaN or inf; the model diverged or the frames are broken"
        raise ValueError(msg)
    weights = weights or [1.0] * len(names)
    center = np.median(raw, axis=0)
    scale = np.maximum(_MAD_TO_STD * np.median(np.abs(raw - center), axis=0), _MIN_SCALE)
    # A signal with almost no spread would dominate after standardising; floor it at 1% of the largest spread.
    scale = np.maximum(scale, 1e-2 * scale.max())
    signals = [
        SignalCalibration(name=n, center=float(c), scale=float(s), weight=float(w))
        for n, c, s, w in zip(names, center, scale, weights, strict=True)
    ]
    partial = Calibration(
        signals=signals, ema_alpha=ema_alpha, levels=[0.0, 1.0], quantiles=[0.0, 1.0], num_frames=len(raw)
    )
    parts = _split(raw, segments)
    combined = np.concatenate([smooth(combine(partial, part), ema_alpha) for part in parts])
    quantiles = np.quantile(combined, LEVELS)
    quantiles = np.maximum.accumulate(quantiles + np.arange(len(LEVELS)) * 1e-9)  # strictly increasing
    return partial.model_copy(
        update={
            "levels": list(LEVELS),
            "quantiles": quantiles.tolist(),
            "source": source,
            "normal_values": combine(partial, raw).tolist(),
            "normal_segments": [len(p) for p in parts],
            "normal_fps": fps,
        }
    )


def _split(raw: np.ndarray, segments: list[int] | None) -> list[np.ndarray]:
    if not segments:
        return [raw]
    if sum(segments) != len(raw):
        msg = f"segment lengths add up to {sum(segments)} but there are {len(raw)} frames"
        raise ValueError(msg)
    return np.split(raw, np.cumsum(segments)[:-1])


def combine(cal: Calibration, raw: np.ndarray) -> np.ndarray:
    """(N, S) raw signals -> (N,) weighted sum of robust z-scores."""
    center = np.array([s.center for s in cal.signals])
    scale = np.array([s.scale for s in cal.signals])
    weight = np.array([s.weight for s in cal.signals])
    return np.asarray(((raw - center) / scale) @ weight, dtype=np.float64)


def smooth(values: np.ndarray, alpha: float, state: float | None = None) -> np.ndarray:
    """Causal EMA: y_t = alpha * x_t + (1 - alpha) * y_{t-1}; `state` is y_{-1} (None = start at x_0)."""
    out = np.empty(len(values), dtype=np.float64)
    prev = state
    for i, x in enumerate(values):
        prev = float(x) if prev is None else alpha * float(x) + (1 - alpha) * prev
        out[i] = prev
    return out


def to_unit(cal: Calibration, combined: np.ndarray) -> np.ndarray:
    """Map smoothed combined values to [0, 1] through the normal-frame CDF; strictly increasing.

    The observed range maps onto [tail, 1 - tail]; beyond it the score decays exponentially towards
    0 or 1, so very anomalous frames keep their ranking instead of all saturating at 1.
    """
    q = np.asarray(cal.quantiles)
    tail = 0.5 / (cal.num_frames + 1)  # the mass one more normal frame would add beyond the range
    inside = tail + (1 - 2 * tail) * np.interp(combined, q, np.asarray(cal.levels))
    width = max(float(q[-1] - q[len(q) // 2]), 1e-6)  # upper half-spread sets the tails' scale
    low = tail * np.exp(np.minimum(combined - q[0], 0.0) / width)
    high = 1 - tail * np.exp(-np.maximum(combined - q[-1], 0.0) / width)
    return np.asarray(np.where(combined < q[0], low, np.where(combined > q[-1], high, inside)), dtype=np.float64)


def calibrate(cal: Calibration, raw: np.ndarray, state: float | None = None) -> tuple[np.ndarray, float]:
    """(N, S) raw signals of consecutive frames -> ((N,) scores in [0, 1], EMA state to carry on)."""
    smoothed = smooth(combine(cal, raw), cal.ema_alpha, state)
    return to_unit(cal, smoothed), float(smoothed[-1]) if len(smoothed) else (state or 0.0)
