"""Ended jobs are removed after `jobs.retention_s`: their record, progress and folder (upload and results).

Swept by every ingester's job manager about once a minute. Several ingesters may sweep at the same time:
deleting is idempotent, so that is harmless. Queued and running jobs are never touched.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import redis

from service.bus import topics
from service.settings import JobSettings

log = logging.getLogger(__name__)
_PAGE = 500  # job records read per Redis round trip


def sweep_ended_jobs(r: redis.Redis, jobs: JobSettings, now: float | None = None) -> list[str]:
    """Delete the jobs that ended more than `jobs.retention_s` ago; returns their ids."""
    if jobs.retention_s == 0:  # keep everything
        return []
    cutoff = (time.time() if now is None else now) - jobs.retention_s
    expired: list[str] = []
    offset = 0
    while batch := topics.list_jobs(r, limit=_PAGE, offset=offset):  # read everything first, then delete
        offset += len(batch)
        expired += [
            job.id
            for job in batch
            if job.state not in topics.ACTIVE_STATES and job.finished_ts is not None and job.finished_ts <= cutoff
        ]
    removed = []
    for job_id in expired:
        if topics.delete_job(r, job_id):
            removed.append(job_id)
        shutil.rmtree(Path(jobs.dir).resolve() / job_id, ignore_errors=True)
    if removed:
        log.info("removed %d job(s) ended more than %d s ago: %s", len(removed), jobs.retention_s, removed[:10])
    return removed
