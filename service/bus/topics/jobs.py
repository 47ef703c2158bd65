"""Batch re-scoring jobs: records, progress, exactly-once window publishing, clean-up."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, cast

import redis

from service.bus import keys
from service.bus.topics.codec import AnyRedis, decode_json, encode_json
from service.bus.topics.scores import load_scoring_state
from service.bus.topics.windows import encode_window
from service.errors import MessageError
from service.messages import (
    ControlMsg,
    JobRecord,
    WindowMsg,
)

log = logging.getLogger(__name__)


# --- batch re-scoring jobs ------------------------------------------------------------------------------

# Publish a job's window only if it starts at the job's next unpublished frame, and record the new next frame
# in the same step: a resumed or duplicate reader can then never put a frame on the bus twice.
_PUBLISH_JOB_WINDOW = """
local next_frame = redis.call('HGET', KEYS[3], 'next_frame')
if next_frame and tonumber(next_frame) ~= tonumber(ARGV[5]) then return {0, tonumber(next_frame)} end
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'v', ARGV[2], 'seq', seq, 'h', ARGV[3], 'f', ARGV[4])
redis.call('HSET', KEYS[3], 'next_frame', ARGV[6], 'last_seq', seq)
return {seq, tonumber(ARGV[6])}
"""


def publish_job_window(r: redis.Redis, window: WindowMsg, maxlen: int = keys.WINDOWS_MAXLEN) -> tuple[int, int]:
    """Publish a job window exactly once; returns (seq, next frame), seq 0 when refused (not the next frame)."""
    if window.job_id is None:
        msg = f"window of {window.camera} has no job_id; use publish_window for cameras"
        raise ValueError(msg)
    f = encode_window(window)
    script = r.register_script(_PUBLISH_JOB_WINDOW)
    stream = keys.windows_stream(keys.partition_of(window.camera))
    stream_keys = [stream, keys.camera_seq_key(window.camera), keys.job_progress_key(window.job_id)]
    end = window.first_frame + window.num_scored
    seq, next_frame = cast(
        list[Any], script(keys=stream_keys, args=[maxlen, f["v"], f["h"], f["f"], window.first_frame, end])
    )
    return int(seq), int(next_frame)


ACTIVE_STATES = ("queued", "running")


def put_job(r: redis.Redis, job: JobRecord) -> bool:
    """Create or update a job; queued and running jobs are in JOBS_ACTIVE, where ingesters look for work.

    A cancelled job stays cancelled: an update from its runner (which may not know yet) is refused, and
    False is returned. Checked and written in one optimistic transaction, so a cancel cannot slip between.
    """
    key = keys.job_key(job.id)
    with r.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                if job.state != "cancelled" and _stored_state(cast(bytes | None, pipe.get(key))) == "cancelled":
                    pipe.unwatch()
                    return False
                pipe.multi()
                pipe.set(key, encode_json(job))
                pipe.zadd(keys.JOBS_INDEX, {job.id: job.created_ts})
                if job.state in ACTIVE_STATES:
                    pipe.sadd(keys.JOBS_ACTIVE, job.id)
                else:
                    pipe.srem(keys.JOBS_ACTIVE, job.id)
                pipe.execute()
                return True
            except redis.WatchError:
                continue  # the record changed between the read and the write: look again


def _stored_state(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        return decode_json(data, JobRecord, "job").state
    except MessageError:
        return None


def cancel_job(r: redis.Redis, job_id: str, reason: str) -> tuple[JobRecord | None, bool]:
    """Mark a queued or running job cancelled (its runner stops on the ingester's next tick).

    Returns (the record as it is now, whether this call cancelled it); (None, False) when there is no such job.
    """
    job = get_job(r, job_id)
    while job is not None and job.state in ACTIVE_STATES:
        cancelled = job.model_copy(update={"state": "cancelled", "reason": reason, "finished_ts": time.time()})
        if put_job(r, cancelled):
            return cancelled, True
        job = get_job(r, job_id)
    return job, False


def get_job(r: redis.Redis, job_id: str) -> JobRecord | None:
    data = r.get(keys.job_key(job_id))
    return None if data is None else decode_json(cast(bytes, data), JobRecord, f"job {job_id!r}")


def list_jobs(r: redis.Redis, limit: int = 100, offset: int = 0) -> list[JobRecord]:
    """Jobs newest first; a record that no longer decodes is logged and left out."""
    ids = [i.decode() for i in cast(list[bytes], r.zrevrange(keys.JOBS_INDEX, offset, offset + limit - 1))]
    docs = r.mget([keys.job_key(i) for i in ids]) if ids else []
    out = []
    for job_id, data in zip(ids, docs, strict=True):
        if data is None:
            continue
        try:
            out.append(decode_json(data, JobRecord, f"job {job_id!r}"))
        except MessageError as e:
            log.error("skipping job %s: %s", job_id, e)
    return out


def active_jobs(r: redis.Redis) -> list[str]:
    """Ids of queued and running jobs, sorted so every ingester walks them in the same order."""
    return sorted(m.decode() for m in cast(set[bytes], r.smembers(keys.JOBS_ACTIVE)))


def job_progress(r: redis.Redis, job_id: str) -> dict[str, str]:
    """The job's progress hash (see keys.job_progress_key) as text."""
    raw = cast(dict[bytes, bytes], r.hgetall(keys.job_progress_key(job_id)))
    return {k.decode(): v.decode() for k, v in raw.items()}


def set_job_progress(r: AnyRedis, job_id: str, fields: Mapping[str, str | int | float]) -> None:
    mapping: dict[Any, Any] = dict(fields)  # redis-py's Mapping type is invariant in its key type
    r.hset(keys.job_progress_key(job_id), mapping=mapping)


def job_scores_done(r: redis.Redis, job_id: str) -> bool:
    """True once every window the job published has been through the ordered publisher (scored or passed over)."""
    progress = job_progress(r, job_id)
    last_seq = int(progress.get("last_seq", 0))
    return load_scoring_state(r, keys.job_stream(job_id)).next_seq > last_seq


def expire_job_stream(r: redis.Redis, job_id: str, ttl_s: int, drop_scores: bool = True) -> None:
    """After a job ended: drop its score stream (its results are on disk), let its bookkeeping keys expire.

    The scoring state and seq counter outlive the job for `ttl_s`, so a late duplicate window is recognised.
    A failed job may still have windows in flight: `drop_scores=False` lets its scores expire instead, so
    scores that arrive later land in a stream that still expires.
    """
    stream = keys.job_stream(job_id)
    scores = (keys.score_stream_key(stream), keys.latest_score_key(stream))
    pipe = r.pipeline(transaction=True)
    pipe.delete(keys.job_progress_key(job_id), *(scores if drop_scores else ()))
    expiring = (keys.camera_state_key(stream), keys.camera_seq_key(stream), keys.camera_results_key(stream))
    for key in expiring if drop_scores else expiring + scores:
        pipe.expire(key, ttl_s)
    pipe.execute()


def delete_job(r: redis.Redis, job_id: str) -> bool:
    """Remove a job's record from every index; returns False when it did not exist."""
    pipe = r.pipeline(transaction=True)
    pipe.delete(keys.job_key(job_id))
    pipe.zrem(keys.JOBS_INDEX, job_id)
    pipe.srem(keys.JOBS_ACTIVE, job_id)
    removed = cast(list[int], pipe.execute())[0]
    r.delete(keys.job_progress_key(job_id))  # in the job stream's partition (keys.py), not with the record
    return bool(removed)


def announce_job(r: redis.Redis, job_id: str) -> None:
    """Tell the ingesters a job is queued (a control message for its stream id): they tick at once instead of
    finding it on their next periodic tick."""
    r.publish(keys.CONTROL_CHANNEL, encode_json(ControlMsg(op="put", camera=keys.job_stream(job_id))))
