"""The bounded per-camera buffer between decoding and publishing, with a named backpressure policy.

DROP_OLDEST (live cameras): a full buffer evicts its oldest item, so latency stays bounded and the
newest frames win; every eviction is reported to `on_drop` (the dropped-frames metric). WAIT (files and
jobs): a full buffer blocks the producer, so nothing is lost and the file simply plays slower.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from typing import Generic, TypeVar

T = TypeVar("T")


class Policy(StrEnum):
    DROP_OLDEST = "drop_oldest"
    WAIT = "wait"

    @classmethod
    def for_kind(cls, kind: str) -> Policy:
        """Live cameras drop, anything finite (file, job) waits."""
        return cls.DROP_OLDEST if kind == "live" else cls.WAIT


class BufferClosed(Exception):
    """put() on a closed buffer: the consumer is gone, the producer should stop."""


class BoundedBuffer(Generic[T]):
    """Thread-safe FIFO of at most `capacity` items with a backpressure `policy`."""

    def __init__(self, capacity: int, policy: Policy, on_drop: Callable[[T], None] | None = None) -> None:
        if capacity < 1:
            msg = f"buffer capacity must be >= 1, got {capacity}"
            raise ValueError(msg)
        self.capacity = capacity
        self.policy = policy
        self.on_drop = on_drop
        self.dropped = 0
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Add `item`. WAIT blocks while full (False if `timeout` passes); DROP_OLDEST never blocks.

        Raises BufferClosed once `close()` was called.
        """
        evicted: list[T] = []
        with self._cond:
            if self.policy is Policy.WAIT:
                deadline = None if timeout is None else time.monotonic() + timeout
                while len(self._items) >= self.capacity and not self._closed:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._cond.wait(left)
            if self._closed:
                raise BufferClosed("the buffer was closed")
            while len(self._items) >= self.capacity:  # DROP_OLDEST only: WAIT made room above
                evicted.append(self._items.popleft())
            self._items.append(item)
            self.dropped += len(evicted)
            self._cond.notify_all()
        if self.on_drop is not None:  # outside the lock: the callback may touch metrics or log
            for old in evicted:
                self.on_drop(old)
        return True

    def get(self, timeout: float | None = None) -> T | None:
        """The oldest item, waiting up to `timeout` s; None on timeout or when closed and empty."""
        with self._cond:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._items:
                if self._closed:
                    return None
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """Wake everyone: producers get BufferClosed, consumers drain what is left and then get None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
