"""Per-camera order restored from window sequence numbers, then calibration, scores and alerts, exactly once.

Workers keep no per-camera state. A scored window is stashed in the camera's results hash; then, under a
short per-camera lock, whichever worker gets it drains the stash in seq order: calibrate with the camera's
EMA state, publish per-frame scores, advance the alert machine, and save the new state, all in one MULTI
transaction (so a crash leaves either everything or nothing). A seq below `next_seq` is a duplicate (a
window scored twice after a claim) and is dropped. A missing seq is waited for `gap_timeout_s`, then
skipped and counted, so a lost window cannot stall a camera forever.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import redis

from models.calibration import calibrate
from models.card import Calibration
from service.alerts.machine import FrameScore, advance
from service.bus import keys, topics
from service.errors import ModelUnavailableError
from service.messages import AlertEvent, AlertParams, ScoredWindow, ScoreMsg, ScoringState
from service.metrics import (
    ALERTS,
    ALERTS_OPEN,
    CAMERA_SCORE,
    DUPLICATES,
    E2E_LATENCY_SECONDS,
    FRAMES_SCORED,
    SEQ_SKIPPED,
)

log = logging.getLogger(__name__)

# Compare-and-delete: only the holder's token releases the lock (it may have expired and been re-taken).
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end"


@dataclass(frozen=True)
class Plan:
    """What one drain does: windows to publish in order and the bookkeeping around them."""

    ready: list[ScoredWindow]
    next_seq: int
    gap_since: float | None
    skipped: int  # seqs given up on in this drain
    stale: list[int]  # stashed seqs below next_seq (duplicates) to delete


def plan_drain(state: ScoringState, stash: dict[int, ScoredWindow], now: float, gap_timeout_s: float) -> Plan:
    """Pure: take consecutive seqs from `state.next_seq` on; skip a gap once it is older than the timeout."""
    stale = sorted(s for s in stash if s < state.next_seq)
    ready: list[ScoredWindow] = []
    seq, gap_since, skipped = state.next_seq, state.gap_since, 0
    while True:
        if seq in stash:
            ready.append(stash[seq])
            seq, gap_since = seq + 1, None
            continue
        later = [s for s in stash if s > seq]
        if not later:
            gap_since = None
            break
        if gap_since is None:
            gap_since = now
        if now - gap_since < gap_timeout_s:
            break
        skipped += min(later) - seq
        seq, gap_since = min(later), None
    return Plan(ready=ready, next_seq=seq, gap_since=gap_since, skipped=skipped, stale=stale)


class OrderedPublisher:
    """Stash scored windows and publish them per camera in seq order (see the module docstring)."""

    def __init__(
        self,
        client: redis.Redis,
        calibration: Callable[[str], Calibration],
        alert_params: Callable[[str], AlertParams],
        gap_timeout_s: float,
        retention_s: int,
        on_event: Callable[[AlertEvent], None] | None = None,
        lock_wait_s: float = 2.0,
    ) -> None:
        self.r = client
        self.calibration, self.alert_params = calibration, alert_params
        self.gap_timeout_s, self.retention_s = gap_timeout_s, retention_s
        self.on_event, self.lock_wait_s = on_event, lock_wait_s
        self._release = client.register_script(_RELEASE)

    def submit(self, results: list[ScoredWindow]) -> None:
        """Stash results (one transaction), then drain each camera they belong to."""
        pipe = self.r.pipeline(transaction=True)
        for result in results:
            topics.stash_result(pipe, result)
        pipe.execute()
        for camera in sorted({r.camera for r in results}):
            self.drain(camera, self.lock_wait_s)

    def sweep(self) -> None:
        """Drain cameras that still have stashed results (a gap that may have timed out, a lost race)."""
        members: set[bytes] = self.r.smembers(keys.RESULTS_WAITING_SET)  # type: ignore[assignment]
        for member in members:
            self.drain(member.decode(), lock_wait_s=0.0)

    def drain(self, camera: str, lock_wait_s: float) -> int:
        """Publish what is ready for one camera; returns the number of frames published (0 if locked)."""
        token = self._acquire(camera, lock_wait_s)
        if token is None:
            # The holder may have loaded the stash before our result landed and cleared the waiting mark;
            # set it again so the next sweep (of any worker) picks the result up.
            self.r.sadd(keys.RESULTS_WAITING_SET, camera)
            return 0
        try:
            return self._drain_locked(camera)
        finally:
            self._release(keys=[keys.camera_lock_key(camera)], args=[token])

    def _acquire(self, camera: str, wait_s: float) -> str | None:
        token = uuid.uuid4().hex
        deadline = time.monotonic() + wait_s
        while not self.r.set(keys.camera_lock_key(camera), token, nx=True, px=keys.CAMERA_LOCK_TTL_MS):
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.002)
        return token

    def _drain_locked(self, camera: str) -> int:
        state = topics.load_scoring_state(self.r, camera)
        stash = topics.load_results(self.r, camera)
        plan = plan_drain(state, stash, time.time(), self.gap_timeout_s)
        state, scores, events = self._score(camera, state, plan.ready)
        state = state.model_copy(
            update={"next_seq": plan.next_seq, "gap_since": plan.gap_since, "skipped": state.skipped + plan.skipped}
        )
        done = [str(w.seq) for w in plan.ready] + [str(s) for s in plan.stale]
        pipe = self.r.pipeline(transaction=True)
        topics.add_scores(pipe, scores)
        for event in events:
            topics.save_alert_event(pipe, event, self.retention_s)
        if done:
            pipe.hdel(keys.camera_results_key(camera), *done)
        topics.save_scoring_state(pipe, camera, state)
        if len(done) == len(stash):
            pipe.srem(keys.RESULTS_WAITING_SET, camera)
        pipe.execute()
        self._after_publish(camera, plan, scores, events)
        return len(scores)

    def _score(
        self, camera: str, state: ScoringState, ready: list[ScoredWindow]
    ) -> tuple[ScoringState, list[ScoreMsg], list[AlertEvent]]:
        """Calibrate the ready windows in order and run the alert machine over their frames."""
        scores: list[ScoreMsg] = []
        events: list[AlertEvent] = []
        params = self.alert_params(camera) if ready else None
        for window in ready:
            if window.error is not None:
                continue
            try:
                cal = self.calibration(window.model)
            except ModelUnavailableError as e:
                log.error("camera %s: window %d not published: %s", camera, window.seq, e)
                continue
            ema = state.ema if state.ema_model == window.model else None  # a new model restarts smoothing
            values, ema = calibrate(cal, np.asarray(window.raw, dtype=np.float64), ema)
            now = time.time()
            batch = [
                ScoreMsg(
                    camera=camera,
                    frame=window.first_frame + i,
                    seq=window.seq,
                    score=float(v),
                    signals=list(window.raw[i]),
                    model=window.model,
                    pts=window.pts[i],
                    capture_ts=window.capture_ts[i],
                    published_ts=now,
                    source=window.source,
                    job_id=window.job_id,
                )
                for i, v in enumerate(values)
            ]
            assert params is not None  # set above whenever `ready` is non-empty
            track, new_events = advance(
                state.track, params, [FrameScore(s.frame, s.capture_ts, s.score) for s in batch], camera, window.model
            )
            state = state.model_copy(update={"ema": ema, "ema_model": window.model, "track": track})
            scores.extend(batch)
            events.extend(new_events)
        return state, scores, events

    def _after_publish(self, camera: str, plan: Plan, scores: list[ScoreMsg], events: list[AlertEvent]) -> None:
        if plan.skipped:
            SEQ_SKIPPED.labels(camera).inc(plan.skipped)
            log.warning("camera %s: skipped %d missing window(s), now at seq %d", camera, plan.skipped, plan.next_seq)
        if plan.stale:
            DUPLICATES.labels(camera).inc(len(plan.stale))
        if scores:
            FRAMES_SCORED.labels(camera).inc(len(scores))
            CAMERA_SCORE.labels(camera).set(scores[-1].score)
            hist = E2E_LATENCY_SECONDS.labels(camera)
            for s in scores:
                hist.observe(max(0.0, s.published_ts - s.capture_ts))
        for event in events:
            ALERTS.labels(camera, event.kind).inc()
            if event.kind == "opened":
                ALERTS_OPEN.labels(camera).inc()
            elif event.kind == "closed":
                ALERTS_OPEN.labels(camera).dec()
            log.info("camera %s: alert %s %s (peak %.3f)", camera, event.alert.id, event.kind, event.alert.peak_score)
            if self.on_event is not None:
                self.on_event(event)
