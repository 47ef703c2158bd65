"""Per-camera stream state machine (connecting, streaming, stalled, error, stopped) with its allowed transitions."""

from __future__ import annotations

import threading
import time
from typing import get_args

from service import metrics
from service.messages import StreamState, mask_credentials

STATES: tuple[StreamState, ...] = get_args(StreamState)

# A camera thread moves only along these edges; anything else is a bug and raises.
ALLOWED: dict[StreamState, frozenset[StreamState]] = {
    "connecting": frozenset({"connecting", "streaming", "stalled", "error", "stopped"}),
    "streaming": frozenset({"stalled", "connecting", "error", "stopped"}),
    "stalled": frozenset({"connecting", "stopped"}),
    "error": frozenset({"error", "connecting", "stopped"}),
    "stopped": frozenset({"connecting"}),
}


class InvalidTransition(RuntimeError):
    pass


class StreamStateMachine:
    """Thread-safe current state + reason (credentials masked); mirrors the state into the STREAM_STATE gauge."""

    def __init__(self, camera: str, initial: StreamState = "stopped") -> None:
        self.camera = camera
        self._lock = threading.Lock()
        self._state: StreamState = initial
        self._reason = ""
        self.since = time.time()
        self.version = 0  # bumped on every transition, so a status writer can tell something changed
        self._export()

    @property
    def state(self) -> StreamState:
        return self._state

    @property
    def reason(self) -> str:
        return self._reason

    def to(self, new: StreamState, reason: str = "") -> None:
        """Move to `new`, recording why. Raises InvalidTransition for an edge not in ALLOWED."""
        with self._lock:
            if new not in ALLOWED[self._state]:
                allowed = ", ".join(sorted(ALLOWED[self._state]))
                msg = f"camera {self.camera}: {self._state} -> {new} is not allowed (allowed: {allowed})"
                raise InvalidTransition(msg)
            self._state, self._reason = new, mask_credentials(reason)
            self.since = time.time()
            self.version += 1
        self._export()

    def _export(self) -> None:
        for s in STATES:
            metrics.STREAM_STATE.labels(camera=self.camera, state=s).set(1.0 if s == self._state else 0.0)
