"""Wire schemas and their serialisation: round trips, schema version mismatch, malformed messages, masking."""

from __future__ import annotations

import json

import numpy as np
import pytest

from service.bus import topics
from service.errors import MessageError, SchemaVersionError
from service.messages import (
    Alert,
    AlertEvent,
    AlertParams,
    CameraConfig,
    CameraStatus,
    ScoreMsg,
    WindowMsg,
    mask_credentials,
)
from service.settings import AlertSettings


def _window(**kw) -> WindowMsg:
    frames = np.random.default_rng(0).integers(0, 256, (6, 16, 24, 1), dtype=np.uint8)
    data = {
        "camera": "cam-1",
        "model": "ffp-small@production",
        "context": 4,
        "first_frame": 10,
        "pts": [0.4, None],
        "capture_ts": [1.0, 1.04],
        "frames": frames,
    }
    return WindowMsg(**{**data, **kw})


def test_window_round_trip_keeps_bytes_dtype_and_shape():
    window = _window(source="job", job_id="j1")
    fields = {k.encode(): v for k, v in topics.encode_window(window).items()}
    header = json.loads(fields[b"h"])
    assert (header["dtype"], header["shape"]) == ("uint8", [6, 16, 24, 1])
    assert len(fields[b"f"]) == window.frames.nbytes  # raw bytes, not JSON lists
    fields[b"seq"] = b"7"
    back = topics.decode_window(fields)
    assert back.seq == 7
    assert back.model_dump(exclude={"frames", "seq"}) == window.model_dump(exclude={"frames", "seq"})
    np.testing.assert_array_equal(back.frames, window.frames)


def _fields(window: WindowMsg) -> dict[bytes, bytes]:
    fields = {k.encode(): v for k, v in topics.encode_window(window).items()}
    fields[b"seq"] = b"1"
    return fields


def test_window_with_other_schema_version_is_refused():
    fields = _fields(_window())
    fields[b"v"] = b"2"
    with pytest.raises(SchemaVersionError, match="schema_version 2 but this process reads version 1"):
        topics.decode_window(fields)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.pop(b"h"), "fields v, seq, h"),
        (lambda f: f.update({b"h": b"{oops"}), "malformed window"),
        (lambda f: f.update({b"f": f[b"f"][:-1]}), "needs 2304 bytes, got 2303"),
        (lambda f: f.update({b"h": f[b"h"].replace(b'"uint8"', b'"float32"')}), "must be uint8"),
        (lambda f: f.update({b"h": f[b"h"].replace(b'"context": 4', b'"context": 5')}), "scores 1 frames"),
        (lambda f: f.update({b"h": f[b"h"].replace(b'"cam-1"', b"null")}), "camera"),
    ],
)
def test_malformed_window_is_rejected_with_a_clear_error(change, message):
    fields = _fields(_window())
    change(fields)
    with pytest.raises(MessageError, match=message):
        topics.decode_window(fields)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"schema_version": 0}', "schema_version 0"),
        (b'{"schema_version": 1, "camera": "c"}', "frame: Field required"),
    ],
)
def test_malformed_json_message_is_rejected(data, message):
    with pytest.raises(MessageError, match=message):
        topics.decode_json(data, ScoreMsg, "score")


@pytest.mark.parametrize(
    "message",
    [
        ScoreMsg(
            camera="c", frame=3, seq=1, score=0.5, signals=[-30.0], model="m@v1", capture_ts=1.0, published_ts=2.0
        ),
        AlertEvent(
            kind="opened",
            alert=Alert(
                id="a",
                camera="c",
                model="m@v1",
                state="open",
                start_frame=1,
                start_ts=1.0,
                peak_score=0.97,
                peak_frame=2,
            ),
        ),
        CameraStatus(camera="c", state="error", reason="401 from rtsp://admin:hunter2@cam/1"),
    ],
)
def test_json_messages_round_trip(message):
    assert topics.decode_json(message.model_dump_json(), type(message), "message") == message


def test_status_reason_never_holds_credentials():
    status = CameraStatus(camera="c", state="error", reason="401 from rtsp://admin:hunter2@cam/1")
    assert status.reason == "401 from rtsp://admin:***@cam/1"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("rtsp://user:pass@host:554/s", "rtsp://user:***@host:554/s"),
        ("open http://a:b@h/x and rtsps://c:d@h2", "open http://a:***@h/x and rtsps://c:***@h2"),
        ("rtsp://host/s", "rtsp://host/s"),
        ("redis://:secret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ],
)
def test_mask_credentials(text, masked):
    assert mask_credentials(text) == masked


def test_camera_config_validates_and_hides_its_url():
    cam = CameraConfig(id="gate-1", url="rtsp://admin:hunter2@10.0.0.5/live", model="ffp-small@production")
    assert "hunter2" not in repr(cam)
    assert cam.public()["url"] == "rtsp://admin:***@10.0.0.5/live"
    with pytest.raises(ValueError, match="invalid camera id 'Gate 1'"):
        CameraConfig(id="Gate 1", url="rtsp://h/x", model="m")
    with pytest.raises(ValueError, match="camera url must be"):
        CameraConfig(id="c", url="ftp://h/x", model="m")
    with pytest.raises(ValueError, match="invalid model name"):
        CameraConfig(id="c", url="/videos/a.mp4", model="../etc")
    with pytest.raises(ValueError, match="Extra inputs"):
        CameraConfig.model_validate({"id": "c", "url": "rtsp://h/x", "model": "m", "treshold": 0.5})


def test_alert_params_merge_overrides_over_settings():
    defaults = AlertSettings(threshold=0.95, hysteresis=0.05, min_duration_frames=5, cooldown_frames=25)
    cam = CameraConfig(id="c", url="rtsp://h/x", model="m", alerts={"threshold": 0.8, "cooldown_frames": 0})
    assert AlertParams.merge(defaults, cam.alerts) == AlertParams(
        threshold=0.8, hysteresis=0.05, min_duration_frames=5, cooldown_frames=0
    )
    assert AlertParams.merge(defaults, None).threshold == 0.95
