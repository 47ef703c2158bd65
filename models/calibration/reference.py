"""A camera's normal reference and the score scale built on it: expected false alerts per hour of normal footage.

A `ProfileReference` describes what one camera's smoothed, standardised anomaly signal `v` looks like on its own
normal footage in one scene regime (see camera.py): a quantile summary, an exponential upper tail fitted to the top
`tail_share` of the learned frames, how long a run above the tail start lasts (`run_frames`) and the frame rate.
From it, any level `v` gets the rate at which the camera's normal footage would rise above it:

    rate_per_hour(v) = P_normal(value > v) * fps * 3600 / run_frames

and the published score is a fixed map of that rate, the same on every camera:

    score = 0.5 - 0.1 * log10(rate_per_hour)        (soft top above 0.9, never reaching 1)

so score 0.5 = a level normal footage reaches about once an hour, 0.6 once in 10 hours, 0.4 ten times an hour;
0.1 of score is a factor of 10 in rate everywhere, and a hysteresis of 0.1 means "10x more common" on any camera.
The rates are estimates from minutes of learned footage (beyond the tail start, an exponential extrapolation),
which is why docs/RESULTS.md measures the realised false alerts per hour on held-out normal footage.

Frames an operator marked as false alarms join the reference as `feedback`, each counting as `feedback_weight`
learned frames, so a repeat of the same level scores well below where it alerted. Pure numpy.
"""

from __future__ import annotations

import math
import time

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

SCORE_AT_ONE_PER_HOUR = 0.5  # the score of a level normal footage reaches once an hour
SATURATION_SCORE = 0.99  # frames beyond this level enter the camera's smoothing at this level (camera.py)
SCORE_PER_DECADE = 0.1  # score step for a factor of 10 in that rate
_SOFT_TOP = 0.9  # above this the linear scale bends towards 1, so the score stays in [0, 1) and keeps ranking
_MAD_TO_STD = 1.4826


class ProfileReference(BaseModel):
    """The normal level of one camera in one scene regime (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    quantiles: list[float] = Field(min_length=2)  # sorted values at evenly spaced ranks of the learned frames
    frames: int = Field(ge=1)  # learned frames the quantiles summarise
    fps: float = Field(gt=0)  # frame rate of the learned footage (turns frame shares into hourly rates)
    run_frames: float = Field(ge=1)  # mean length of a run above `tail_start` in the learned footage
    tail_start: float  # value above which the survival is the fitted exponential
    tail_share: float = Field(gt=0, lt=1)  # share of learned frames above tail_start
    tail_scale: float = Field(gt=0)  # mean excess over tail_start (exponential scale)
    median: float  # centre and robust spread of the learned values: what drift tracking steers towards
    spread: float = Field(gt=0)
    feedback: list[float] = Field(default_factory=list)  # values of frames marked false alarms, sorted
    feedback_weight: float = Field(default=10.0, gt=0)  # learned frames one false-alarm frame counts as
    learned_ts: float = Field(default_factory=time.time)
    source: str = ""  # where the frames came from: "live frames 12:00-12:03", "footage /data/x.mp4", "model card"
    _levels: dict[float, float] = PrivateAttr(default_factory=dict)

    def survival(self, v: np.ndarray) -> np.ndarray:
        """P(a normal frame's value > v), feedback included; strictly decreasing in v."""
        v = np.asarray(v, dtype=np.float64)
        q = _strictly_increasing(np.asarray(self.quantiles, dtype=np.float64))
        m = len(q)
        levels = 1.0 - (np.arange(m) + 0.5) / m  # survival at each quantile (plotting positions)
        inside = np.interp(v, q, levels)
        below = 1.0 - (0.5 / m) * np.exp(np.minimum(v - q[0], 0.0) / self.tail_scale)
        tail = self.tail_share * np.exp(-np.maximum(v - self.tail_start, 0.0) / self.tail_scale)
        s = np.where(v < q[0], below, np.where(v > self.tail_start, tail, inside))
        if not self.feedback:
            return np.asarray(s, dtype=np.float64)
        weight, n = self.feedback_weight, len(self.feedback)
        return np.asarray((self.frames * s + weight * self._feedback_mass(v)) / (self.frames + weight * n), np.float64)

    def _feedback_mass(self, v: np.ndarray) -> np.ndarray:
        """How many false-alarm frames count as "at or above v": each counts fully up to its own value and, above it,
        decays with the tail scale (a level a little above a false alarm is much the same level). O(N log M):
        sum_{f_j < v} exp((f_j - v) / scale) = exp(L[k] - v / scale) with L the running log-sum-exp of f / scale."""
        fb = np.asarray(self.feedback, dtype=np.float64)  # sorted
        k = np.searchsorted(fb, v, side="left")  # false-alarm frames below v
        log_cumsum = np.logaddexp.accumulate(fb / self.tail_scale)
        below = np.where(k > 0, np.exp(log_cumsum[np.maximum(k - 1, 0)] - v / self.tail_scale), 0.0)
        return np.asarray((len(fb) - k) + below, dtype=np.float64)

    def rate_per_hour(self, v: np.ndarray) -> np.ndarray:
        """Expected number of times per hour that normal footage of this camera rises above v."""
        return self.survival(v) * (self.fps * 3600.0 / self.run_frames)

    def score(self, v: np.ndarray) -> np.ndarray:
        """Values -> scores in [0, 1): a fixed map of the hourly rate (module docstring)."""
        return rate_to_score(self.rate_per_hour(v))

    def level_at_score(self, score: float) -> float:
        """The value whose score is `score`, feedback included (cached per score: references do not change)."""
        cached = self._levels.get(score)
        if cached is None:
            rate = score_to_rate(score) * self.run_frames / (self.fps * 3600.0)  # the survival that rate stands for
            cached = self.tail_start + self.tail_scale * math.log(self.tail_share / min(rate, self.tail_share))
            if self.feedback:  # false alarms lift the survival: the level is higher; find it by bisection
                lo, hi = cached, max(cached, max(self.feedback)) + 50 * self.tail_scale
                for _ in range(60):
                    mid = (lo + hi) / 2
                    lo, hi = (mid, hi) if self.score(np.array([mid]))[0] < score else (lo, mid)
                cached = hi
            self._levels[score] = cached
        return cached

    def with_feedback(self, values: np.ndarray) -> ProfileReference:
        """A copy with more false-alarm values (kept sorted; the oldest beyond 4 * len(quantiles) go first)."""
        merged = [*self.feedback, *(float(x) for x in np.asarray(values, dtype=np.float64).ravel())]
        keep = merged[-4 * len(self.quantiles) :]
        return self.model_copy(update={"feedback": sorted(keep)})


def rate_to_score(rate_per_hour: np.ndarray) -> np.ndarray:
    """0.5 at once an hour, -0.1 per factor 10 more often, clipped at 0; above 0.9 bends smoothly towards 1."""
    rate = np.maximum(np.asarray(rate_per_hour, dtype=np.float64), 1e-300)
    linear = SCORE_AT_ONE_PER_HOUR - SCORE_PER_DECADE * np.log10(rate)
    top = 1.0 - (1.0 - _SOFT_TOP) * np.exp(-(linear - _SOFT_TOP) / (1.0 - _SOFT_TOP))
    return np.asarray(np.clip(np.where(linear > _SOFT_TOP, top, linear), 0.0, 1.0), dtype=np.float64)


def score_to_rate(score: float) -> float:
    """Inverse of `rate_to_score` on (0, 1): the hourly rate a threshold stands for (docs, the live page)."""
    if not 0.0 < score < 1.0:
        msg = f"score must be in (0, 1), got {score}"
        raise ValueError(msg)
    linear = score
    if score > _SOFT_TOP:
        linear = _SOFT_TOP - (1.0 - _SOFT_TOP) * math.log((1.0 - score) / (1.0 - _SOFT_TOP))
    return float(10.0 ** ((SCORE_AT_ONE_PER_HOUR - linear) / SCORE_PER_DECADE))


def _strictly_increasing(q: np.ndarray) -> np.ndarray:
    return np.maximum.accumulate(q + np.arange(len(q)) * 1e-9)


def mean_run_length(segments: list[np.ndarray], level: float) -> float:
    """Mean length (frames) of the maximal runs above `level`, runs cut at segment ends; 1 when there are none."""
    lengths: list[int] = []
    for seg in segments:
        above = np.r_[False, np.asarray(seg) > level, False]
        edges = np.flatnonzero(np.diff(above.astype(np.int8)))
        lengths.extend((edges[1::2] - edges[::2]).tolist())
    return max(1.0, float(np.mean(lengths))) if lengths else 1.0


def fit_reference(
    segments: list[np.ndarray],
    fps: float,
    source: str,
    num_quantiles: int = 512,
    tail_share: float = 0.02,
    min_frames: int = 50,
    feedback_weight: float = 10.0,
) -> ProfileReference:
    """Fit a reference to the values of normal frames, given as consecutive runs (`segments`, in time order).

    Raises ValueError (saying how many frames there were) when there are fewer than `min_frames` or any value
    is NaN/inf.
    """
    parts = [np.asarray(s, dtype=np.float64).ravel() for s in segments if len(s)]
    values = np.concatenate(parts) if parts else np.empty(0)
    if len(values) < max(min_frames, 2):
        msg = f"a reference needs at least {max(min_frames, 2)} normal frames, got {len(values)}"
        raise ValueError(msg)
    if not np.isfinite(values).all():
        msg = "the frames to learn from have NaN or inf signals; the model diverged or the frames are broken"
        raise ValueError(msg)
    if not fps > 0:
        msg = f"fps must be > 0 to turn frame shares into hourly rates, got {fps}"
        raise ValueError(msg)
    ordered = np.sort(values)
    n = len(ordered)
    ranks = np.round(np.linspace(0, n - 1, min(num_quantiles, n))).astype(int)  # keeps the min and the max
    tail_count = max(5, round(tail_share * n))
    tail_start = float(ordered[n - tail_count - 1]) if n > tail_count else float(ordered[0])
    excess = ordered[ordered > tail_start] - tail_start
    median = float(np.median(values))
    spread = float(_MAD_TO_STD * np.median(np.abs(values - median)))
    spread = max(spread, 0.25 * float(np.std(values)), 1e-6)
    # The exponential scale: the mean excess, floored so a tail of near-identical frames does not make every
    # later frame look infinitely rare.
    tail_scale = max(float(excess.mean()) if len(excess) else 0.0, 0.05 * spread, 1e-6)
    reference = ProfileReference(
        quantiles=ordered[ranks].tolist(),
        frames=n,
        fps=float(fps),
        run_frames=mean_run_length(parts, tail_start),
        tail_start=tail_start,
        tail_share=0.5,  # provisional: set below to the quantile summary's own survival at tail_start
        tail_scale=tail_scale,
        median=median,
        spread=spread,
        feedback_weight=feedback_weight,
        source=source,
    )
    # The tail continues the summary's survival at its start, so the survival is continuous and decreasing.
    q = _strictly_increasing(np.asarray(reference.quantiles))
    share = float(np.interp(tail_start, q, 1.0 - (np.arange(len(q)) + 0.5) / len(q)))
    return reference.model_copy(update={"tail_share": min(max(share, 0.5 / len(q)), 0.5)})
