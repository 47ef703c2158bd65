"""Run a vigil service process (Worker, Ingester: anything with run/stop) in a thread for a test."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar


class _Service(Protocol):
    def run(self, handle_signals: bool = ...) -> int: ...
    def stop(self) -> None: ...


S = TypeVar("S", bound=_Service)


@contextmanager
def running(process: S, what: str) -> Iterator[S]:
    """Start `process` in a background thread; on exit stop it, join it and check that it exited with 0."""
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(process.run(handle_signals=False)), daemon=True)
    thread.start()
    try:
        yield process
    finally:
        process.stop()
        thread.join(30)
        assert not thread.is_alive(), f"{what} did not stop within 30 s"
    assert result == [0], f"{what} exited with {result}"
