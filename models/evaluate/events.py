"""Event-level evaluation: what an operator sees, beside frame AUC.

An *event* is a maximal run of anomalous frames inside one video; it is *detected* when an alert overlaps it. Over a
set of test videos (their scored frames concatenated, in order) and the alerts the service's alert machine produced
on them, this reports event recall, alerts, false alerts (overlapping no anomalous frame), false alerts per hour of
normal footage, the share of normal frames inside alerts and the detection delay (frames from an event's start to
the alert that fired on it; 0 when an alert was already open). Because the test sets are small and mostly anomalous,
each result carries a chance floor: the same alerts (count and lengths) placed at random positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

Mode = Literal["per-video", "stream"]
_CHANCE_DRAWS = 200


@dataclass(frozen=True)
class AlertSpan:
    """An alert on the concatenated scored frames: [start, end] inclusive, `opened` = the frame it fired at."""

    start: int
    end: int
    opened: int


def anomalous_spans(labels: np.ndarray) -> list[tuple[int, int]]:
    """(N,) 0/1 labels -> [start, end) runs of 1s."""
    padded = np.r_[0, np.asarray(labels).reshape(-1).astype(np.int8), 0]
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


class EventResult(BaseModel):
    """Event-level metrics of one mode (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    mode: Mode
    fps: float
    events: int
    detected: int
    recall: float | None  # None without events
    alerts: int
    false_alerts: int
    normal_frames: int
    normal_hours: float
    false_alerts_per_hour: float | None  # None without normal frames
    normal_in_alerts: float | None  # share of normal frames inside alerts
    delay_median_frames: float | None
    delay_p90_frames: float | None
    delay_median_s: float | None
    delay_p90_s: float | None
    missed: list[str]  # "<video>:<start>-<end>" of every event no alert overlapped (scored-frame indices)
    chance_recall: float | None  # the same alerts at random positions (mean over draws)
    chance_normal_in_alerts: float | None


def _events(labels: list[np.ndarray]) -> list[tuple[int, int, int]]:
    """(video index, start, end) of every event, in concatenated coordinates (end exclusive)."""
    out: list[tuple[int, int, int]] = []
    offset = 0
    for i, y in enumerate(labels):
        out.extend((i, offset + a, offset + b) for a, b in anomalous_spans(y))
        offset += len(y)
    return out


def _coverage(spans: list[AlertSpan], n: int) -> np.ndarray:
    inside = np.zeros(n + 1, dtype=np.int64)
    for a in spans:
        inside[max(a.start, 0)] += 1
        inside[min(a.end, n - 1) + 1] -= 1
    return np.cumsum(inside[:n]) > 0


def event_metrics(
    labels: list[np.ndarray], alerts: list[AlertSpan], fps: float, mode: Mode, names: list[str], seed: int = 0
) -> EventResult:
    """Metrics of `alerts` against per-video labels of the scored frames (concatenated coordinates)."""
    y = np.concatenate([np.asarray(v).reshape(-1) for v in labels]).astype(bool) if labels else np.zeros(0, bool)
    n = len(y)
    events = _events(labels)
    inside = _coverage(alerts, n)
    delays: list[int] = []
    missed: list[str] = []
    starts = np.array([a.start for a in alerts], dtype=np.int64)
    ends = np.array([a.end for a in alerts], dtype=np.int64)
    opened = np.array([a.opened for a in alerts], dtype=np.int64)
    offsets = np.cumsum([0, *[len(v) for v in labels]])
    for video, a, b in events:
        hit = (starts < b) & (ends >= a)
        if hit.any():
            delays.append(max(0, int(opened[hit].min()) - a))
        else:
            missed.append(f"{names[video]}:{a - offsets[video]}-{b - offsets[video] - 1}")
    false = sum(1 for s in alerts if not y[max(s.start, 0) : s.end + 1].any())
    normal = int((~y).sum())
    hours = normal / fps / 3600.0
    chance_recall, chance_normal = _chance(y, events, alerts, seed)
    return EventResult(
        mode=mode,
        fps=fps,
        events=len(events),
        detected=len(delays),
        recall=len(delays) / len(events) if events else None,
        alerts=len(alerts),
        false_alerts=false,
        normal_frames=normal,
        normal_hours=hours,
        false_alerts_per_hour=false / hours if normal else None,
        normal_in_alerts=float(inside[~y].mean()) if normal else None,
        delay_median_frames=float(np.median(delays)) if delays else None,
        delay_p90_frames=float(np.percentile(delays, 90)) if delays else None,
        delay_median_s=float(np.median(delays)) / fps if delays else None,
        delay_p90_s=float(np.percentile(delays, 90)) / fps if delays else None,
        missed=missed,
        chance_recall=chance_recall,
        chance_normal_in_alerts=chance_normal,
    )


def _chance(
    y: np.ndarray, events: list[tuple[int, int, int]], alerts: list[AlertSpan], seed: int
) -> tuple[float | None, float | None]:
    """Recall and normal share inside alerts when the same alert lengths start at uniformly random frames."""
    n = len(y)
    if not alerts or n == 0:
        return (0.0 if events else None), (0.0 if (~y).any() else None)
    rng = np.random.default_rng(seed)
    lengths = np.array([min(a.end - a.start + 1, n) for a in alerts])
    recalls, normals = [], []
    for _ in range(_CHANCE_DRAWS):
        starts = rng.integers(0, n - lengths + 1)
        spans = [AlertSpan(int(s), int(s + k - 1), int(s)) for s, k in zip(starts, lengths, strict=True)]
        inside = _coverage(spans, n)
        if events:
            recalls.append(np.mean([inside[a:b].any() for _, a, b in events]))
        if (~y).any():
            normals.append(inside[~y].mean())
    return (float(np.mean(recalls)) if events else None), (float(np.mean(normals)) if normals else None)
