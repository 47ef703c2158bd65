"""Camera health in the ingester, on real H.264 into a real Redis: the flags and chroma each window carries equal what
the offline path (`check_recording`, used by `vigil eval`/`vigil score`) computes from the same file, and each raised
and cleared condition lands in the camera's health state, on the event stream and in the metrics."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import redis
from prometheus_client import REGISTRY

from models.data.video import open_video
from models.health import HealthParams
from models.health.recording import check_recording
from service.bus import topics
from service.messages import CameraConfig
from service.settings import Settings
from tests import faults
from tests.service.ingest.conftest import MODEL, SPEC, state_is, wait_for, windows
from tests.synthetic import render_scene, write_stream

BLANK = (150, 200)  # black frames 6 s into a 10 s clip at 25 fps (the reference view needs 4 s)


@pytest.fixture(scope="module")
def faulty_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("health")
    frames = faults.inject(render_scene(250, (90, 160), seed=5), faults.black, *BLANK)
    clip = write_stream(root / "clip.mp4", frames, gop=25)
    return faults.corrupt_packets(clip, root / "faulty.mp4", 110, 2)  # and a damaged stretch before them


def _flagged(camera: str, condition: str) -> float:
    labels = {"camera": camera, "condition": condition}
    return REGISTRY.get_sample_value("vigil_camera_health_frames_flagged_total", labels) or 0.0


def test_windows_carry_the_flags_offline_computes_and_conditions_are_reported(
    faulty_clip: Path, settings: Settings, rclient: redis.Redis, start_ingester: Callable[..., object]
) -> None:
    start_ingester(settings)
    camera = CameraConfig(id="door", url=str(faulty_clip), model=MODEL, kind="file", realtime=False)
    topics.put_camera(rclient, camera)
    wait_for(state_is(rclient, "door", "stopped"), 60, "the file camera to finish")

    got = windows(rclient, "door")
    live_flags = [h for w in got for h in (w.health or [])]
    live_chroma = np.array([np.nan if c is None else c for w in got for c in (w.chroma or [])])
    offline = check_recording(open_video(faulty_clip), HealthParams(), (4.0, 8.0), SPEC.context)
    chroma, _ = offline.scored(SPEC.context)
    assert live_flags == offline.flags[SPEC.context :].tolist()
    np.testing.assert_allclose(live_chroma, chroma)  # NaN where the frame is no evidence (blank, corrupt)
    assert any(f != 0 for f in live_flags[BLANK[0] - SPEC.context : BLANK[1] - SPEC.context])

    events = [e for _, e in topics.read_health_events(rclient, "0")]
    assert [(e.condition, e.kind) for e in events] == [
        ("decode_error", "raised"),
        ("decode_error", "cleared"),
        ("blank", "raised"),
        ("blank", "cleared"),
    ]
    assert events[1].since_ts == events[0].ts
    assert events[2].health.conditions["blank"].since_ts == events[2].ts
    health = topics.get_camera_health(rclient, "door")
    assert health is not None
    assert (health.state, health.conditions) == ("ok", {})
    assert _flagged("door", "blank") >= BLANK[1] - BLANK[0]
    assert REGISTRY.get_sample_value("vigil_camera_health_condition", {"camera": "door", "condition": "blank"}) == 0
    memory = topics.load_health_memory(rclient, "door")
    assert memory is not None
    assert memory.mode == "colour"
    assert memory.views["colour"].learned  # an ingester taking the camera over compares with the same view
