"""The ingester's job queue: every tick, keep the leases of the jobs it runs and take queued jobs nobody holds.

A job's lease is the camera lease of its stream id (`job-<id>`), taken and renewed by the ingester's own
lease functions, so a dead ingester's jobs move to a live one exactly as its cameras do. A runner that
ended without finishing its job (Redis outage) is replaced on the next tick and resumes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from service.bus import keys, topics
from service.errors import MessageError
from service.ingest.camera import SpecResolver
from service.jobs.retention import sweep_ended_jobs
from service.jobs.runner import JobRunner
from service.settings import Settings

log = logging.getLogger(__name__)

Lease = Callable[[str], bool]  # stream id -> True while this ingester holds (or just took) its lease
Release = Callable[[str], None]
_SWEEP_INTERVAL_S = 60.0  # how often ended jobs past their retention are looked for


class JobManager:
    """Runs up to `jobs.max_running` jobs of one ingester; call `tick()` from the ingester's tick."""

    def __init__(
        self, settings: Settings, owner: str, resolve_spec: SpecResolver, lease: Lease, release: Release
    ) -> None:
        self.settings, self.owner, self.resolve_spec = settings, owner, resolve_spec
        self.lease, self.release = lease, release
        self.runners: dict[str, JobRunner] = {}
        self._next_sweep = 0.0  # monotonic time of the next retention sweep

    def tick(self, r: redis.Redis) -> None:
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + _SWEEP_INTERVAL_S
            sweep_ended_jobs(r, self.settings.jobs)
        for job_id, runner in list(self.runners.items()):
            stream = keys.job_stream(job_id)
            if not runner.alive:
                del self.runners[job_id]
                self.release(stream)  # finished, or ended by an error: free it to be taken again below
            elif self._cancelled(r, job_id):
                log.info("job %s: cancelled; stopping it", job_id)
                runner.stop()
                del self.runners[job_id]
                self.release(stream)
            elif not self.lease(stream):
                log.warning("job %s: lease lost to another ingester; stopping it here", job_id)
                runner.stop()
                del self.runners[job_id]
        for job_id in topics.active_jobs(r):
            if len(self.runners) >= self.settings.jobs.max_running:
                return
            if job_id not in self.runners and self.lease(keys.job_stream(job_id)):
                self._start(r, job_id)

    @staticmethod
    def _cancelled(r: redis.Redis, job_id: str) -> bool:
        try:
            job = topics.get_job(r, job_id)
        except MessageError:
            return False
        return job is None or job.state == "cancelled"  # a deleted record cannot be run either

    def _start(self, r: redis.Redis, job_id: str) -> None:
        try:
            job = topics.get_job(r, job_id)
        except MessageError as e:
            log.error("job %s: record unreadable, leaving it: %s", job_id, e)
            job = None
        if job is None or job.state not in ("queued", "running"):
            r.srem(keys.JOBS_ACTIVE, job_id)  # a stale entry: the record is gone or finished
            self.release(keys.job_stream(job_id))
            return
        runner = JobRunner(job, self.settings, r, self.owner, self.resolve_spec)
        self.runners[job_id] = runner
        runner.start()
        log.info("job %s: started (%s, model %s)", job_id, job.name, job.model)

    def stop(self) -> None:
        """Stop every runner and free its lease, so another ingester resumes the job at once."""
        for job_id, runner in list(self.runners.items()):
            runner.stop()
            self.release(keys.job_stream(job_id))
        self.runners.clear()

    def running(self) -> list[str]:
        return sorted(self.runners)
