"""Typed publish/read helpers for every topic on the bus; the only package that (de)serialises messages.

Windows carry raw frame bytes plus a JSON header with explicit dtype and shape, snippet features (history.py)
raw float32 bytes; everything else is one JSON document per entry (field `d`). Readers check `schema_version`
and raise `MessageError` (or its subclass `SchemaVersionError`) saying what was wrong. Key names come from
`service.bus.keys`.
"""

from __future__ import annotations

from service.bus.topics.alerts import (
    get_alert,
    get_alert_thumb,
    keep_alert_thumb,
    list_alerts,
    put_frame_thumbs,
    read_alert_events,
    save_alert_event,
)
from service.bus.topics.cameras import (
    clear_heartbeat,
    decode_control,
    delete_camera,
    get_camera,
    get_camera_status,
    list_camera_statuses,
    list_cameras,
    put_camera,
    read_heartbeats,
    set_camera_status,
    subscribe_control,
    write_heartbeat,
)
from service.bus.topics.codec import AnyRedis, Fields, M, check_version, decode_json, describe_errors, encode_json
from service.bus.topics.history import read_snippet_features, write_snippet_features
from service.bus.topics.jobs import (
    active_jobs,
    announce_job,
    delete_job,
    expire_job_stream,
    get_job,
    job_progress,
    job_scores_done,
    list_jobs,
    publish_job_window,
    put_job,
    set_job_progress,
)
from service.bus.topics.scores import (
    add_scores,
    latest_score,
    load_results,
    load_scoring_state,
    read_new_scores,
    read_scores,
    save_scoring_state,
    stash_result,
)
from service.bus.topics.windows import (
    WindowEntry,
    ack_windows,
    camera_backlog,
    claim_stale_windows,
    decode_window,
    encode_window,
    ensure_window_group,
    publish_window,
    read_windows,
    window_backlog,
)
from service.errors import MessageError, SchemaVersionError  # what the readers raise

__all__ = [
    "AnyRedis",
    "Fields",
    "M",
    "MessageError",
    "SchemaVersionError",
    "WindowEntry",
    "ack_windows",
    "active_jobs",
    "add_scores",
    "announce_job",
    "camera_backlog",
    "check_version",
    "claim_stale_windows",
    "clear_heartbeat",
    "decode_control",
    "decode_json",
    "decode_window",
    "delete_camera",
    "delete_job",
    "describe_errors",
    "encode_json",
    "encode_window",
    "ensure_window_group",
    "expire_job_stream",
    "get_alert",
    "get_alert_thumb",
    "get_camera",
    "get_camera_status",
    "get_job",
    "job_progress",
    "job_scores_done",
    "keep_alert_thumb",
    "latest_score",
    "list_alerts",
    "list_camera_statuses",
    "list_cameras",
    "list_jobs",
    "load_results",
    "load_scoring_state",
    "publish_job_window",
    "publish_window",
    "put_camera",
    "put_frame_thumbs",
    "put_job",
    "read_alert_events",
    "read_heartbeats",
    "read_new_scores",
    "read_scores",
    "read_snippet_features",
    "read_windows",
    "save_alert_event",
    "save_scoring_state",
    "set_camera_status",
    "set_job_progress",
    "stash_result",
    "subscribe_control",
    "window_backlog",
    "write_heartbeat",
    "write_snippet_features",
]
