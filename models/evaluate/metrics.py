"""Frame-level ROC metrics in numpy: ROC curve and AUC (ties handled like sklearn), EER, per-video and macro AUC,
and the chance floor of a macro AUC (what random scores get on the same labels)."""

from __future__ import annotations

import numpy as np


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        msg = f"labels and scores differ in length: {y.size} labels, {s.size} scores"
        raise ValueError(msg)
    if not np.isfinite(s).all():
        msg = f"{int((~np.isfinite(s)).sum())} scores are NaN or inf; drop unscored frames before computing ROC"
        raise ValueError(msg)
    if not np.isin(y, (0, 1)).all():
        msg = "labels must be 0 (normal) or 1 (anomalous)"
        raise ValueError(msg)
    y = y.astype(bool)
    if y.all() or not y.any():
        kind = "anomalous" if y.any() else "normal"
        msg = f"ROC is undefined when every one of the {y.size} frames is {kind}; both classes are needed"
        raise ValueError(msg)
    return y, s


def roc_curve(
    labels: np.ndarray, scores: np.ndarray, drop_intermediate: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) like sklearn.metrics.roc_curve: one point per distinct score, plus (0, 0) at +inf.

    Tied scores form one threshold, so a tie between a normal and an anomalous frame counts half (the
    diagonal segment). `drop_intermediate` removes collinear points, which leaves the AUC unchanged.
    """
    y, s = _check(labels, scores)
    order = np.argsort(-s, kind="mergesort")  # (N,) descending, stable
    s, y = s[order], y[order]
    last_of_value = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # index of the last frame of each distinct score
    tps = np.cumsum(y)[last_of_value].astype(np.float64)
    fps = (last_of_value + 1) - tps
    thresholds = s[last_of_value]
    if drop_intermediate and len(tps) > 2:
        keep = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        tps, fps, thresholds = tps[keep], fps[keep], thresholds[keep]
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    thresholds = np.r_[np.inf, thresholds]
    return fps / fps[-1], tps / tps[-1], thresholds


def auc(x: np.ndarray, y: np.ndarray) -> float:
    """Area under a curve by the trapezoidal rule; x must be monotonic (as ROC fpr is)."""
    return float(np.trapezoid(y, x))


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(labels, scores)
    return auc(fpr, tpr)


def eer(labels: np.ndarray, scores: np.ndarray) -> float:
    """Equal error rate: where the false-positive rate equals the miss rate, interpolated linearly on the ROC."""
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    gap = (1.0 - tpr) - fpr  # (K,) falls from 1 at (0, 0) to -1 at (1, 1)
    i = int(np.argmax(gap <= 0))
    if gap[i] == 0 or i == 0:
        return float(fpr[i])
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def per_video_auc(labels: list[np.ndarray], scores: list[np.ndarray]) -> list[float | None]:
    """AUC of each video on its own; None where a video has only one class (e.g. all normal)."""
    out: list[float | None] = []
    for y, s in zip(labels, scores, strict=True):
        has_both = bool(np.any(y == 1)) and bool(np.any(y == 0))
        out.append(roc_auc(y, s) if has_both else None)
    return out


def has_both_classes(labels: np.ndarray) -> bool:
    y = np.asarray(labels)
    return bool(np.any(y == 1)) and bool(np.any(y == 0))


def macro_auc(labels: list[np.ndarray], scores: list[np.ndarray]) -> float | None:
    """Mean AUC over the videos that hold both normal and anomalous frames, unpadded; None when no video does.

    Videos with one class have no AUC and are left out (on Ped2's test set: 08-11, every scored frame anomalous).
    """
    if not labels:
        msg = "macro AUC needs at least one video"
        raise ValueError(msg)
    values = [roc_auc(y, s) for y, s in zip(labels, scores, strict=True) if has_both_classes(y)]
    return float(np.mean(values)) if values else None


def padded_macro_auc(labels: list[np.ndarray], scores: list[np.ndarray]) -> float:
    """Mean per-video AUC with the AI-VAD padding (`evaluate.py` `macro_auc`), for comparison with papers that use it.

    Each video gets one fake normal frame scored min(0, min score) and one fake anomalous frame scored at the
    largest float, so all-normal or all-anomalous videos have a defined AUC. The padding lifts every single-class
    video to 1.0 whatever its scores and lifts the others too: random scores get 0.686 on Ped2's 12 test videos.
    Report it only beside its chance floor (`chance_macro_auc(..., padded=True)`).
    """
    if not labels:
        msg = "macro AUC needs at least one video"
        raise ValueError(msg)
    values = []
    for y, s in zip(labels, scores, strict=True):
        s = np.asarray(s, dtype=np.float64)
        low = min(0.0, float(s.min())) if s.size else 0.0
        values.append(roc_auc(np.r_[0, y, 1], np.r_[low, s, np.finfo(np.float64).max]))
    return float(np.mean(values))


def chance_macro_auc(labels: list[np.ndarray], padded: bool, draws: int = 100, seed: int = 0) -> float | None:
    """The chance floor of a macro AUC: its mean over `draws` sets of i.i.d. uniform random scores on `labels`.

    About 0.5 unpadded (any video with both classes); for the padded macro AUC it is what the padding alone gives.
    """
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(draws):
        random = [rng.random(len(y)) for y in labels]
        value = padded_macro_auc(labels, random) if padded else macro_auc(labels, random)
        if value is None:
            return None
        values.append(value)
    return float(np.mean(values))
