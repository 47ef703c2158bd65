"""BoundedBuffer policies (drop oldest vs wait) and the camera state machine's allowed transitions."""

from __future__ import annotations

import threading
import time

import pytest

from service.ingest.backpressure import BoundedBuffer, BufferClosed, Policy
from service.ingest.state import ALLOWED, STATES, InvalidTransition, StreamStateMachine


@pytest.mark.parametrize(
    ("capacity", "items", "kept", "dropped"),
    [
        (3, [1, 2], [1, 2], []),
        (3, [1, 2, 3], [1, 2, 3], []),
        (3, [1, 2, 3, 4, 5], [3, 4, 5], [1, 2]),
        (1, [1, 2, 3], [3], [1, 2]),
    ],
)
def test_drop_oldest_keeps_the_newest(capacity: int, items: list[int], kept: list[int], dropped: list[int]) -> None:
    seen: list[int] = []
    buf: BoundedBuffer[int] = BoundedBuffer(capacity, Policy.DROP_OLDEST, on_drop=seen.append)
    for item in items:
        assert buf.put(item)
    assert [buf.get(0) for _ in range(len(buf))] == kept
    assert seen == dropped
    assert buf.dropped == len(dropped)


def test_wait_blocks_until_the_consumer_makes_room() -> None:
    buf: BoundedBuffer[int] = BoundedBuffer(2, Policy.WAIT)
    assert buf.put(1)
    assert buf.put(2)
    assert buf.put(3, timeout=0.05) is False  # full: times out, nothing dropped
    released = threading.Event()

    def producer() -> None:
        buf.put(3)
        released.set()

    t = threading.Thread(target=producer)
    t.start()
    assert not released.wait(0.1)  # still blocked
    assert buf.get(0) == 1
    assert released.wait(2)
    t.join()
    assert [buf.get(0), buf.get(0)] == [2, 3]
    assert buf.dropped == 0


def test_close_wakes_producers_and_lets_consumers_drain() -> None:
    buf: BoundedBuffer[int] = BoundedBuffer(1, Policy.WAIT)
    buf.put(1)
    errors: list[Exception] = []

    def producer() -> None:
        try:
            buf.put(2)
        except BufferClosed as e:
            errors.append(e)

    t = threading.Thread(target=producer)
    t.start()
    time.sleep(0.05)
    buf.close()
    t.join(2)
    assert len(errors) == 1
    assert buf.get(0) == 1  # what was buffered is still delivered
    assert buf.get(0.05) is None
    with pytest.raises(BufferClosed):
        buf.put(3)


@pytest.mark.parametrize(
    ("kind", "policy"), [("live", Policy.DROP_OLDEST), ("file", Policy.WAIT), ("job", Policy.WAIT)]
)
def test_policy_for_kind(kind: str, policy: Policy) -> None:
    assert Policy.for_kind(kind) is policy


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        BoundedBuffer(0, Policy.WAIT)


@pytest.mark.parametrize("start", STATES)
@pytest.mark.parametrize("target", STATES)
def test_state_transitions_follow_the_table(start: str, target: str) -> None:
    machine = StreamStateMachine(f"cam-{start}-{target}", initial=start)  # type: ignore[arg-type]
    if target in ALLOWED[start]:  # type: ignore[index]
        machine.to(target, "because rtsp://u:secret@host/x failed")  # type: ignore[arg-type]
        assert machine.state == target
        assert "secret" not in machine.reason
        assert "***" in machine.reason
    else:
        with pytest.raises(InvalidTransition, match="not allowed"):
            machine.to(target)  # type: ignore[arg-type]
        assert machine.state == start


def test_the_lifecycle_of_a_flaky_camera() -> None:
    m = StreamStateMachine("flaky")
    for state in ["connecting", "streaming", "stalled", "connecting", "error", "connecting", "streaming", "stopped"]:
        m.to(state)  # type: ignore[arg-type]
    assert m.version == 8
