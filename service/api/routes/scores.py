"""Scores of a camera over REST: the latest one, and a time or stream-id range with paging."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from service.api.deps import RedisDep, ViewerDep
from service.api.errors import NotFoundError
from service.api.routes.cameras import CameraId
from service.bus import topics
from service.messages import ScoreMsg

router = APIRouter(prefix="/cameras", tags=["scores"])

# A bound is unix seconds ("1700000000.25") or a score-stream id ("1700000000250-3"); "(" makes it exclusive.
_BOUND_PATTERN = r"^\(?(\d{1,13}(-\d{1,19})?|\d{1,10}\.\d{1,6})$"
Bound = Annotated[
    str | None,
    Query(
        max_length=40, pattern=_BOUND_PATTERN, description="unix seconds (publish time) or a stream id; '(' = exclusive"
    ),
]


class ScorePage(BaseModel):
    camera: str
    scores: list[ScoreMsg]
    next_start: str | None  # pass as `start` for the next page; None when this page reached `end`


def _stream_bound(value: str | None, default: str) -> str:
    """Unix seconds -> a stream id (ms); stream ids pass through. Stream ids are publish times in ms."""
    if value is None:
        return default
    exclusive, text = value.startswith("("), value.removeprefix("(")
    if "." in text:
        text = str(int(float(text) * 1000))
    return f"({text}" if exclusive else text


@router.get("/{camera_id}/scores/latest", response_model=ScoreMsg)
def latest_score(camera_id: CameraId, redis: RedisDep, _: ViewerDep) -> ScoreMsg:
    score = topics.latest_score(redis, camera_id)
    if score is None:
        msg = f"camera {camera_id!r} has no scores yet; check GET /cameras/{camera_id}/status"
        raise NotFoundError(msg)
    return score


@router.get("/{camera_id}/scores", response_model=ScorePage)
def score_range(
    camera_id: CameraId,
    redis: RedisDep,
    _: ViewerDep,
    start: Bound = None,
    end: Bound = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> ScorePage:
    """Scores published between `start` and `end` (inclusive), oldest first, at most `limit`."""
    entries = topics.read_scores(redis, camera_id, _stream_bound(start, "-"), _stream_bound(end, "+"), count=limit)
    next_start = f"({entries[-1][0]}" if len(entries) == limit else None
    return ScorePage(camera=camera_id, scores=[s for _, s in entries], next_start=next_start)
