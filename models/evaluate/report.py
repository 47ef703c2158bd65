"""Evaluation and scoring reports: eval.json, a PNG with ROC curves and per-video timelines, score timelines.

Figures are built with `matplotlib.figure.Figure` (Agg canvas), never pyplot, so no global backend state.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from models.evaluate.events import anomalous_spans
from models.evaluate.protocols import EvalResult, Protocol, VideoSignals

if TYPE_CHECKING:
    from models.scored import ScoredVideo
    from service.alerts.offline import CameraRun

MAX_TIMELINES = 24  # a grid beyond this is unreadable; the JSON still has every video's AUC
_COLOR: dict[Protocol, str] = {"paper": "tab:blue", "online": "tab:orange", "camera": "tab:green"}
_LINESTYLE: dict[Protocol, str] = {"paper": "-", "online": "--", "camera": "-"}


def _shade(ax: Axes, labels: np.ndarray) -> None:
    for start, end in anomalous_spans(labels):
        ax.axvspan(start - 0.5, end - 0.5, color="tab:red", alpha=0.18, linewidth=0)


def _plot_roc(ax: Axes, result: EvalResult) -> None:
    for res in (result.paper, result.online, result.camera):
        if res is None:
            continue
        label = f"{res.protocol}: micro AUC {res.micro_auc:.3f}, EER {res.eer:.3f}"
        p = res.protocol
        ax.plot(res.roc.fpr, res.roc.tpr, label=label, color=_COLOR[p], linestyle=_LINESTYLE[p])
    ax.plot([0, 1], [0, 1], color="0.7", linewidth=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title(f"{result.model} on {result.dataset}", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)


def plot_eval(
    result: EvalResult, scores: dict[Protocol, list[np.ndarray]], labels: list[np.ndarray], names: list[str], path: Path
) -> Path:
    """One PNG: ROC of both protocols on top, then per-video score timelines with GT spans shaded.

    labels: full per-video labels (N,), including the first `context` frames that have no score.
    """
    shown = min(len(names), MAX_TIMELINES)
    cols = 3
    rows = math.ceil(shown / cols)
    fig = Figure(figsize=(4.2 * cols, 3.6 + 1.9 * rows), layout="constrained")
    grid = fig.add_gridspec(rows + 2, cols)
    _plot_roc(fig.add_subplot(grid[:2, :]), result)
    per_video = {r.protocol: r.per_video_auc for r in (result.paper, result.online, result.camera) if r is not None}
    for i in range(shown):
        ax = fig.add_subplot(grid[2 + i // cols, i % cols])
        _shade(ax, labels[i])
        for protocol, values in scores.items():
            frames = np.arange(result.context, result.context + len(values[i]))
            ax.plot(frames, values[i], linewidth=0.9, color=_COLOR[protocol], linestyle=_LINESTYLE[protocol])
        aucs = ", ".join(f"{p} {a:.2f}" for p, d in per_video.items() if (a := d[names[i]]) is not None)
        ax.set_title(f"{names[i]}  {aucs}".strip(), fontsize=8)
        ax.set(ylim=(-0.02, 1.02), xlim=(0, max(len(labels[i]) - 1, 1)))
        ax.tick_params(labelsize=7)
        if i >= shown - cols:
            ax.set_xlabel("frame", fontsize=7)
    if shown < len(names):
        fig.suptitle(f"timelines of the first {shown} of {len(names)} videos", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def plot_events(result: EvalResult, run: CameraRun, labels: list[np.ndarray], out_dir: Path) -> Path:
    """events.png: the published scores of the test videos played back to back as one camera (stream mode), the
    alert threshold and close level, the alerts (blue), the labelled events (red) and held-back frames (grey)."""
    scores = np.concatenate([r.scores for r in run.recordings])
    held = ~np.concatenate([r.alertable for r in run.recordings])
    y = np.concatenate(labels)
    fig = Figure(figsize=(14, 3.8), layout="constrained")
    ax = fig.add_subplot()
    _shade(ax, y)
    for a in run.spans:
        ax.axvspan(a.start - 0.5, a.end + 0.5, ymin=0.92, ymax=1.0, color="tab:blue", alpha=0.8, linewidth=0)
    for start, end in anomalous_spans(held):
        ax.axvspan(start - 0.5, end - 0.5, ymin=0.0, ymax=0.06, color="0.5", alpha=0.6, linewidth=0)
    ax.plot(np.arange(len(scores)), scores, color=_COLOR["camera"], linewidth=0.9, label="published score")
    threshold = result.alert_params.get("threshold")
    if threshold is not None:
        close = threshold - result.alert_params.get("hysteresis", 0.0)
        ax.axhline(threshold, color="tab:red", linestyle=":", linewidth=0.9, label=f"threshold {threshold:g}")
        ax.axhline(close, color="tab:purple", linestyle=":", linewidth=0.8, label=f"close level {close:g}")
    offset = 0
    for r in run.recordings:
        ax.axvline(offset - 0.5, color="0.75", linewidth=0.6)
        ax.text(offset, 1.01, r.name, fontsize=6, color="0.4", transform=ax.get_xaxis_transform())
        offset += len(r.scores)
    stream = result.events.get("stream")
    title = f"{result.model}: test videos as one camera"
    if stream is not None:
        title += (
            f" - events {stream.detected}/{stream.events}, alerts {stream.alerts} ({stream.false_alerts} false), "
            f"normal time in alerts {stream.normal_in_alerts or 0:.1%}"
        )
    ax.set_title(title, fontsize=9)
    ax.set(xlabel="scored frame (videos back to back)", ylabel="score", ylim=(-0.02, 1.05), xlim=(0, max(offset, 1)))
    ax.legend(loc="upper left", fontsize=7, ncols=3)
    path = out_dir / "events.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def write_eval(
    result: EvalResult,
    scores: dict[Protocol, list[np.ndarray]],
    labels: list[np.ndarray],
    names: list[str],
    out_dir: Path,
) -> tuple[Path, Path]:
    """Write <out_dir>/eval.json and <out_dir>/eval.png; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "eval.json"
    json_path.write_text(result.model_dump_json(indent=2))
    return json_path, plot_eval(result, scores, labels, names, out_dir / "eval.png")


def save_signals(videos: list[VideoSignals], path: Path) -> Path:
    """Raw signals and labels of every test video in one .npz (`<video>/raw`, `<video>/labels`).

    Lets the protocols be recomputed (other weights, smoothing) without scoring the footage again.
    """
    arrays: dict[str, np.ndarray] = {}
    for v in videos:
        arrays[f"{v.name}/raw"] = np.asarray(v.raw, dtype=np.float32)  # (N - context, S)
        arrays[f"{v.name}/labels"] = np.asarray(v.labels, dtype=np.uint8)  # (N,)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]
    return path


def load_signals(path: Path) -> list[VideoSignals]:
    """Inverse of `save_signals`, videos in the saved order."""
    with np.load(path, allow_pickle=False) as data:
        names = list(dict.fromkeys(key.rsplit("/", 1)[0] for key in data.files))
        return [VideoSignals(n, data[f"{n}/raw"], data[f"{n}/labels"]) for n in names]


def plot_scored(scored: ScoredVideo, path: Path, threshold: float | None = None) -> Path:
    """Timeline of one scored video: calibrated score (or the raw signals when uncalibrated) over time."""
    fig = Figure(figsize=(10, 3.2), layout="constrained")
    ax = fig.add_subplot()
    if scored.scores is not None:
        ax.plot(scored.pts, scored.scores, color="tab:orange", linewidth=1.0, label="score")
        ax.set(ylim=(-0.02, 1.02), ylabel="anomaly score")
        if threshold is not None:
            ax.axhline(threshold, color="tab:red", linewidth=0.8, linestyle=":", label=f"threshold {threshold:g}")
    else:
        for j, name in enumerate(scored.signal_names):
            ax.plot(scored.pts, scored.raw[:, j], linewidth=1.0, label=f"raw {name}")
        ax.set(ylabel="raw signal (uncalibrated)")
    ax.set(xlabel="time (s)")
    ax.set_title(f"{scored.name}: {scored.num_frames} frames at {scored.fps:.2f} fps", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path
