"""Per-camera order restored from window sequence numbers, then calibration, scores and alerts, exactly once.

Workers keep no per-camera state. A scored window is stashed in the camera's results hash; then, under a
short per-camera lock, whichever worker gets it drains the stash in seq order: calibrate against the camera's
own reference (models/calibration/camera.py: smoothing, scene profile, learning, drift), publish per-frame
scores, advance the alert machine, archive the frames' signals for replays, and save the new state (and a newly
learned reference), all in one MULTI transaction (so a crash leaves either everything or nothing). A seq below
`next_seq` is a duplicate (a window scored twice after a claim) and is dropped. A missing seq is waited for
`gap_timeout_s`, then skipped and counted, so a lost window cannot stall a camera forever.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import redis

from models.calibration.camera import CalibrationParams, CameraCalibrator, CameraReference, card_reference
from models.calibration.reference import ProfileReference
from models.card import Calibration
from models.health.monitor import calibration_inputs
from models.health.params import names_of
from service.alerts.machine import ScoreRun, advance
from service.alerts.schema import Incident
from service.alerts.triage import triage
from service.bus import keys, topics
from service.bus.client import REDIS_ERRORS
from service.bus.topics.calibration import RedisLearnBuffer, encode_records, pack_flags
from service.errors import ModelUnavailableError
from service.messages import AlertEvent, AlertParams, ScoreCalibration, ScoredWindow, ScoreMsg, ScoringState
from service.metrics import (
    ALERT_NOTIFICATIONS,
    ALERTS,
    ALERTS_OPEN,
    CALIBRATION_LEARNED,
    CALIBRATION_VERSION,
    CAMERA_SCORE,
    DUPLICATES,
    E2E_LATENCY_SECONDS,
    FRAMES_SCORED,
    SEQ_SKIPPED,
)
from service.worker.thumbnails import peak_candidates

log = logging.getLogger(__name__)

STATE_SNAPSHOT_S = 5.0  # how old a camera's state may be for choosing thumbnail candidates (peak_candidates)

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


@dataclass
class Publication:
    """Everything one drain writes in its transaction, besides the bookkeeping of `Plan`."""

    state: ScoringState
    buffer: RedisLearnBuffer
    scores: list[ScoreMsg] = field(default_factory=list)
    events: list[AlertEvent] = field(default_factory=list)
    archive: list[tuple[str, int, bytes, float]] = field(default_factory=list)  # model, signals, records, first ts
    reference: CameraReference | None = None  # a newly learned reference to store
    learned: list[str] = field(default_factory=list)  # profiles whose learning finished
    incidents: dict[str, Incident] = field(default_factory=dict)  # incidents the events changed (service/alerts/triage)


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
        calib_params: CalibrationParams | None = None,
        replay_retention_s: int = 24 * 3600,
    ) -> None:
        self.r = client
        self.calibration, self.alert_params = calibration, alert_params
        self.gap_timeout_s, self.retention_s = gap_timeout_s, retention_s
        self.on_event, self.lock_wait_s = on_event, lock_wait_s
        self.calib_params = calib_params or CalibrationParams()
        self.replay_retention_s = replay_retention_s
        self._release = client.register_script(_RELEASE)
        self._references: dict[str, CameraReference] = {}  # camera -> its stored reference, as last read
        self._fallbacks: dict[str, ProfileReference] = {}  # model -> the card's held-out frames as a reference
        self._states: dict[str, tuple[ScoringState, float]] = {}  # camera -> its state as last published, and when

    def submit(self, results: list[ScoredWindow]) -> None:
        """Stash results (one transaction per partition: a cluster cannot span them), then drain each camera they
        belong to."""
        by_partition: dict[int, list[ScoredWindow]] = {}
        for result in results:
            by_partition.setdefault(keys.partition_of(result.camera), []).append(result)
        for batch in by_partition.values():
            pipe = self.r.pipeline(transaction=True)
            for result in batch:
                topics.stash_result(pipe, result)
            pipe.execute()
        for camera in sorted({r.camera for r in results}):
            self.drain(camera, self.lock_wait_s)

    def sweep(self) -> None:
        """Drain cameras that still have stashed results (a gap that may have timed out, a lost race), and relay the
        alert outboxes (changes whose relay failed after their transaction, topics/outbox.py)."""
        for partition in range(keys.partitions()):
            members: set[bytes] = self.r.smembers(keys.results_waiting_set(partition))  # type: ignore[assignment]
            for member in members:
                self.drain(member.decode(), lock_wait_s=0.0)
        topics.relay_all(self.r)

    def drain(self, camera: str, lock_wait_s: float) -> int:
        """Publish what is ready for one camera; returns the number of frames published (0 if locked)."""
        token = self._acquire(camera, lock_wait_s)
        if token is None:
            # The holder may have loaded the stash before our result landed and cleared the waiting mark;
            # set it again so the next sweep (of any worker) picks the result up.
            self.r.sadd(keys.results_waiting_set(keys.partition_of(camera)), camera)
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
        pub = self._score(camera, state, plan.ready)
        state = pub.state.model_copy(
            update={"next_seq": plan.next_seq, "gap_since": plan.gap_since, "skipped": state.skipped + plan.skipped}
        )
        done = [str(w.seq) for w in plan.ready] + [str(s) for s in plan.stale]
        pipe = self.r.pipeline(transaction=True)
        topics.add_scores(pipe, pub.scores)
        for event in pub.events:
            topics.queue_alert_event(pipe, event, self.retention_s)
        for incident in pub.incidents.values():
            topics.queue_incident(pipe, incident, self.retention_s)
        for model, num_signals, records, first_ts in pub.archive:
            topics.append_signals(pipe, camera, model, num_signals, records, first_ts, self.replay_retention_s)
        pub.buffer.apply(pipe)
        if pub.reference is not None:
            topics.save_reference(pipe, camera, pub.reference)
        if done:
            pipe.hdel(keys.camera_results_key(camera), *done)
        topics.save_scoring_state(pipe, camera, state)
        if len(done) == len(stash):
            pipe.srem(keys.results_waiting_set(keys.partition_of(camera)), camera)
        pipe.execute()
        if pub.events or pub.incidents:
            self._relay(camera)
        if pub.reference is not None:
            self._references[camera] = pub.reference
        self._states[camera] = (state, time.monotonic())
        if pub.scores:
            CALIBRATION_VERSION.labels(camera).set(state.calib_version)
        for profile in pub.learned:
            CALIBRATION_LEARNED.labels(camera, profile).inc()
            log.info("camera %s: learned its %s reference (version %d)", camera, profile, state.calib_version)
        self._after_publish(camera, plan, pub.scores, pub.events)
        return len(pub.scores)

    def _relay(self, camera: str) -> None:
        """Store the alert changes just committed (topics/outbox.py); when the global store is away, the periodic
        sweep stores them later: the scoring transaction has committed and must not be repeated."""
        try:
            topics.relay_outbox(self.r, keys.partition_of(camera))
        except REDIS_ERRORS as e:
            log.warning("camera %s: alert changes wait in the outbox until the next sweep: %s", camera, e)

    def _score(self, camera: str, state: ScoringState, ready: list[ScoredWindow]) -> Publication:
        """Calibrate the ready windows in order, run the alert machine over their frames, archive their signals."""
        pub = Publication(state=state, buffer=RedisLearnBuffer(self.r, camera))
        params = self.alert_params(camera) if ready else None
        calibrator: CameraCalibrator | None = None
        for window in ready:
            if window.error is not None:
                continue
            try:
                card = self.calibration(window.model)
            except ModelUnavailableError as e:
                log.error("camera %s: window %d not published: %s", camera, window.seq, e)
                continue
            assert params is not None  # set above whenever `ready` is non-empty
            if calibrator is None or calibrator.model != window.model:  # a new model starts a new calibration
                calibrator = self._calibrator(camera, window.model, card, pub)
            raw = np.asarray(window.raw, dtype=np.float64)
            times = np.array([p if p is not None else c for p, c in zip(window.pts, window.capture_ts, strict=True)])
            chroma, usable = calibration_inputs(window.health, window.chroma)  # flagged frames never alert
            out = calibrator.step(raw, times, params.threshold - params.hysteresis, chroma=chroma, usable=usable)
            now = time.time()
            batch = [
                ScoreMsg(
                    camera=camera,
                    frame=window.first_frame + i,
                    seq=window.seq,
                    score=float(out.scores[i]),
                    signals=list(window.raw[i]),
                    model=window.model,
                    pts=window.pts[i],
                    capture_ts=window.capture_ts[i],
                    published_ts=now,
                    source=window.source,
                    job_id=window.job_id,
                    calibration=ScoreCalibration(version=out.version, profile=out.profiles[i], state=out.states[i]),
                    alertable=bool(out.alertable[i]),
                    health=names_of(window.health[i]) if window.health else [],
                )
                for i in range(len(raw))
            ]
            frames = np.arange(window.first_frame, window.first_frame + len(raw), dtype=np.int64)
            ts = np.asarray(window.capture_ts, dtype=np.float64)
            pts = np.array([np.nan if p is None else p for p in window.pts], dtype=np.float64)
            run = ScoreRun.held(frames, ts, out.scores, out.alertable, pts)
            track, events = advance(pub.state.track, params, run, camera, window.model)
            # Incident and notification decision of each alert that opened (webhooks and MQTT read the latter).
            triaged = triage(pub.state.triage, track, events, params, now)
            track, events = triaged.track, triaged.events
            pub.incidents.update((i.id, i) for i in triaged.incidents)
            pub.state = pub.state.model_copy(
                update={
                    "track": track,
                    "calib": calibrator.state,
                    "calib_version": calibrator.version,
                    "triage": triaged.state,
                }
            )
            records = encode_records(
                frames,
                ts,
                out.scores,
                out.values,
                out.levels,
                out.drifts,
                pack_flags(out.alertable, out.states, out.profiles),
                raw,
            )
            pub.archive.append((window.model, raw.shape[1], records, float(ts[0])))
            if out.fitted:
                pub.reference = calibrator.reference
                pub.learned.extend(out.fitted)
            pub.scores.extend(batch)
            pub.events.extend(events)
        return pub

    def _calibrator(self, camera: str, model: str, card: Calibration, pub: Publication) -> CameraCalibrator:
        """The camera's calibrator for `model`, from its scoring state and stored reference (read again only when the
        state says another version is current)."""
        return CameraCalibrator(
            card,
            model,
            self.calib_params,
            state=pub.state.calib,
            reference=pub.reference or self.reference(camera, pub.state.calib_version),
            buffer=pub.buffer,
            fallback=self.fallback(model, card),
        )

    def reference(self, camera: str, version: int) -> CameraReference | None:
        """The camera's stored reference if `version` is its current version (0 = none learned)."""
        if version == 0:
            return None
        cached = self._references.get(camera)
        if cached is None or cached.version != version:
            cached = topics.load_reference(self.r, camera)
            if cached is None:
                log.warning("camera %s: reference version %d is missing from Redis; it learns again", camera, version)
                return None
            self._references[camera] = cached
        return cached

    def peak_candidates(self, camera: str, model: str, raw: np.ndarray, threshold: float) -> np.ndarray:
        """Which frames of a window could be an alert's peak (thumbnails.peak_candidates), with the camera's
        calibration as this worker last published it (read from Redis when that is older than STATE_SNAPSHOT_S: a
        camera drained by other workers; the drift moves far less than the candidates' margin in that time)."""
        card = self.calibration(model)
        snapshot = self._states.get(camera)
        if snapshot is None or time.monotonic() - snapshot[1] > STATE_SNAPSHOT_S:
            snapshot = self._states[camera] = (topics.load_scoring_state(self.r, camera), time.monotonic())
        state = snapshot[0]
        stored = self.reference(camera, state.calib_version) if state.calib.model == model else None
        profile = state.calib.profile or "colour"
        ref = stored.profiles.get(profile) if stored is not None else None
        drift = state.calib.drift.get(profile, 0.0) if ref is not None else 0.0
        return peak_candidates(card, ref or self.fallback(model, card), drift, raw, threshold)

    def fallback(self, model: str, card: Calibration) -> ProfileReference:
        """The model card's held-out normal frames as a reference (versions never change, so it is cached)."""
        ref = self._fallbacks.get(model)
        if ref is None:
            ref = self._fallbacks[model] = card_reference(card, self.calib_params)
        return ref

    def _after_publish(self, camera: str, plan: Plan, scores: list[ScoreMsg], events: list[AlertEvent]) -> None:
        if plan.skipped:
            SEQ_SKIPPED.labels(camera).inc(plan.skipped)
            log.warning("camera %s: skipped %d missing window(s), now at seq %d", camera, plan.skipped, plan.next_seq)
        if plan.stale:
            DUPLICATES.labels(camera).inc(len(plan.stale))
        if scores:
            FRAMES_SCORED.labels(camera).inc(len(scores))
            CAMERA_SCORE.labels(camera).set(scores[-1].score)
            ALERTS_OPEN.labels(camera)  # the camera's series exists (at 0) before its first alert: its panel shows it
            hist = E2E_LATENCY_SECONDS.labels(camera)
            for s in scores:
                hist.observe(max(0.0, s.published_ts - s.capture_ts))
        for event in events:
            ALERTS.labels(camera, event.kind).inc()
            if event.kind == "opened":
                ALERTS_OPEN.labels(camera).inc()
                if event.alert.notification is not None:
                    ALERT_NOTIFICATIONS.labels(camera, event.alert.notification.decision).inc()
            elif event.kind == "closed":
                ALERTS_OPEN.labels(camera).dec()
            log.info("camera %s: alert %s %s (peak %.3f)", camera, event.alert.id, event.kind, event.alert.peak_score)
            if self.on_event is not None:
                self.on_event(event)
