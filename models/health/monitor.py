"""One camera's health, frame by frame: measurements in, per-frame flags and the camera's conditions out. Pure.

Each check looks at one frame (and what the monitor remembers) and may *suspect* it. A suspected frame is flagged at
once: its score means nothing and it may never open or extend an alert. The camera's *condition* of that check
(what the health state, events and metrics show) follows with a debounce:

    ok --suspected for raise_s--> raised (event) --not suspected for clear_s--> ok (event)

and frames stay flagged while the condition is raised, so the frames just after a fault (a model predicts from
them) are held back too. Checks and what they compare:

- decode_error: the decoder flagged the frame or packets before it failed; later frames predict from the damage,
  so they stay suspect until a key frame (at most `recover_s`).
- frozen: no more than a `max_change` share of the strided luma sample changed, for `min_s`.
- blank: the frame is uniform (contrast at or below `max_contrast`).
- covered / blur / moved: against the camera's reference view of the scene profile (learned from the first
  `reference_s` of healthy frames, then following slow change with time constant `adapt_s`): detail far below the
  reference's and the view gone too (its coarse layout no longer correlates with the reference's, or its contrast
  collapsed: covered), detail alone (blur), or the layout alone (moved: at least `min_off` of the layout's cells off the
  reference view by more than 4 of their usual deviations, so an object passing, even an anomalous one, is no move).
  A view moved for `relearn_s` becomes the new reference, and the monitor asks for the camera's calibration to
  relearn (`FrameHealth.relearn`).
- ir_switch: the frame's chroma is on the other side of the calibration's mono/colour bounds than the camera's
  mode; after `raise_s` the mode switches (and with it the reference view used).
- illumination: the mean level jumped by more than `max_jump` against the last second's, or stays that far from the
  reference view's (lights left on: after `relearn_s` the lit view becomes the reference, as a moved one does).

Frames that are no evidence about the scene (decode errors, blank, covered) are not compared further and carry no
chroma, so a black frame never argues for the IR profile. Time is the frames' stream time (pts), so the same
frames give the same flags live (service/ingest) and offline (models/inference, `vigil eval`/`vigil score`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.health.measure import FrameInfo, FrameStats
from models.health.params import BITS, CONDITIONS, CheckName, HealthParams

Mode = Literal["colour", "mono"]
MAX_FRAME_GAP_S = 2.0  # a longer gap (a reconnect, a seek) restarts the checks that compare consecutive frames
LEVEL_TAU_S = 1.0  # time constant of the level the illumination check compares with
NOISE_LEVELS = 2  # a sampled pixel that changed by more than this many grey levels changed (frozen)
_MIN_LEARN_FRAMES = 5
_LAYOUT_NOISE = 2.0  # grey levels every layout cell varies by anyway (noise, compression)
OFF_SIGMAS = 4.0  # a layout cell this many of its usual deviations from the reference view is off it
_MIN_GAIN = 0.5  # the light may change the layout by 0.5x-2x before a cell counts as off (illumination checks the rest)
_EXPLAIN_STILLNESS = frozenset({"decode_error", "blank", "covered"})
_LASTING: tuple[CheckName, ...] = ("moved", "illumination")  # changes that become the new reference after relearn_s


class ViewReference(BaseModel):
    """A camera's reference view of one scene profile: what its healthy frames look like."""

    model_config = ConfigDict(extra="forbid")
    learned: bool = False
    seconds: float = 0.0  # healthy stream time averaged in so far
    frames: int = 0
    level: float = 0.0
    contrast: float = 0.0
    texture: float = 0.0
    layout: list[float] = Field(default_factory=list)  # (h * LAYOUT_W) coarse luma, row-major
    variance: list[float] = Field(default_factory=list)  # per layout cell: how much it varies (moving objects)
    shape: list[int] = Field(default_factory=list)  # [h, LAYOUT_W]


class HealthMemory(BaseModel):
    """What a camera's monitor keeps across ingesters (stored in Redis): its mode and reference views."""

    model_config = ConfigDict(extra="forbid")
    mode: Mode | None = None  # colour or mono (IR / grey), as the chroma of its frames says
    views: dict[str, ViewReference] = Field(default_factory=dict)  # mode -> reference view


@dataclass(frozen=True)
class Change:
    """A condition raised or cleared at this frame."""

    condition: CheckName
    kind: Literal["raised", "cleared"]
    detail: str


@dataclass(frozen=True)
class FrameHealth:
    """What the monitor says about one frame."""

    flags: int  # BITS of the conditions that make its score meaningless (suspected or raised); 0 = healthy
    chroma: float | None  # colourfulness as scene-profile evidence; None when the frame is none (blank, corrupt)
    changes: tuple[Change, ...] = ()
    relearn: bool = False  # the view moved for good and became the reference: relearn the camera's calibration


def spread(flags: np.ndarray, context: int) -> np.ndarray:
    """(N,) int flags of consecutive frames -> each frame's flags OR those of the `context` frames before it: a model
    that predicts a frame from earlier ones scores it from the damaged frames too."""
    out = np.asarray(flags, dtype=np.int64).copy()
    for k in range(1, context + 1):
        out[k:] |= flags[:-k]
    return out


def _correlation(layout: np.ndarray, ref: ViewReference) -> float:
    """Correlation of a frame's layout with the reference's, each cell weighted by how still it is in the reference
    (1.0 when the reference is flat): a blurred view keeps it, a covered lens shows another picture."""
    b = np.asarray(ref.layout, dtype=np.float64)
    w = 1.0 / (np.asarray(ref.variance, dtype=np.float64) + _LAYOUT_NOISE**2)
    w /= w.sum()
    a = layout.reshape(-1).astype(np.float64)
    a, b = a - np.dot(w, a), b - np.dot(w, b)
    bb = float(np.dot(w, b * b))
    if bb < 1.0:  # the reference view is flat (std < 1 grey level): nothing to compare
        return 1.0
    norm = float(np.sqrt(np.dot(w, a * a) * bb))
    return float(np.dot(w, a * b)) / norm if norm > 0 else 0.0


def _off_view(layout: np.ndarray, ref: ViewReference) -> float:
    """Share of a frame's layout cells that are off the reference view: more than OFF_SIGMAS of their usual deviation
    from it, after the gain and offset that fit best (within 0.5x-2x, so a change of light alone is no move). A moved
    camera puts most cells off; a person, a car or a bright object (an anomaly) only the few it covers, and cells
    where people pass anyway have a large usual deviation."""
    b = np.asarray(ref.layout, dtype=np.float64)
    var = np.asarray(ref.variance, dtype=np.float64) + _LAYOUT_NOISE**2
    x = layout.reshape(-1).astype(np.float64)
    w = 1.0 / var
    bm, xm = float(np.dot(w, b) / w.sum()), float(np.dot(w, x) / w.sum())
    vb = float(np.dot(w, (b - bm) ** 2))
    gain = float(np.dot(w, (b - bm) * (x - xm))) / vb if vb > 0 else 1.0
    gain = min(max(gain, _MIN_GAIN), 1.0 / _MIN_GAIN)
    z = np.abs(x - xm - gain * (b - bm)) / np.sqrt(var)
    return float(np.mean(z > OFF_SIGMAS))


class HealthMonitor:
    """Steps one camera's checks over its decoded frames (module docstring)."""

    def __init__(
        self,
        params: HealthParams,
        chroma_bounds: tuple[float, float] = (4.0, 8.0),
        memory: HealthMemory | None = None,
    ) -> None:
        self.params = params
        self.mono_below, self.colour_above = chroma_bounds
        self.memory = memory.model_copy(deep=True) if memory is not None else HealthMemory()
        self.memory_changed = False  # the shell stores the memory when set (and clears it)
        self.active: dict[CheckName, float] = {}  # raised condition -> stream time it was raised
        self.details: dict[CheckName, str] = {}  # raised condition -> what the check saw when it was raised
        self._since: dict[CheckName, float] = {}  # suspected condition -> first frame of the current suspicion
        self._last: dict[CheckName, float] = {}  # condition -> last frame it was suspected
        self._last_t: float | None = None
        self._sample: np.ndarray | None = None
        self._still_since: float | None = None
        self._level: float | None = None  # the last second's mean level (illumination)
        self._level_t: float | None = None
        self._decode_until: float | None = None
        self._ir_target: Mode | None = None

    def reset_stream(self) -> None:
        """A new connection: consecutive-frame comparisons restart; raised conditions stay until they clear."""
        self._last_t, self._sample, self._still_since = None, None, None
        self._level, self._level_t = None, None
        self._decode_until = None
        self._since.clear()

    def step(self, info: FrameInfo, t: float) -> FrameHealth:
        """Check one decoded frame at stream time `t` (seconds)."""
        dt = self._advance(t)
        s = info.stats
        change = self._change(s.sample)
        suspect: dict[CheckName, str] = {}  # condition -> what the check saw
        chroma: float | None = s.chroma
        if self.params.enabled:
            chroma = self._check(info, t, change, suspect)
            if suspect.keys() & _EXPLAIN_STILLNESS:  # a black or covered picture does not change: that is not frozen
                suspect.pop("frozen", None)
        elif chroma is not None:
            self._switch_quietly(chroma)
        changes = self._debounce(suspect, t)
        flags = 0
        for name in {*suspect, *self.active}:
            flags |= BITS[name]
        relearn = self._relearn(t, changes)
        if flags == 0 and self.params.enabled:
            self._learn(s, dt)
        return FrameHealth(flags, chroma, tuple(changes), relearn)

    # --- checks ----------------------------------------------------------------------------------------------

    def _check(self, info: FrameInfo, t: float, change: float | None, suspect: dict[CheckName, str]) -> float | None:
        """Run the checks on one frame; returns its chroma if it is evidence of the scene profile."""
        p, s = self.params, info.stats
        if p.decode_error.enabled:
            if info.corrupt:
                self._decode_until = t + p.decode_error.recover_s
            elif info.key:
                self._decode_until = None
            if self._decode_until is not None and t <= self._decode_until:
                suspect["decode_error"] = "the decoder reported damaged or missing data"
        if p.frozen.enabled:
            self._frozen(change, t, suspect)
        if "decode_error" in suspect:
            return None
        if p.blank.enabled and s.contrast <= p.blank.max_contrast:
            suspect["blank"] = f"a uniform picture (contrast {s.contrast:.1f}, level {s.level:.0f})"
            return None
        ref = self.memory.views.get(self._mode)
        if ref is not None and ref.learned and ref.shape == list(s.layout.shape):
            self._compare(s, ref, suspect)
        if "covered" in suspect:
            return None
        if p.ir_switch.enabled:
            self._ir(s.chroma, suspect)
        else:
            self._switch_quietly(s.chroma)
        if p.illumination.enabled and "ir_switch" not in suspect:
            self._illumination(s, ref, suspect)
        self._follow_level(s.level, t)
        return s.chroma

    def _illumination(self, s: FrameStats, ref: ViewReference | None, suspect: dict[CheckName, str]) -> None:
        """A jump against the last second's level, or a level still far from the reference view's after one (the
        lights stayed on: the model sees another scene until the camera relearns)."""
        limit = self.params.illumination.max_jump
        if self._level is not None and abs(s.level - self._level) > limit:
            suspect["illumination"] = f"the mean level jumped by {s.level - self._level:+.0f} grey levels"
        elif ref is not None and ref.learned and abs(s.level - ref.level) > limit:
            suspect["illumination"] = f"the mean level is {s.level - ref.level:+.0f} grey levels off the reference's"

    def _frozen(self, change: float | None, t: float, suspect: dict[CheckName, str]) -> None:
        check = self.params.frozen
        if change is None or change > check.max_change:
            self._still_since = None
            return
        if self._still_since is None:
            self._still_since = self._last_t if self._last_t is not None else t  # since the frame it repeats
        still = t - self._still_since
        if still >= check.min_s:
            suspect["frozen"] = f"no change for {still:.1f} s"

    def _compare(self, s: FrameStats, ref: ViewReference, suspect: dict[CheckName, str]) -> None:
        """Covered, blur and moved, against the reference view (the first that holds explains the frame)."""
        p = self.params
        contrast = s.contrast / max(ref.contrast, 1e-3)
        texture = s.texture / max(ref.texture, 1e-3)
        match = _correlation(s.layout, ref)
        gone = contrast <= p.covered.max_contrast or match < p.covered.min_match
        if p.covered.enabled and texture <= p.covered.max_texture and gone:
            suspect["covered"] = (
                f"detail {texture:.0%} and contrast {contrast:.0%} of the reference view's, layout match {match:.2f}"
            )
        elif p.blur.enabled and texture <= p.blur.max_texture:
            suspect["blur"] = f"detail {texture:.0%} of the reference view's"
        elif p.moved.enabled and (off := _off_view(s.layout, ref)) >= p.moved.min_off:
            suspect["moved"] = f"{off:.0%} of the view is off the reference view"

    @property
    def _mode(self) -> Mode:
        return self.memory.mode or "colour"

    def _side(self, chroma: float) -> Mode | None:
        if chroma <= self.mono_below:
            return "mono"
        return "colour" if chroma > self.colour_above else None

    def _ir(self, chroma: float, suspect: dict[CheckName, str]) -> None:
        side = self._side(chroma)
        if self.memory.mode is None and side is not None:
            self._set_mode(side)
        elif side is not None and side != self.memory.mode:
            self._ir_target = side
            suspect["ir_switch"] = f"{self.memory.mode} -> {side} (chroma {chroma:.1f})"

    def _switch_quietly(self, chroma: float) -> None:
        side = self._side(chroma)
        if side is not None and side != self.memory.mode:
            self._set_mode(side)

    def _set_mode(self, mode: Mode) -> None:
        self.memory.mode = mode
        self.memory_changed = True

    def _follow_level(self, level: float, t: float) -> None:
        if self._level is None or self._level_t is None:
            self._level, self._level_t = level, t
            return
        self._level += (level - self._level) * min(1.0, max(t - self._level_t, 0.0) / LEVEL_TAU_S)
        self._level_t = t

    # --- bookkeeping -----------------------------------------------------------------------------------------

    def _advance(self, t: float) -> float:
        """Seconds since the previous frame; 0 after a gap or a step back in time, which restarts the comparisons
        between consecutive frames."""
        last = self._last_t
        if last is None or not math.isfinite(t) or t < last or t - last > MAX_FRAME_GAP_S:
            self.reset_stream()
            self._last_t = t if math.isfinite(t) else None
            return 0.0
        self._last_t = t
        return t - last

    def _change(self, sample: np.ndarray) -> float | None:
        """Share of the luma sample's pixels that changed by more than NOISE_LEVELS since the previous frame (None
        for the first frame of a stream). A share, not a mean: a few small objects moving over a still, noiseless
        (compressed) background change a mean by almost nothing."""
        prev, self._sample = self._sample, sample
        if prev is None or prev.shape != sample.shape:
            return None
        return float(np.count_nonzero(cv2.absdiff(sample, prev) > NOISE_LEVELS)) / sample.size

    def _debounce(self, suspect: dict[CheckName, str], t: float) -> list[Change]:
        changes: list[Change] = []
        for name in CONDITIONS:
            check = getattr(self.params, name)
            if name in suspect:
                self._last[name] = t
                since = self._since.setdefault(name, t)
                if name not in self.active and t - since >= check.raise_s:
                    self.active[name], self.details[name] = t, suspect[name]
                    changes.append(Change(name, "raised", suspect[name]))
                    if name == "ir_switch" and self._ir_target is not None:
                        self._set_mode(self._ir_target)
                continue
            self._since.pop(name, None)
            if name in self.active and (t - self._last.get(name, t) >= check.clear_s or not check.enabled):
                del self.active[name]
                changes.append(Change(name, "cleared", self.details.pop(name, "")))
        return changes

    def _relearn(self, t: float, changes: list[Change]) -> bool:
        """A view moved, or lit differently, for `relearn_s` is the camera's new view: forget every reference view (the
        next healthy frames are learned), clear the condition."""
        for name in _LASTING:
            since = self.active.get(name)
            if since is None or t - since < getattr(self.params, name).relearn_s:
                continue
            del self.active[name]
            self.details.pop(name, None)
            self._since.pop(name, None)
            self.memory.views = {}
            self.memory_changed = True
            changes.append(Change(name, "cleared", "the camera's view as it is now became its reference view"))
            return True
        return False

    def _learn(self, s: FrameStats, dt: float) -> None:
        """Average a healthy frame into the reference view of the current mode (learn, then follow slow change)."""
        mode = self._mode
        ref = self.memory.views.get(mode)
        shape = list(s.layout.shape)
        if ref is None or ref.shape != shape:
            ref = self.memory.views[mode] = ViewReference(
                shape=shape, layout=[0.0] * s.layout.size, variance=[0.0] * s.layout.size
            )
        layout = np.asarray(ref.layout, dtype=np.float64)
        variance = np.asarray(ref.variance, dtype=np.float64)
        w = min(1.0, dt / self.params.adapt_s) if ref.learned else 1.0 / (ref.frames + 1)  # follow, or average
        delta = s.layout.reshape(-1) - layout
        layout += delta * w
        variance += (delta * (s.layout.reshape(-1) - layout) - variance) * w  # Welford while learning, then an EMA
        ref.layout, ref.variance = layout.tolist(), variance.tolist()
        ref.level += (s.level - ref.level) * w
        ref.contrast += (s.contrast - ref.contrast) * w
        ref.texture += (s.texture - ref.texture) * w
        ref.frames += 1
        ref.seconds += dt
        if not ref.learned and ref.seconds >= self.params.reference_s and ref.frames >= _MIN_LEARN_FRAMES:
            ref.learned = True
            self.memory_changed = True


def calibration_inputs(
    flags: Sequence[int] | np.ndarray | None, chroma: Sequence[float | None] | np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Scored frames' health flags and chroma -> the camera calibrator's `chroma` (N,) float (NaN: no evidence, the
    scene profile stays) and `usable` (N,) bool (no flag). None stays None: not checked."""
    chroma_out = None if chroma is None else np.array([np.nan if c is None else c for c in chroma], dtype=np.float64)
    usable = None if flags is None else np.asarray(flags, dtype=np.int64) == 0
    return chroma_out, usable
