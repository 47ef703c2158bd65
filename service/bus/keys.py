"""Every Redis key, stream, channel and group name of vigil, with its TTL or length cap. Nothing else.

Loss semantics of the caps: streams are trimmed with `XADD ... MAXLEN ~ N` (approximate, so trimming is
cheap and whole macro-nodes go at once; a stream may briefly hold somewhat more than N entries). Trimming
removes the *oldest* entries even if no consumer has read them yet. For a `windows_stream` that means that a
backlog larger than `WINDOWS_MAXLEN` loses the oldest unread windows; entries already delivered to a worker
but not acknowledged stay in the group's pending list as ids only, and XAUTOCLAIM reports them as deleted.
The worker then skips those sequence numbers after `gap_timeout_s` and counts them
(`vigil_worker_seq_skipped_total`). Ingesters keep the backlog far below the cap (live cameras drop their
oldest windows locally, files wait), so the cap is a last line of defence for Redis memory, not a policy.
"""

from __future__ import annotations

import zlib

PREFIX = "vigil"

# --- partitions (Redis Cluster) ---------------------------------------------------------------------------
# Every key is either a camera's or global. A camera's keys carry the hash tag of the camera's partition, together
# with its partition's shared keys (the windows stream, the waiting set, the alert outbox), so that every script and
# transaction of a camera touches one cluster slot. Global keys (camera registry, alerts, incidents, health, jobs,
# heartbeats) share the tag `{g}` and live on one shard: they change at the rate of alerts and status updates, not
# of frames. On a standalone Redis the tags change nothing. The count is fixed per deployment
# (`Settings.redis.partitions`, recorded in PARTITIONS_KEY at first start, see bus/client.py) because a camera's
# partition, and so where its keys live, follows from it.
_partitions = 1
GLOBAL = f"{PREFIX}:{{g}}"
PARTITIONS_KEY = f"{GLOBAL}:partitions"  # string: the partition count every process must agree on


def set_partitions(count: int) -> None:
    """Set this process's partition count (bus/client.py does, from `Settings.redis.partitions`)."""
    global _partitions
    if count < 1:
        msg = f"the partition count must be >= 1, got {count}"
        raise ValueError(msg)
    _partitions = count


def partitions() -> int:
    return _partitions


def partition_of(camera: str) -> int:
    """The partition a camera's keys live in: CRC-32 of its id modulo the partition count (stable across processes
    and Python versions, unlike hash())."""
    return zlib.crc32(camera.encode()) % _partitions


def partition_tag(partition: int) -> str:
    return f"{PREFIX}:{{p{partition}}}"


def _cam(camera: str) -> str:
    return f"{partition_tag(partition_of(camera))}:cam:{camera}"


# --- windows: ingester -> workers -------------------------------------------------------------------


def windows_stream(partition: int) -> str:
    """Stream of a partition's windows, one entry per window (fields: v, seq, h, f); see topics/windows.py."""
    return f"{partition_tag(partition)}:windows"


WINDOWS_GROUP = "workers"  # the consumer group every worker reads through (each window to one worker)
# Approximate cap on windows not yet scored (workers delete the ones they acknowledge); at 8 frames of 64x64 gray per
# window about 0.7 GB worst case.
WINDOWS_MAXLEN = 20_000


def camera_seq_key(camera: str) -> str:
    """INCR counter: the last sequence number handed to a window of this camera (first window gets 1)."""
    return f"{_cam(camera)}:seq"


def camera_next_frame_key(camera: str) -> str:
    """String: the frame number after the last scored frame any ingester published for this camera, written
    with each window. An ingester taking the camera over numbers on from here, so frame numbers never restart.
    A file camera publishes a window only if it starts exactly here (compare-and-set), so no frame of a recording
    goes out twice, whoever reads it."""
    return f"{_cam(camera)}:next_frame"


def camera_playback_key(camera: str) -> str:
    """Hash of a file camera's play-through of its recording: source (hash of url and target_fps), origin (the
    frame number of the recording's first frame), stream (its WindowMsg.stream) and, once read to the end, end.
    An ingester taking the camera over resumes the same play-through at `camera_next_frame_key` instead of
    starting the file again; a changed url or fps starts a new one (numbered on from the camera's next frame)."""
    return f"{_cam(camera)}:playback"


# --- per-camera ordering and scoring state (owned by whichever worker holds the camera lock) ----------
def camera_state_key(camera: str) -> str:
    """Hash: next_seq, ema, ema_model, alert (JSON), gap_since; see worker/ordering.py."""
    return f"{_cam(camera)}:state"


def camera_results_key(camera: str) -> str:
    """Hash seq -> scored window waiting for its turn (out-of-order completions)."""
    return f"{_cam(camera)}:results"


def camera_lock_key(camera: str) -> str:
    """SET NX PX lock held while a worker drains a camera's results in order (and while the API changes the
    camera's calibration: feedback, relearning)."""
    return f"{_cam(camera)}:lock"


# --- per-camera calibration (models/calibration/camera.py; worker/ordering.py, api/routes/calibration.py) ----
def camera_reference_key(camera: str) -> str:
    """String: the camera's learned CameraReference JSON (about 10 KB per scene profile), no TTL. Its version is
    also in the scoring state (`calib_version`), so workers re-read it only when it changed."""
    return f"{_cam(camera)}:reference"


def camera_learning_key(camera: str, profile: str) -> str:
    """String: float32 values a learning scene profile has collected so far (APPENDed in the drain transaction);
    deleted once the profile's reference is fitted. At most `calibration.max_learn_frames` * 4 bytes."""
    return f"{_cam(camera)}:learning:{profile}"


def camera_signals_key(camera: str) -> str:
    """Stream: the camera's per-frame records (raw signals, smoothed values, score, flags) in chunks of up to 256
    frames (topics/calibration.py), trimmed to `calibration.replay_retention_s` by id: what replays, feedback and
    range learning read. About 49 bytes a frame for a one-signal model (bench/replay.py measures it)."""
    return f"{_cam(camera)}:signals"


def camera_signals_open_key(camera: str) -> str:
    """Hash (s, m, t0, d): the archive chunk still being filled; moved into `camera_signals_key` once full."""
    return f"{_cam(camera)}:signals:open"


CAMERA_LOCK_TTL_MS = 10_000  # a worker that dies holding the lock blocks the camera at most this long


def results_waiting_set(partition: int) -> str:
    """Set of a partition's cameras with stashed results; swept periodically."""
    return f"{partition_tag(partition)}:cams:waiting"


def alert_outbox(partition: int) -> str:
    """Stream of a partition's alert and incident changes, written in the same transaction as the camera's scoring
    state and moved into the global alert store by topics/outbox.py (so a cluster needs no cross-slot transaction)."""
    return f"{partition_tag(partition)}:outbox"


OUTBOX_APPLIED_HASH = f"{GLOBAL}:outbox:applied"  # partition -> id of the last outbox entry applied (once only)


def snippet_feature_key(camera: str, stream: str, model_version: str, frame: int) -> str:
    """String: the snippet feature ending at `frame` of a camera's stream (raw float32 bytes), as computed by one
    resolved model version (`name@vN`, so versions never mix), with TTL `Settings.worker.history_ttl_s`. Later
    windows read it as history (`SnippetHistoryMethod` models only; see worker/history.py). `stream` is the
    window's `WindowMsg.stream`: a new sampler (another ingester took the camera over, the spec changed) starts
    a new history rather than reaching across the gap in the video."""
    return f"{_cam(camera)}:snippet:{stream}:{model_version}:{frame}"


# --- scores: workers -> API / WebSocket ------------------------------------------------------------------


def score_stream_key(camera: str) -> str:
    """Stream, one entry per scored frame (field d = ScoreMsg JSON); read with XRANGE/XREAD."""
    return f"{partition_tag(partition_of(camera))}:scores:{camera}"


def latest_score_key(camera: str) -> str:
    """String: the newest ScoreMsg JSON of a camera (no TTL; the message carries its own timestamp)."""
    return f"{partition_tag(partition_of(camera))}:scores:{camera}:latest"


SCORES_MAXLEN = 100_000  # per camera, approximate: about an hour at 25 fps

# --- alerts ------------------------------------------------------------------------------------------------
ALERT_EVENTS_STREAM = f"{GLOBAL}:alerts:events"  # opened/updated/closed events (field d = AlertEvent JSON)
ALERT_EVENTS_MAXLEN = 100_000
ALERT_REVISION_KEY = f"{GLOBAL}:alerts:rev"  # INCR counter; every alert change gets the next revision
ALERTS_INDEX = f"{GLOBAL}:alerts:index"  # zset alert id -> revision of its latest change (cursor paging)


def alert_key(alert_id: str) -> str:
    """String: the Alert JSON, expiring after `Settings.alerts.retention_s` from its last change."""
    return f"{GLOBAL}:alert:{alert_id}"


def alert_clip_key(alert_id: str) -> str:
    """String: the AlertClip JSON of the alert's clip (service/clips/), with the alert's retention."""
    return f"{GLOBAL}:alert:{alert_id}:clip"


def camera_alerts_index(camera: str) -> str:
    """Zset like ALERTS_INDEX for one camera."""
    return f"{GLOBAL}:alerts:index:{camera}"


def alerts_state_index(state: str, camera: str | None = None) -> str:
    """Zset like ALERTS_INDEX of the alerts now in `state` (open, closed, unacknowledged, acknowledged, resolved), of
    every camera or one. Each alert change moves it between them in the same script (topics/alerts.py)."""
    return f"{GLOBAL}:alerts:state:{state}" if camera is None else f"{GLOBAL}:alerts:state:{state}:{camera}"


# --- incidents (service/alerts/triage.py): consecutive alerts of a camera ---------------------------------------
INCIDENT_REVISION_KEY = f"{GLOBAL}:incidents:rev"  # INCR counter; every incident change gets the next revision
INCIDENTS_INDEX = f"{GLOBAL}:incidents:index"  # zset incident id -> revision of its latest change (cursor paging)


def incident_key(incident_id: str) -> str:
    """String: the Incident JSON, expiring after `Settings.alerts.retention_s` from its last change."""
    return f"{GLOBAL}:incident:{incident_id}"


def camera_incidents_index(camera: str) -> str:
    """Zset like INCIDENTS_INDEX for one camera."""
    return f"{GLOBAL}:incidents:index:{camera}"


# --- MQTT bridge (service/mqtt/): one active `vigil mqtt` publishes what the others write -----------------------
MQTT_LEASE_KEY = f"{GLOBAL}:mqtt:lease"  # string: the bridge holding it publishes (SET NX PX, renewed)
MQTT_LEASE_TTL_MS = 10_000  # a dead bridge's standby takes over after this long


def mqtt_cursor_key(feed: str) -> str:
    """String: the id in an event stream (feed "alerts": ALERT_EVENTS_STREAM) up to which the broker acknowledged every
    event (PUBACK). A bridge (re)starting publishes from here, so no event is lost across restarts of the bridge or the
    broker (some may come twice, as QoS 1 allows)."""
    return f"{GLOBAL}:mqtt:cursor:{feed}"


# --- cameras: API -> ingesters ------------------------------------------------------------------------------
CAMERAS_HASH = f"{GLOBAL}:cameras"  # hash camera id -> CameraConfig JSON (holds the URL with credentials)
CONTROL_CHANNEL = f"{GLOBAL}:control"  # pub/sub: ControlMsg JSON when a camera is added, changed or removed
CAMERA_STATUS_HASH = f"{GLOBAL}:camera_status"  # hash camera id -> CameraStatus JSON (ingester writes)


# Set once (SET NX) to a random id and never changed: when it is gone, Redis lost its data (restarted without
# persistence, or flushed). Ingesters then restore the camera registry from their copy and say what was lost.
DATASET_EPOCH = f"{GLOBAL}:epoch"


def camera_lease_key(camera: str) -> str:
    """String holding the owning ingester id, with TTL `Settings.ingest.lease_ttl_s` (SET NX PX, renewed)."""
    return f"{_cam(camera)}:lease"


# --- camera health: ingesters -> API / WebSocket / webhooks (models/health, service/ingest/health.py) -----------
CAMERA_HEALTH_HASH = f"{GLOBAL}:camera_health"  # hash camera id -> CameraHealth JSON (ok, or raised conditions)
HEALTH_EVENTS_STREAM = f"{GLOBAL}:health:events"  # raised/cleared events (field d = HealthEvent JSON)
HEALTH_EVENTS_MAXLEN = 100_000


def camera_health_memory_key(camera: str) -> str:
    """String: the camera's HealthMemory JSON (its colour/IR mode and reference views, about 3 KB per mode), no TTL:
    an ingester taking the camera over compares with the same reference views."""
    return f"{_cam(camera)}:health_memory"


# --- health -------------------------------------------------------------------------------------------------


def heartbeat_key(component: str, process_id: str) -> str:
    """String: Heartbeat JSON with TTL (worker: `Settings.worker.heartbeat_ttl_s`); absent = dead."""
    return f"{GLOBAL}:heartbeat:{component}:{process_id}"


def heartbeat_pattern(component: str) -> str:
    """SCAN MATCH pattern for every live heartbeat of a component ("worker", "ingest", "api")."""
    return f"{GLOBAL}:heartbeat:{component}:*"


# --- batch re-scoring jobs: API -> ingesters -> workers -------------------------------------------------
JOBS_INDEX = f"{GLOBAL}:jobs"  # zset job id -> creation unix time (listing, newest first)
JOBS_ACTIVE = f"{GLOBAL}:jobs:active"  # set of job ids queued or running: what ingesters look at each tick


def job_key(job_id: str) -> str:
    """String: the JobRecord JSON (no TTL: a job's record lives as long as its folder under `jobs.dir`)."""
    return f"{GLOBAL}:job:{job_id}"


def job_progress_key(job_id: str) -> str:
    """Hash: next_frame (first frame not yet published), last_seq, and once read to the end frames_total,
    fps and head_pts (JSON pts of the unscored warm-up frames). Lets a new ingester resume without duplicates."""
    return f"{_cam(job_stream(job_id))}:job_progress"  # with the job stream's keys: one script writes both


# Camera ids starting with this are reserved for jobs (the API refuses them for cameras), so a camera can never
# share a job's keys. A prefix rather than a separate key space: jobs reuse the cameras' ordering, scores and
# alerts unchanged, and a camera id can never contain the ':' a separate space would need.
JOB_STREAM_PREFIX = "job-"


def job_stream(job_id: str) -> str:
    """The camera id a job's windows and scores travel under, so ordering, EMA and alerts apply unchanged."""
    return f"{JOB_STREAM_PREFIX}{job_id}"


# --- alert thumbnails: worker -> API (live page) ------------------------------------------------------------
# A scored camera frame that could become an alert's peak leaves a small JPEG for this long, so whichever worker
# publishes the alert event can copy its picture; longer than the default gap timeout (60 s) so a frame that
# waited for a missing window still has it. Memory: about 1-6 KB per frame, only for frames at alert level.
FRAME_THUMB_TTL_S = 120


def frame_thumb_key(camera: str, frame: int) -> str:
    """String: JPEG of one scored frame (model input resolution, at most 160 px), TTL `FRAME_THUMB_TTL_S`."""
    return f"{_cam(camera)}:thumb:{frame}"


def alert_thumb_key(alert_id: str) -> str:
    """String: JPEG of the alert's peak frame, with the alert's retention (`Settings.alerts.retention_s`)."""
    return f"{GLOBAL}:alert:{alert_id}:thumb"


# --- heatmaps: worker -> API (live page) and alert clips (service/heatmaps) --------------------------------------
# Every live frame scored by a model with a localisation map leaves its coarse map (models/heatmap.py: 32 cells on
# the longer side, uint8 + a scale and the frame's pts, about 1 KB) for this long, so the alert events of any worker
# can copy the maps of their frames. Memory: about 1 KB x frames per second x FRAME_MAP_TTL_S per camera (1.2 MB at
# 10 fps). Alerts keep at most ALERT_MAPS_MAX of them (evenly spaced over a longer alert, the peak's always).
FRAME_MAP_TTL_S = 120
ALERT_MAPS_MAX = 600


def frame_map_key(camera: str, frame: int) -> str:
    """String: the coarse localisation map of one scored frame (service/heatmaps/store.py), TTL `FRAME_MAP_TTL_S`."""
    return f"{_cam(camera)}:heat:{frame}"


def alert_maps_key(alert_id: str) -> str:
    """Hash: frame number -> coarse map of the alert's frames (at most `ALERT_MAPS_MAX`), with the alert's retention."""
    return f"{GLOBAL}:alert:{alert_id}:heat"
