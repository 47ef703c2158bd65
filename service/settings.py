"""All service configuration: one pydantic-settings tree read from `VIGIL_*` environment variables.

Nested sections use a double underscore: `VIGIL_REDIS__URL`, `VIGIL_WORKER__MAX_BATCH`. Nothing else
in `service/` reads `os.environ`; `get_settings()` is read once and passed down.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.calibration.camera import CalibrationParams
from models.health.params import HealthParams
from service.alerts.schema import (
    DEFAULT_INCIDENT_GAP_S,
    DEFAULT_NOTIFY_MAX,
    DEFAULT_NOTIFY_PERIOD_S,
    MuteWindow,
    check_timezone,
)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (writes without an admin key are allowed there in dev)."""
    return host == "localhost" or host.startswith("127.") or host == "::1"


# Errors name the setting and what is wrong but never echo the value: the Redis url, API keys and webhook url
# may hold secrets, and `vigil api`/`vigil worker` print these errors.
class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class RedisSettings(_Section):
    url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")  # secret: it may carry a password
    connect_timeout_s: float = Field(default=5.0, gt=0)
    startup_wait_s: float = Field(default=30.0, ge=0)  # bounded wait for Redis at process start
    # Redis Cluster: `url` names any one node (the client finds the others); every process checks the server's mode
    # against this at start (bus/client.py) and says which setting to change when they differ.
    cluster: bool = False
    # How many partitions the cameras are spread over (keys.py): on a cluster, several per shard so workers and
    # shards share the load evenly (OPERATIONS.md, Scaling); fixed once data exists, every process must agree.
    partitions: int = Field(default=1, ge=1, le=4096)

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            msg = "redis url must start with redis://, rediss:// or unix://, e.g. redis://127.0.0.1:6379/0"
            raise ValueError(msg)
        return v


class StoreSettings(_Section):
    root: Path = Path("registry")  # model registry directory (models/store.py layout)


class IngestSettings(_Section):
    window_frames: int = Field(default=8, ge=1, le=256)  # W new frames per window on the bus
    lease_ttl_s: float = Field(default=10.0, gt=0)  # camera ownership lease; renewed at ttl/3
    stall_timeout_s: float = Field(default=10.0, gt=0)  # no frame for this long -> reconnect
    reconnect_initial_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    live_queue_windows: int = Field(default=32, ge=1)  # per-camera backlog before live cameras drop oldest
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    open_timeout_s: float = Field(default=10.0, gt=0)  # connecting to a source (RTSP/HTTP handshake) may take this long
    file_queue_windows: int = Field(default=8, ge=1)  # per-camera backlog at which file cameras wait
    heartbeat_ttl_s: float = Field(default=10.0, gt=0)  # ingester heartbeat key; refreshed every ttl/3
    status_interval_s: float = Field(default=1.0, gt=0)  # how often a camera's status (fps, counters) is written
    metrics_port: int = Field(default=9101, ge=0, le=65535)  # Prometheus /metrics of the ingester; 0 = off
    # Address /metrics listens on (it lists camera ids): loopback unless the operator opens it, e.g. 0.0.0.0 in a
    # container that Prometheus scrapes from another one.
    metrics_host: str = "127.0.0.1"


class WorkerSettings(_Section):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_batch: int = Field(default=8, ge=1, le=1024)  # windows per forward pass
    max_wait_ms: float = Field(default=20.0, ge=0)  # how long to wait to fill a batch
    # Threads of a CPU forward pass; 0 = torch's default, one per core of the host. Under a container's CPU limit
    # torch still counts the host's cores, and threads that outnumber the cores the worker gets wait on each other
    # at every layer: set it to the cores the worker may use (docs/OPERATIONS.md, *Scaling*).
    cpu_threads: int = Field(default=0, ge=0, le=256)
    # A CPU worker keeps the memory its forward passes free, instead of glibc handing it back to the kernel and
    # page-faulting it in again on the next batch (models/cpu_memory.py): FFP `small` scores 2.3x more frames per
    # CPU-second, and the worker's resident memory stays at its peak (about 15% more). Off: glibc's default policy.
    keep_freed_memory: bool = True
    # A worker whose heartbeat is this old is dead: the others take over its windows (its cameras wait this long).
    heartbeat_ttl_s: float = Field(default=5.0, gt=0)
    claim_idle_ms: int = Field(default=30_000, ge=1000)  # windows pending this long on a live (stuck) worker move
    metrics_port: int = Field(default=9101, ge=0, le=65535)  # this worker's /metrics; 0 = off
    metrics_host: str = "127.0.0.1"  # address of this worker's /metrics: loopback unless set (0.0.0.0 in containers)
    gap_timeout_s: float = Field(default=60.0, gt=0)  # a missing window seq is skipped (and counted) after this
    alias_refresh_s: float = Field(default=5.0, gt=0)  # how often model aliases are re-resolved
    # Seconds a snippet feature of a history model (VadCLIP) stays in Redis as history for its camera's later
    # windows. It must outlast the span a frame reads back, (history_snippets - 1) * 16 frames, plus the time a
    # window may wait in the queue (or for a claim after claim_idle_ms); an expired element shortens the history.
    history_ttl_s: int = Field(default=600, gt=0)
    # Keep each live frame's coarse localisation map (models with one: ffp, dast, f2lm, flowmem) for alert heatmaps
    # (GET /alerts/{id}/heatmap.jpg, clip overlays): about 1 KB per frame for 120 s in Redis, from the scoring forward
    # pass (cost in docs/RESULTS.md). Off: no maps are computed or stored, and alerts have no heatmap.
    heatmaps: bool = True

    @model_validator(mode="after")
    def _gap_after_claim(self) -> WorkerSettings:
        # A window of a dead worker is claimed after claim_idle_ms; skipping its seq earlier would lose it.
        if self.gap_timeout_s * 1000 <= self.claim_idle_ms:
            msg = (
                f"worker.gap_timeout_s ({self.gap_timeout_s} s) must exceed worker.claim_idle_ms "
                f"({self.claim_idle_ms} ms), or windows of a dead worker are skipped before they are claimed"
            )
            raise ValueError(msg)
        return self


WebhookTopic = Literal["alerts", "health"]


class AlertSettings(_Section):
    # Scores are 0.5 - 0.1 log10(rises per hour of the camera's normal footage to that level): a threshold of 0.5
    # alerts on levels that normal footage reaches about once an hour; the hysteresis of 0.1 keeps an alert open
    # down to levels reached 10x as often. Chosen on held-out normal footage (docs/RESULTS.md, "Alert defaults").
    threshold: float = Field(default=0.5, gt=0, lt=1)
    hysteresis: float = Field(default=0.1, ge=0, lt=1)  # alert ends below threshold - hysteresis
    min_duration_frames: int = Field(default=5, ge=1, le=1_000_000)  # bound: about 11 hours at 25 fps
    cooldown_frames: int = Field(default=25, ge=0, le=1_000_000)
    retention_s: int = Field(default=7 * 24 * 3600, ge=60)
    webhook_url: str | None = None
    # What is POSTed to webhook_url: alert events (by the workers) and/or camera health events (by the ingesters)
    webhook_events: list[WebhookTopic] = ["alerts"]
    # Triage (service/alerts/triage.py), each overridable per camera like the four above. An alert starting within
    # incident_gap_s of the end of the camera's previous one joins its incident (GET /incidents).
    incident_gap_s: float = Field(default=DEFAULT_INCIDENT_GAP_S, ge=0, le=7 * 24 * 3600)
    # Flood control of webhooks and MQTT: at most notify_max alerts of a camera are notified per notify_period_s; the
    # next one is notified as a summary (notifications paused until the period ends), the rest only recorded.
    notify_max: int = Field(default=DEFAULT_NOTIFY_MAX, ge=1, le=10_000)
    notify_period_s: float = Field(default=DEFAULT_NOTIFY_PERIOD_S, gt=0, le=7 * 24 * 3600)
    # Daily windows (JSON list of {"start": "22:00", "end": "06:00", "days": ["mon", ...]}) in which alerts are
    # recorded but not notified, in `timezone` (an IANA name).
    mute: list[MuteWindow] = Field(default_factory=list, max_length=16)
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_timezone(v)


class CalibrationSettings(CalibrationParams):
    """How each camera learns its own normal reference (models/calibration/camera.py), and how long its per-frame
    signals are kept for replays, feedback and relearning from a time range."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # About 49 bytes per frame for a one-signal model (bench/replay.py): 24 h at 10 fps 40 MiB, at 25 fps 100 MiB.
    replay_retention_s: int = Field(default=24 * 3600, ge=60, le=30 * 24 * 3600)


class HealthSettings(HealthParams):
    """Camera health checks (models/health): every check's defaults, `VIGIL_HEALTH__<CHECK>__<FIELD>`; a camera
    overrides any of them (`health` in the camera API)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    viewer_keys: list[SecretStr] = Field(default_factory=list)  # may read; empty = reads are open
    operator_keys: list[SecretStr] = Field(default_factory=list)  # may also give alert feedback and recalibrate
    admin_keys: list[SecretStr] = Field(default_factory=list)  # may change state
    # Request bodies beyond this get 413 before anything parses them (job uploads have jobs.max_upload_bytes).
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    # The API's address as webhook receivers reach it (https://vigil.example.com): webhook payloads link an alert's
    # clip, heatmap and thumbnail under it; without it the links are paths (/alerts/<id>/clip.mp4).
    public_url: str | None = Field(default=None, max_length=512, pattern=r"^https?://[^\s?#]+$")


class JobSettings(_Section):
    dir: Path = Path("jobs")  # one folder per batch job: the upload, result.csv/json, timeline.png, alerts.json
    max_upload_bytes: int = Field(default=2 * 1024**3, ge=1)  # larger uploads get 413 and leave nothing behind
    queue_windows: int = Field(default=32, ge=1)  # a job's windows waiting for workers before its reader waits
    max_running: int = Field(default=2, ge=1)  # jobs one ingester reads at the same time
    # Scores are collected from the job's score stream, which keeps about keys.SCORES_MAXLEN entries.
    max_frames: int = Field(default=100_000, ge=1, le=100_000)
    # Ended jobs (done, failed, cancelled) are removed this long after they ended, files included; 0 = keep all.
    retention_s: int = Field(default=30 * 24 * 3600, ge=0)


ClipPreset = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"]


class ClipSettings(_Section):
    """Alert clips (service/clips/): an H.264 MP4 of every alert with pre- and post-roll, written by the ingesters into
    `dir`, which the API and every ingester must see (a shared volume: an absolute path)."""

    enabled: bool = True
    dir: Path = Path("clips")  # one folder per camera: <dir>/<camera>/<alert id>.mp4
    pre_roll_s: float = Field(default=5.0, ge=0, le=60)  # seconds before the alert's first frame
    post_roll_s: float = Field(default=5.0, ge=0, le=60)  # seconds after its last frame
    width: int = Field(default=640, ge=64, le=3840)  # px; narrower sources keep their width; the height keeps aspect
    crf: int = Field(default=26, ge=0, le=51)  # x264 quality (lower = better, larger)
    preset: ClipPreset = "veryfast"  # x264 speed/size trade-off
    # While an alert is open its clip is written at once (pre-roll up to now) and rewritten this often; the final
    # clip replaces it once the post-roll after its end is in.
    partial_interval_s: float = Field(default=30.0, ge=1, le=3600)
    # Live cameras: how late an alert's opening may reach the camera's ingester (the alert's min_duration_frames plus
    # the queue and scoring delay) and still find its pre-roll in the camera's packet buffer.
    max_delay_s: float = Field(default=10.0, ge=0, le=120)
    # Hard cap on one camera's packet buffer (the source's compressed video for pre_roll_s + max_delay_s + one key
    # frame interval): ~2.5 MiB for a 1 Mbit/s stream, ~9 MiB at 4 Mbit/s; beyond it the oldest seconds go.
    buffer_bytes: int = Field(default=32 * 1024**2, ge=1024**2, le=1024**3)
    # Live cameras: the source packets one open alert may hold (about 4 min at 2 Mbit/s); the clip ends there.
    recording_bytes: int = Field(default=64 * 1024**2, ge=1024**2, le=4 * 1024**3)
    max_clip_s: float = Field(
        default=600.0, gt=0, le=24 * 3600
    )  # a clip stops growing after this (an alert open for hours)
    retention_s: int = Field(default=7 * 24 * 3600, ge=60)  # clips older than this are deleted
    max_bytes: int = Field(default=20 * 1024**3, ge=1024**2)  # above it the oldest clips are deleted first
    sweep_interval_s: float = Field(default=60.0, gt=0, le=3600)  # how often retention and the cap are applied
    # Draw the model's heatmaps over the clip's frames (methods with a localisation map: ffp, dast, f2lm, flowmem).
    heatmap_overlay: bool = False


class MqttSettings(_Section):
    """The MQTT bridge (`vigil mqtt`, service/mqtt/): alert events, camera state and scores to a broker, with Home
    Assistant discovery. Off by default; `vigil up` starts it when enabled."""

    enabled: bool = False
    host: str = Field(default="127.0.0.1", min_length=1, max_length=253)
    port: int = Field(default=1883, ge=1, le=65535)  # 8883 is the usual TLS port
    username: str | None = Field(default=None, max_length=256)
    password: SecretStr | None = None  # secret: never logged
    tls: bool = False  # TLS to the broker, verified against `ca_file` (or the system's CAs)
    ca_file: Path | None = None
    cert_file: Path | None = None  # client certificate and key, for brokers that authenticate clients by TLS
    key_file: Path | None = None
    client_id: str = Field(default="vigil", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    # Topics are <topic_prefix>/<camera>/...: levels of letters, digits, '_' and '-' (no wildcards, no empty level).
    topic_prefix: str = Field(default="vigil", min_length=1, max_length=64, pattern=r"^[\w-]+(/[\w-]+)*$")
    discovery: bool = True  # Home Assistant MQTT discovery: an "anomaly" binary sensor and a score sensor per camera
    discovery_prefix: str = Field(default="homeassistant", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    reconnect_min_s: float = Field(default=1.0, gt=0, le=60)  # backoff between connection attempts doubles up to max
    reconnect_max_s: float = Field(default=60.0, gt=0, le=3600)
    poll_interval_s: float = Field(default=1.0, gt=0, le=60)  # how often camera states are read from Redis
    score_interval_s: float = Field(default=1.0, gt=0, le=3600)  # a camera's latest score at most this often
    max_inflight: int = Field(default=100, ge=1, le=10_000)  # events published and not yet acknowledged (PUBACK)
    ack_timeout_s: float = Field(default=30.0, gt=0)  # an event unacknowledged this long while connected is sent again
    metrics_port: int = Field(default=9103, ge=0, le=65535)  # the bridge's /metrics; 0 = off
    metrics_host: str = "127.0.0.1"

    @model_validator(mode="after")
    def _consistent(self) -> MqttSettings:
        if self.reconnect_min_s > self.reconnect_max_s:
            msg = f"mqtt.reconnect_min_s ({self.reconnect_min_s}) must not exceed mqtt.reconnect_max_s"
            raise ValueError(msg)
        if (self.ca_file or self.cert_file) and not self.tls:
            msg = "mqtt.ca_file/cert_file are set but mqtt.tls is false: set VIGIL_MQTT__TLS=true to use them"
            raise ValueError(msg)
        if (self.cert_file is None) != (self.key_file is None):
            msg = "mqtt.cert_file and mqtt.key_file go together (a client certificate needs its key)"
            raise ValueError(msg)
        if self.password is not None and self.username is None:
            msg = "mqtt.password is set without mqtt.username: set VIGIL_MQTT__USERNAME too"
            raise ValueError(msg)
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VIGIL_", env_nested_delimiter="__", extra="forbid", hide_input_in_errors=True
    )

    env: Literal["dev", "prod"] = "dev"
    redis: RedisSettings = RedisSettings()
    store: StoreSettings = StoreSettings()
    ingest: IngestSettings = IngestSettings()
    worker: WorkerSettings = WorkerSettings()
    alerts: AlertSettings = AlertSettings()
    calibration: CalibrationSettings = CalibrationSettings()
    health: HealthSettings = HealthSettings()
    api: ApiSettings = ApiSettings()
    jobs: JobSettings = JobSettings()
    mqtt: MqttSettings = MqttSettings()
    clips: ClipSettings = ClipSettings()
    footage_root: Path | None = None  # only paths under it may be read by jobs and file cameras

    @model_validator(mode="after")
    def _no_open_writes_off_loopback(self) -> Settings:
        if not self.api.admin_keys and not is_loopback(self.api.host):
            msg = (
                f"VIGIL_API__HOST={self.api.host} exposes the API beyond this machine, but no admin key is set, so "
                "anyone could add cameras or promote models: set VIGIL_API__ADMIN_KEYS='[\"<long random key>\"]'"
            )
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _safe_in_prod(self) -> Settings:
        if self.env == "prod" and not self.api.admin_keys:
            msg = "VIGIL_ENV=prod needs at least one admin key: set VIGIL_API__ADMIN_KEYS='[\"<long random key>\"]'"
            raise ValueError(msg)
        return self


# `VIGIL_*` variables that are not settings but say where a training config finds its data and weights
# (`${VIGIL_PED2:-...}` in models/configs/*.yaml; tests/service/test_settings.py checks every one is here).
CONFIG_VARS = frozenset(
    {"VIGIL_PED2", "VIGIL_PED2_FEATURES", "VIGIL_I3D_WEIGHTS", "VIGIL_TEST_DATASET", "VIGIL_TEST_SPLIT"}
)


def unknown_env_vars(environ: Mapping[str, str]) -> list[str]:
    """`VIGIL_*` variables that name no setting (nor a config's data, `CONFIG_VARS`): pydantic-settings ignores unknown
    top-level names, we refuse them."""
    unknown = []
    for key in environ:
        if not key.startswith("VIGIL_") or key in CONFIG_VARS:
            continue
        parts = key[len("VIGIL_") :].lower().split("__")
        field = Settings.model_fields.get(parts[0])
        if field is None:
            unknown.append(key)
            continue
        section = field.annotation
        for part in parts[1:]:  # nested sections, as deep as the settings go (VIGIL_HEALTH__FROZEN__MIN_S)
            fields = getattr(section, "model_fields", {}) if isinstance(section, type) else {}
            if part not in fields:
                unknown.append(key)
                break
            section = fields[part].annotation
    return sorted(unknown)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    unknown = unknown_env_vars(os.environ)
    if unknown:
        valid = ", ".join(f"VIGIL_{name.upper()}" for name in Settings.model_fields)
        msg = f"unknown settings in the environment: {', '.join(unknown)}; top-level settings are {valid}"
        raise ValueError(msg)
    return Settings()
