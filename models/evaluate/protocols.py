"""The two evaluation protocols of METHODS.md on per-video raw signals: paper (test statistics) and online (causal).

Input per test video: raw signals (N - context, S) for frames context..N-1 and labels (N,). The first
`context` labels are dropped, never padded (METHODS.md part B.0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.calibration import calibrate
from models.card import Calibration
from models.evaluate.events import EventResult
from models.evaluate.localization import LocalizationResult
from models.evaluate.metrics import (
    chance_macro_auc,
    eer,
    has_both_classes,
    macro_auc,
    padded_macro_auc,
    per_video_auc,
    roc_auc,
    roc_curve,
)
from models.types import SNIPPET_FRAMES

# paper: per-video min-max (test statistics); online: the card's calibration; camera: what the service publishes
# (the camera's own learned reference, models/calibration/camera.py), scored by vigil eval over the videos as a stream.
Protocol = Literal["paper", "online", "camera"]
_EPS = 1e-12


@dataclass(frozen=True)
class VideoSignals:
    """One scored test video: raw (N - context, S) float signals, labels (N,) uint8 for every decoded frame."""

    name: str
    raw: np.ndarray
    labels: np.ndarray


class RocPoints(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fpr: list[float]
    tpr: list[float]


class ProtocolResult(BaseModel):
    """Frame-level metrics of one protocol over all test videos."""

    model_config = ConfigDict(extra="forbid")
    protocol: Protocol
    micro_auc: float  # one ROC over all test frames concatenated
    macro_auc: float | None  # mean AUC of the videos with both classes, unpadded; None when no video has both
    macro_videos: int = 0  # how many videos that is
    macro_chance: float | None = None  # what random scores get as macro_auc on these labels (about 0.5)
    macro_auc_padded: float | None = None  # AI-VAD's padded macro AUC over every video (metrics.padded_macro_auc)
    macro_chance_padded: float | None = None  # ... and what random scores get as that (Ped2 test: 0.686)
    eer: float
    per_video_auc: dict[str, float | None]  # None: the video has one class only
    num_frames: int
    num_anomalous: int
    roc: RocPoints


class EvalResult(BaseModel):
    """Both protocols side by side, plus what was evaluated."""

    model_config = ConfigDict(extra="forbid")
    model: str
    dataset: str
    context: int  # frames dropped at the start of every video
    signal_names: list[str]
    weights: list[float]  # signal weights of the paper protocol (from the calibration, else all 1)
    paper: ProtocolResult
    online: ProtocolResult | None
    online_skipped: str = ""  # why the online protocol did not run
    camera: ProtocolResult | None = None  # frame AUC of the published scores (stream mode)
    events: dict[str, EventResult] = Field(default_factory=dict)  # mode -> event-level metrics at `alert_params`
    alert_params: dict[str, float] = Field(default_factory=dict)
    camera_calibration: str = ""  # what the camera learned its reference from
    heatmaps: LocalizationResult | None = None  # pixel-level localisation (`vigil eval --heatmaps`)

    def summary(self) -> dict[str, float | None]:
        """The headline numbers, flat, for tables and the model card."""
        return {
            "paper_micro_auc": self.paper.micro_auc,
            "paper_macro_auc": self.paper.macro_auc,
            "macro_chance": self.paper.macro_chance,
            "paper_macro_auc_padded": self.paper.macro_auc_padded,
            "macro_chance_padded": self.paper.macro_chance_padded,
            "paper_eer": self.paper.eer,
            "online_micro_auc": self.online.micro_auc if self.online else None,
            "online_macro_auc": self.online.macro_auc if self.online else None,
            "online_macro_auc_padded": self.online.macro_auc_padded if self.online else None,
            "online_eer": self.online.eer if self.online else None,
            **{
                f"{mode.replace('-', '_')}_{k}": getattr(e, k)
                for mode, e in self.events.items()
                for k in ("recall", "false_alerts_per_hour", "normal_in_alerts", "delay_median_s")
            },
            **(
                {
                    "pixel_auc": self.heatmaps.pixel_auc,
                    "pixel_auc_anomalous_frames": self.heatmaps.pixel_auc_anomalous_frames,
                    "peak_in_mask_frames": self.heatmaps.peaks_masked_frames.peak_in_mask,
                    **{
                        f"{mode.replace('-', '_')}_peak_in_mask": p.peak_in_mask
                        for mode, p in self.heatmaps.peaks_alerts.items()
                    },
                }
                if self.heatmaps is not None
                else {}
            ),
        }


def scored_labels(video: VideoSignals, context: int) -> np.ndarray:
    """Labels of the frames that have a score: labels[context:], checked against the signal length."""
    labels = np.asarray(video.labels).reshape(-1)[context:]
    if len(labels) != len(video.raw):
        msg = (
            f"video {video.name}: {len(video.raw)} scored frames but {len(labels)} labels after dropping "
            f"the first {context} (context) frames; score every frame from index {context} on"
        )
        raise ValueError(msg)
    return labels.astype(np.uint8)


def paper_scores(raw: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Paper protocol for one video: per-signal z-score on this video, weighted sum, min-max to [0, 1].

    raw: (N, S). A single signal skips the z-score (min-max makes it irrelevant anyway).
    """
    x = np.asarray(raw, dtype=np.float64)
    if x.shape[1] > 1:
        x = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), _EPS)
    combined = x @ weights  # (N,)
    span = combined.max() - combined.min() if len(combined) else 0.0
    if span <= _EPS:
        return np.zeros_like(combined)
    return np.asarray((combined - combined.min()) / span, dtype=np.float64)


def online_scores(raw: np.ndarray, calibration: Calibration) -> np.ndarray:
    """Online protocol for one video: the card's fixed calibration, EMA restarted at the video's start."""
    scores, _ = calibrate(calibration, np.asarray(raw, dtype=np.float64))
    return scores


def summarize(
    protocol: Protocol, names: list[str], labels: list[np.ndarray], scores: list[np.ndarray]
) -> ProtocolResult:
    y, s = np.concatenate(labels), np.concatenate(scores)
    fpr, tpr, _ = roc_curve(y, s)
    return ProtocolResult(
        protocol=protocol,
        micro_auc=roc_auc(y, s),
        macro_auc=macro_auc(labels, scores),
        macro_videos=sum(has_both_classes(v) for v in labels),
        macro_chance=chance_macro_auc(labels, padded=False),
        macro_auc_padded=padded_macro_auc(labels, scores),
        macro_chance_padded=chance_macro_auc(labels, padded=True),
        eer=eer(y, s),
        per_video_auc=dict(zip(names, per_video_auc(labels, scores), strict=True)),
        num_frames=int(y.size),
        num_anomalous=int(y.sum()),
        roc=RocPoints(fpr=fpr.tolist(), tpr=tpr.tolist()),
    )


def snippet_frames(signals: np.ndarray, num_frames: int, snippet: int, causal: bool) -> np.ndarray:
    """(S, K) values of a video's consecutive snippets -> per-frame values (METHODS.md B.0).

    causal=False (the published protocol): snippet j's value on its own frames 16j..16j+15, frames 0..16S-1 (a
    snippet's frames see up to 15 frames of its future). causal=True (as live): frame t gets the latest snippet
    that ended at or before t, frames snippet-1..num_frames-1; the snippet ending at t itself when t + 1 is a
    multiple of 16 (live, the worker computes one ending at every frame: `vigil eval` scores that way).
    """
    frames = np.repeat(np.asarray(signals, dtype=np.float64), snippet, axis=0)
    return frames[: num_frames - (snippet - 1)] if causal else frames


def snippet_metrics(
    names: list[str],
    keys: list[str],
    labels: dict[str, np.ndarray],
    paper: list[np.ndarray],
    online: list[np.ndarray],
    calibration: Calibration,
    snippet: int = SNIPPET_FRAMES,
    online_raw: bool = False,
) -> dict[str, Any]:
    """Both protocols for a snippet-level method -> card metrics (no ROC points).

    `paper` and `online` hold each test video's (snippets, S) raw signals: `paper` from the published, non-causal
    scoring (one value per snippet over its own 16 frames, `snippet_frames(causal=False)`; labels cut to 16 x
    snippets), `online` from causal scoring, aligned causally (`snippet_frames(causal=True)`, the first 15
    labels dropped). Paper: each raw signal, no per-video normalisation (these methods output probabilities).
    Online: the card's calibration, and with `online_raw` also each raw signal.
    """
    paper_truth, online_truth, paper_frames, online_frames = [], [], [], []
    for key, p, o in zip(keys, paper, online, strict=True):
        n = len(labels[key])
        paper_frames.append(snippet_frames(p, n, snippet, causal=False))
        paper_truth.append(labels[key][: len(paper_frames[-1])].astype(np.uint8))
        online_frames.append(snippet_frames(o, n, snippet, causal=True))
        online_truth.append(labels[key][snippet - 1 : snippet - 1 + len(online_frames[-1])].astype(np.uint8))
    result: dict[str, Any] = {
        "videos": keys,
        "frames": int(sum(len(t) for t in paper_truth)),
        "online_frames": int(sum(len(t) for t in online_truth)),
    }
    for kind, truth in (("paper", paper_truth), ("online", online_truth)):
        if len(np.unique(np.concatenate(truth))) < 2:
            result[kind] = f"skipped: the {kind} protocol's frames of {keys} hold one class only"
            return result
    for i, name in enumerate(names):
        paper_i = summarize("paper", keys, paper_truth, [p[:, i] for p in paper_frames])
        result[f"paper_{name}"] = paper_i.model_dump(exclude={"roc"})
        if online_raw:
            raw = summarize("online", keys, online_truth, [o[:, i] for o in online_frames])
            result[f"online_raw_{name}"] = raw.model_dump(exclude={"roc"})
    scores = [online_scores(o, calibration) for o in online_frames]
    result["online"] = summarize("online", keys, online_truth, scores).model_dump(exclude={"roc"})
    return result


def evaluate(
    videos: list[VideoSignals],
    context: int,
    signal_names: list[str],
    calibration: Calibration | None,
    model: str = "",
    dataset: str = "",
) -> tuple[EvalResult, dict[Protocol, list[np.ndarray]]]:
    """Both protocols over the test videos -> (metrics, per-video scores of each protocol for plotting)."""
    if not videos:
        msg = "no test videos to evaluate"
        raise ValueError(msg)
    for v in videos:
        if v.raw.ndim != 2 or v.raw.shape[1] != len(signal_names):
            msg = f"video {v.name}: raw signals must be (N, {len(signal_names)}), got {v.raw.shape}"
            raise ValueError(msg)
    if calibration is not None and [s.name for s in calibration.signals] != list(signal_names):
        msg = (
            f"the calibration covers signals {[s.name for s in calibration.signals]} but the model emits "
            f"{list(signal_names)}; the card is inconsistent, recalibrate the model"
        )
        raise ValueError(msg)
    names = [v.name for v in videos]
    labels = [scored_labels(v, context) for v in videos]
    weights = np.array([s.weight for s in calibration.signals]) if calibration else np.ones(len(signal_names))
    scores: dict[Protocol, list[np.ndarray]] = {"paper": [paper_scores(v.raw, weights) for v in videos]}
    paper = summarize("paper", names, labels, scores["paper"])
    online, skipped = None, ""
    if calibration is None:
        skipped = "the model card has no calibration; retrain (vigil train calibrates on held-out normal videos)"
    else:
        scores["online"] = [online_scores(v.raw, calibration) for v in videos]
        online = summarize("online", names, labels, scores["online"])
    result = EvalResult(
        model=model,
        dataset=dataset,
        context=context,
        signal_names=list(signal_names),
        weights=weights.tolist(),
        paper=paper,
        online=online,
        online_skipped=skipped,
    )
    return result, scores
