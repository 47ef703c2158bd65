"""Every Prometheus metric of vigil, defined once (ingest, worker, alerts, API); other modules import them.

Names follow `vigil_<component>_<what>_<unit>`. Labels are bounded: camera ids and model refs yes,
frame or window ids never. Each process serves its own registry: `start_metrics_server(port, host)` for
ingest/worker, `render_latest()` for the API's `/metrics` route.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client import start_http_server as _start_http_server

# Latency buckets from 5 ms to 30 s: frame-to-score latency on CPU can reach seconds under load.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

# --- every component ---------------------------------------------------------------------------------
ERRORS = Counter("vigil_errors_total", "Errors caught at a process loop boundary", ["component", "kind"])

# --- ingest ------------------------------------------------------------------------------------------
FRAMES_DECODED = Counter("vigil_ingest_frames_decoded_total", "Frames decoded", ["camera"])
FRAMES_DROPPED = Counter(
    "vigil_ingest_frames_dropped_total",
    "Frames not sent to the workers, by reason (decimation, backpressure, corrupt, ...)",
    ["camera", "reason"],
)
WINDOWS_PUBLISHED = Counter("vigil_ingest_windows_published_total", "Windows put on the bus", ["camera"])
STREAM_STATE = Gauge(
    "vigil_ingest_stream_state", "1 for the camera's current state, 0 for the others", ["camera", "state"]
)
RECONNECTS = Counter("vigil_ingest_reconnects_total", "Source reconnect attempts", ["camera"])
INGEST_FPS = Gauge("vigil_ingest_fps", "Decoded frames per second over the last seconds", ["camera"])
CAMERAS_OWNED = Gauge("vigil_ingest_cameras_owned", "Cameras whose lease this ingester holds", ["ingester"])

# --- camera health (ingest) ----------------------------------------------------------------------------
HEALTH_CONDITION = Gauge(
    "vigil_camera_health_condition", "1 while the camera's health condition is raised, else 0", ["camera", "condition"]
)
HEALTH_EVENTS = Counter(
    "vigil_camera_health_events_total", "Health conditions raised and cleared", ["camera", "condition", "kind"]
)
HEALTH_FRAMES_FLAGGED = Counter(
    "vigil_camera_health_frames_flagged_total",
    "Decoded frames a health check flagged (scored, never alertable), by condition",
    ["camera", "condition"],
)

# --- alert clips (ingest, service/clips/) -----------------------------------------------------------------
CLIPS_WRITTEN = Counter(
    "vigil_clips_written_total", "Alert clips finished, by where their frames came from", ["source"]
)  # buffer (a live camera's packet buffer)|file (a recording: file cameras, jobs)
CLIPS_FAILED = Counter("vigil_clips_failed_total", "Alert clips that could not be written, by reason", ["reason"])
CLIPS_REMOVED = Counter("vigil_clips_removed_total", "Clips deleted, by reason", ["reason"])  # retention|size_cap
CLIPS_BYTES = Gauge("vigil_clips_bytes", "Bytes of alert clips in the clips directory (at the last sweep)")
CLIP_SECONDS = Histogram(
    "vigil_clip_write_seconds",
    "Time spent decoding and encoding one clip (CPU work, not waiting)",
    ["source"],
    buckets=_LATENCY_BUCKETS,
)
CLIP_BUFFER_BYTES = Gauge("vigil_clips_buffer_bytes", "Bytes in a camera's pre-roll packet buffer", ["camera"])

# --- worker -------------------------------------------------------------------------------------------
WINDOWS_SCORED = Counter("vigil_worker_windows_scored_total", "Windows run through a model", ["model"])
FRAMES_SCORED = Counter("vigil_worker_frames_scored_total", "Calibrated frame scores published", ["camera"])
BATCH_SIZE = Histogram("vigil_worker_batch_size", "Windows per forward pass", buckets=_BATCH_BUCKETS)
INFERENCE_SECONDS = Histogram(
    "vigil_worker_inference_seconds", "Forward pass time per batch", ["model"], buckets=_LATENCY_BUCKETS
)
E2E_LATENCY_SECONDS = Histogram(
    "vigil_e2e_latency_seconds",
    "Capture wall-clock time to score published, per frame",
    ["camera"],
    buckets=_LATENCY_BUCKETS,
)
QUEUE_DEPTH = Gauge("vigil_worker_queue_depth", "Entries in the windows stream")
QUEUE_LAG = Gauge("vigil_worker_queue_lag", "Windows in the stream not yet delivered to any worker")
QUEUE_PENDING = Gauge("vigil_worker_queue_pending", "Windows delivered to workers but not acknowledged")
SEQ_SKIPPED = Counter("vigil_worker_seq_skipped_total", "Window sequence numbers given up on (lost)", ["camera"])
DUPLICATES = Counter("vigil_worker_duplicate_windows_total", "Windows scored twice and dropped by seq", ["camera"])
WINDOWS_CLAIMED = Counter("vigil_worker_windows_claimed_total", "Windows taken over from dead workers")
MALFORMED = Counter("vigil_worker_malformed_windows_total", "Windows that could not be decoded")
MODEL_LOADS = Counter("vigil_worker_model_loads_total", "Model (re)loads", ["model"])
HEARTBEAT = Gauge("vigil_worker_heartbeat_timestamp_seconds", "Unix time of the last heartbeat", ["worker"])
GPU_MEMORY_BYTES = Gauge("vigil_worker_gpu_memory_bytes", "CUDA memory in use", ["kind"])  # allocated|reserved
CAMERA_SCORE = Gauge("vigil_camera_score", "Latest calibrated score of a camera", ["camera"])

# --- alerts ---------------------------------------------------------------------------------------------
ALERTS = Counter("vigil_alerts_total", "Alert events", ["camera", "event"])  # opened|updated|closed|feedback
ALERT_FEEDBACK = Counter("vigil_alert_feedback_total", "Operator verdicts on alerts", ["camera", "verdict"])
ALERT_ACKS = Counter("vigil_alert_acks_total", "Alerts acknowledged or resolved by operators", ["camera", "state"])
ALERT_NOTIFICATIONS = Counter(
    "vigil_alert_notifications_total", "Alerts opened, by notification decision (triage)", ["camera", "decision"]
)  # sent|summary|suppressed|muted
CALIBRATION_LEARNED = Counter(
    "vigil_calibration_learned_total",
    "References a camera learned (a scene profile finished learning)",
    ["camera", "profile"],
)
CALIBRATION_VERSION = Gauge(
    "vigil_calibration_version", "The camera's current reference version (0 = learning)", ["camera"]
)
ALERTS_OPEN = Gauge("vigil_alerts_open", "Alerts open now", ["camera"])
WEBHOOK_DELIVERIES = Counter(
    "vigil_alerts_webhook_deliveries_total", "Webhook deliveries by result", ["result"]
)  # ok|retry|failed

# --- mqtt bridge (service/mqtt/) ---------------------------------------------------------------------------
MQTT_CONNECTED = Gauge("vigil_mqtt_connected", "1 while the bridge is connected to the MQTT broker, else 0")
MQTT_CONNECTIONS = Counter(
    "vigil_mqtt_connection_attempts_total", "Connection attempts to the broker by result", ["result"]
)  # ok|failed|lost
MQTT_PUBLISHED = Counter(
    "vigil_mqtt_published_total", "Messages the broker took (QoS 1: acknowledged), by kind", ["kind"]
)  # event|state|score|discovery|status
MQTT_DROPPED = Counter(
    "vigil_mqtt_dropped_total", "Messages not delivered, by reason", ["reason"]
)  # disconnected (a score while the broker was away: the next one replaces it)|refused|trimmed (events lost in Redis)
MQTT_INFLIGHT = Gauge("vigil_mqtt_events_inflight", "Events published and not yet acknowledged by the broker")

# --- api -----------------------------------------------------------------------------------------------
API_REQUESTS = Counter("vigil_api_requests_total", "HTTP requests", ["method", "route", "status"])
API_REQUEST_SECONDS = Histogram(
    "vigil_api_request_seconds", "HTTP request duration", ["method", "route"], buckets=_LATENCY_BUCKETS
)
API_WEBSOCKETS = Gauge("vigil_api_websocket_clients", "Connected WebSocket clients", ["topic"])  # scores|alerts|health


def start_metrics_server(port: int, host: str) -> None:
    """Serve this process's metrics on http://host:port/metrics (a daemon thread); port 0 = disabled.

    `host` is the operator's `metrics_host` (loopback by default): the page lists camera ids."""
    if port:
        _start_http_server(port, addr=host)


def render_latest() -> tuple[bytes, str]:
    """(body, content type) of the default registry, for a `/metrics` route."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
