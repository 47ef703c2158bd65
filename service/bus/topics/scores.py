"""Per-camera scoring state, stashed out-of-order results and the per-camera score streams."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

import redis

from service.bus import keys
from service.bus.topics.codec import AnyRedis, decode_json, encode_json, xread_streams
from service.messages import (
    ScoredWindow,
    ScoreMsg,
    ScoringState,
)

log = logging.getLogger(__name__)


# --- per-camera scoring state and stashed results (worker/ordering.py) ---------------------------------


def stash_result(r: AnyRedis, result: ScoredWindow) -> None:
    r.hset(keys.camera_results_key(result.camera), str(result.seq), encode_json(result))
    r.sadd(keys.results_waiting_set(keys.partition_of(result.camera)), result.camera)


def load_results(r: redis.Redis, camera: str) -> dict[int, ScoredWindow]:
    raw = cast(dict[bytes, bytes], r.hgetall(keys.camera_results_key(camera)))
    return {int(k): decode_json(v, ScoredWindow, "scored window") for k, v in raw.items()}


def load_scoring_state(r: redis.Redis, camera: str) -> ScoringState:
    data = r.get(keys.camera_state_key(camera))
    return ScoringState() if data is None else decode_json(cast(bytes, data), ScoringState, "scoring state")


def save_scoring_state(pipe: AnyRedis, camera: str, state: ScoringState) -> None:
    pipe.set(keys.camera_state_key(camera), encode_json(state))


# --- scores -------------------------------------------------------------------------------------------


def add_scores(pipe: AnyRedis, scores: Sequence[ScoreMsg]) -> None:
    """Append per-frame scores to their camera streams and set each camera's latest score."""
    latest: dict[str, bytes] = {}
    for s in scores:
        data = encode_json(s)
        pipe.xadd(keys.score_stream_key(s.camera), {"d": data}, maxlen=keys.SCORES_MAXLEN, approximate=True)
        latest[s.camera] = data
    for camera, data in latest.items():
        pipe.set(keys.latest_score_key(camera), data)


def read_scores(
    r: redis.Redis, camera: str, start: str = "-", end: str = "+", count: int | None = 1000
) -> list[tuple[str, ScoreMsg]]:
    """Scores of a camera between two stream ids (inclusive; "(" prefix = exclusive), oldest first."""
    entries: Any = r.xrange(keys.score_stream_key(camera), start, end, count=count)
    return [(i.decode(), decode_json(f[b"d"], ScoreMsg, "score")) for i, f in entries]


def read_new_scores(
    r: redis.Redis, last_ids: Mapping[str, str], block_ms: int | None = None, count: int = 500
) -> list[tuple[str, str, ScoreMsg]]:
    """(camera, id, score) newer than `last_ids[camera]` ("$" = only new ones); XREAD, optionally blocking."""
    cameras = {keys.score_stream_key(c): c for c in last_ids}
    resp = xread_streams(r, {stream: last_ids[c] for stream, c in cameras.items()}, count, block_ms)
    out: list[tuple[str, str, ScoreMsg]] = []
    for stream, entries in resp:
        camera = cameras[stream.decode()]
        out.extend((camera, i.decode(), decode_json(f[b"d"], ScoreMsg, "score")) for i, f in entries)
    return out


def latest_score(r: redis.Redis, camera: str) -> ScoreMsg | None:
    data = r.get(keys.latest_score_key(camera))
    return None if data is None else decode_json(cast(bytes, data), ScoreMsg, "score")
