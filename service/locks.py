"""The camera's drain lock, taken from outside the worker: API changes to a camera's scoring state (its calibration,
an alert it holds open) wait for the worker publishing the camera's scores, and the worker waits for them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from service.bus import keys
from service.errors import VigilServiceError

_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end"
LOCK_WAIT_S = 5.0


class CameraBusyError(VigilServiceError):
    """The camera's lock stayed taken (a worker draining a large backlog); the change was not made."""


@contextmanager
def camera_lock(r: redis.Redis, camera: str, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold `keys.camera_lock_key(camera)` (the workers' own lock), or raise CameraBusyError after `wait_s`."""
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait_s
    while not r.set(keys.camera_lock_key(camera), token, nx=True, px=keys.CAMERA_LOCK_TTL_MS):
        if time.monotonic() >= deadline:
            msg = f"camera {camera!r} is busy (its scores are being published); try again in a few seconds"
            raise CameraBusyError(msg)
        time.sleep(0.005)
    try:
        yield
    finally:
        r.eval(_RELEASE, 1, keys.camera_lock_key(camera), token)
