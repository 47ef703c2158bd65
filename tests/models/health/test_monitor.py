"""The camera health monitor on rendered footage with injected faults: each fault raises its own condition within
2 s and flags its frames from the first one on, clean footage raises nothing, conditions clear after the fault."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from models.health import (
    BITS,
    FrameInfo,
    HealthMonitor,
    HealthParams,
    measure_bgr,
    names_of,
    spread,
)
from models.health.monitor import calibration_inputs
from models.health.params import HealthOverrides
from tests import faults
from tests.synthetic import render_scene

FPS = 25.0
SIZE = (90, 160)
START, STOP, TOTAL = 200, 300, 400  # a fault from 8 s to 12 s of a 16 s clip (the reference view needs 4 s)


def run(frames: list[np.ndarray], params: HealthParams | None = None, infos: list[FrameInfo] | None = None):
    """Every frame through one monitor -> (flags per frame, [(frame, change)])."""
    monitor = HealthMonitor(params or HealthParams())
    flags, changes = [], []
    for i, frame in enumerate(frames):
        info = infos[i] if infos is not None else FrameInfo(measure_bgr(frame))
        out = monitor.step(info, i / FPS)
        flags.append(out.flags)
        changes.extend((i, c) for c in out.changes)
    return np.array(flags), changes


@pytest.fixture(scope="module")
def clean() -> list[np.ndarray]:
    return list(render_scene(TOTAL, SIZE, seed=3))


def test_clean_footage_raises_nothing_and_flags_nothing(clean):
    flags, changes = run(clean)
    assert changes == []
    assert not flags.any()


@pytest.mark.parametrize(
    ("fault", "condition"),
    [
        ("frozen", "frozen"),
        ("blank", "blank"),
        ("covered", "covered"),
        ("blur", "blur"),
        ("moved", "moved"),
        ("ir_switch", "ir_switch"),
        ("illumination", "illumination"),
    ],
)
def test_each_fault_raises_its_condition_within_2_s_and_clears(clean, fault, condition):
    frames = list(faults.inject(clean, faults.FRAME_FAULTS[fault], START, STOP))
    flags, changes = run(frames)
    raised = [i for i, c in changes if c.condition == condition and c.kind == "raised"]
    assert raised, f"{fault}: no {condition} raised; changes {changes}"
    assert START <= raised[0] <= START + 2 * FPS, f"{fault}: raised at frame {raised[0]}"
    # Every fault frame is flagged once the condition is up (a frozen picture is harmless to scores until it is one);
    # after a switch to IR or the lights going on, the new scene is healthy once the change has settled.
    first_flagged = START + (raised[0] - START if fault == "frozen" else 0)
    lasting = fault in ("ir_switch", "illumination")
    last_flagged = raised[0] + int(getattr(HealthParams(), condition).clear_s * FPS) if lasting else STOP
    assert (flags[first_flagged:last_flagged] != 0).all(), f"{fault}: unflagged fault frames"
    assert not flags[:START].any()
    others = {c.condition for _, c in changes if c.condition != condition}
    assert others <= {"illumination", "ir_switch"}, f"{fault}: also raised {others}"  # a lasting change ends
    assert changes[-1][1].kind == "cleared" or fault in ("ir_switch", "illumination")  # ... and it ends clean
    active = {c.condition for _, c in changes if c.kind == "raised"} - {
        c.condition for _, c in changes if c.kind == "cleared"
    }
    assert not active, f"{fault}: still raised at the end: {active}"


def test_decode_errors_flag_frames_until_the_next_key_frame():
    frames = list(render_scene(300, SIZE, seed=4))
    infos = [FrameInfo(measure_bgr(f), corrupt=i in (150, 151), key=i % 50 == 0) for i, f in enumerate(frames)]
    flags, changes = run(frames, infos=infos)
    assert [(i, c.condition, c.kind) for i, c in changes][:1] == [(150, "decode_error", "raised")]
    damaged = flags & BITS["decode_error"]
    assert damaged[150:200].all(), "frames predicted from the damage are flagged until key frame 200"
    assert not damaged[:150].any()
    cleared = [i for i, c in changes if c.kind == "cleared"]
    assert cleared
    assert 200 <= cleared[0] <= 200 + 1.1 * FPS


def test_a_view_moved_for_good_becomes_the_reference_and_asks_to_relearn(clean):
    params = HealthParams.merge(HealthParams(), {"moved": {"relearn_s": 2.0}})
    frames = list(faults.inject(clean, faults.moved, START, None))
    monitor = HealthMonitor(params)
    relearn_at = []
    for i, frame in enumerate(frames):
        out = monitor.step(FrameInfo(measure_bgr(frame)), i / FPS)
        if out.relearn:
            relearn_at.append(i)
    assert len(relearn_at) == 1
    assert START + 2 * FPS <= relearn_at[0] <= START + 3.5 * FPS
    assert "moved" not in monitor.active
    assert monitor.memory.views["colour"].learned, "the moved view was learned as the new reference"


def test_lights_left_on_are_flagged_until_the_lit_view_becomes_the_reference(clean):
    params = HealthParams.merge(HealthParams(), {"illumination": {"relearn_s": 2.0}})
    frames = list(faults.inject(clean, faults.lights_on, START, None))
    monitor = HealthMonitor(params)
    outs = [monitor.step(FrameInfo(measure_bgr(f)), i / FPS) for i, f in enumerate(frames)]
    relearn_at = [i for i, out in enumerate(outs) if out.relearn]
    assert len(relearn_at) == 1
    assert START + 2 * FPS <= relearn_at[0] <= START + 3 * FPS
    assert all(out.flags for out in outs[START : relearn_at[0]]), "lit frames flagged until the relearn"
    assert not any(out.flags for out in outs[relearn_at[0] + 1 :]), "the lit view is the camera's normal now"


def test_black_frames_are_no_evidence_for_the_ir_profile(clean):
    frames = list(faults.inject(clean, faults.black, START, STOP))
    monitor = HealthMonitor(HealthParams())
    chroma = [monitor.step(FrameInfo(measure_bgr(f)), i / FPS).chroma for i, f in enumerate(frames)]
    assert all(c is None for c in chroma[START:STOP])
    assert all(c is not None and c > 8 for c in chroma[:START])
    assert monitor.memory.mode == "colour"


def test_disabled_checks_raise_nothing(clean):
    frames = list(faults.inject(clean, faults.black, START, STOP))
    off = HealthParams.merge(HealthParams(), {"blank": {"enabled": False}, "illumination": {"enabled": False}})
    _flags, changes = run(frames, off)
    assert not [c for _, c in changes if c.condition in ("blank", "illumination")]
    _, changes = run(frames, HealthParams(enabled=False))
    assert changes == []


def test_spread_ors_each_frame_with_its_context():
    flags = np.array([0, 4, 0, 0, 0, 1, 0], dtype=np.int64)
    assert spread(flags, 2).tolist() == [0, 4, 4, 4, 0, 1, 1]
    assert spread(flags, 0).tolist() == flags.tolist()
    assert names_of(5) == ["decode_error", "blank"]


def test_calibration_inputs():
    chroma, usable = calibration_inputs([0, 2, 0], [10.0, None, 1.5])
    assert usable.tolist() == [True, False, True]
    assert chroma[0] == 10.0
    assert np.isnan(chroma[1])
    assert chroma[2] == 1.5
    assert calibration_inputs(None, None) == (None, None)


def test_overrides_validate_each_field_and_merge_over_the_defaults():
    overrides = HealthOverrides.model_validate({"frozen": {"min_s": 3}, "moved": {"enabled": False}})
    params = HealthParams.merge(HealthParams(), overrides.model_dump(exclude_none=True))
    assert params.frozen.min_s == 3
    assert params.frozen.max_change == HealthParams().frozen.max_change
    assert not params.moved.enabled
    for bad, loc in [
        ({"blurr": {}}, ("blurr",)),
        ({"frozen": {"min_s": -1}}, ("frozen", "min_s")),
        ({"moved": {"min_match": 2}}, ("moved", "min_match")),
        ({"covered": {"max_texture": "lots"}}, ("covered", "max_texture")),
    ]:
        with pytest.raises(ValidationError) as e:
            HealthOverrides.model_validate(bad)
        assert e.value.errors()[0]["loc"] == loc
