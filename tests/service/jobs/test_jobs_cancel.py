"""Cancelling jobs: a queued job, and a running one whose ingester must stop and never write over `cancelled`."""

from __future__ import annotations

import time

import pytest

from service.bus import keys, topics
from service.settings import ApiSettings
from tests.service.jobs.conftest import running_ingester, upload, wait_job
from tests.service.worker.helpers import running_worker, wait_for

ADMIN, VIEWER = "admin-key-0123456789", "viewer-key-0123456789"


@pytest.fixture
def client(job_settings, make_client):
    settings = job_settings.model_copy(update={"api": ApiSettings(admin_keys=[ADMIN], viewer_keys=[VIEWER])})
    c = make_client(settings)
    c.headers["X-API-Key"] = ADMIN
    return c


def test_a_queued_job_is_cancelled_then_deleted(client, job_settings, rclient, clip):
    job = upload(client, clip).json()
    job_id = job["id"]
    assert client.delete(f"/jobs/{job_id}").status_code == 409  # active: cancel first
    assert client.post(f"/jobs/{job_id}/cancel", headers={"X-API-Key": VIEWER}).status_code == 403
    r = client.post(f"/jobs/{job_id}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "cancelled"
    assert r.json()["finished_ts"] is not None
    assert rclient.sismember(keys.JOBS_ACTIVE, job_id) == 0  # no ingester will take it
    again = client.post(f"/jobs/{job_id}/cancel")
    assert again.status_code == 409
    assert "already cancelled" in again.json()["detail"]
    assert client.get(f"/jobs/{job_id}/result.csv").status_code == 409
    assert client.post("/jobs/0123456789abcdef/cancel").status_code == 404
    assert client.delete(f"/jobs/{job_id}").status_code == 204
    assert not (job_settings.jobs.dir / job_id).exists()


@pytest.mark.slow
def test_a_running_job_stops_and_stays_cancelled(client, job_settings, rclient, clip):
    """No worker at first: the runner publishes `queue_windows` windows and waits; cancelled there, it must stop,
    free its lease, and a worker that later scores the windows already on the bus must not revive the job."""
    job_id = upload(client, clip).json()["id"]
    with running_ingester(job_settings, "ingest-a") as ingester:
        wait_job(client, job_id, ("running",), 30)
        wait_for(lambda: topics.camera_backlog(rclient, keys.job_stream(job_id)) > 0, 30, "windows on the bus")
        assert client.post(f"/jobs/{job_id}/cancel").json()["state"] == "cancelled"
        wait_for(lambda: ingester.jobs.running() == [], 10, "the ingester to stop the job")
        seq_key = keys.camera_seq_key(keys.job_stream(job_id))
        published = int(rclient.get(seq_key))
        time.sleep(1.0)  # a runner still reading would publish more windows now
        assert int(rclient.get(seq_key)) == published
        with running_worker(job_settings, "worker-a"):
            wait_for(lambda: topics.camera_backlog(rclient, keys.job_stream(job_id)) == 0, 30, "in-flight windows")
            time.sleep(0.5)
    job = client.get(f"/jobs/{job_id}").json()
    assert job["state"] == "cancelled"
    assert job["frames_scored"] < job["frames_total"]
    assert rclient.sismember(keys.JOBS_ACTIVE, job_id) == 0
    assert client.delete(f"/jobs/{job_id}").status_code == 204


def test_ended_jobs_are_removed_after_their_retention(job_settings, rclient):
    from service.jobs.retention import sweep_ended_jobs
    from service.messages import JobRecord

    now = 1_000_000.0
    day = 24 * 3600.0
    records = {
        "0000000000000001": ("done", now - 40 * day),  # past retention: removed
        "0000000000000002": ("cancelled", now - 31 * day),  # past retention: removed
        "0000000000000003": ("failed", now - 2 * day),  # recent: kept
        "0000000000000004": ("running", None),  # active: never touched
    }
    for job_id, (state, finished) in records.items():
        job = JobRecord(
            id=job_id, state=state, model="tiny@v1", source="path", name="a.mp4", input="/x", finished_ts=finished
        )
        assert topics.put_job(rclient, job)
        (job_settings.jobs.dir / job_id).mkdir(parents=True)
    jobs = job_settings.jobs.model_copy(update={"retention_s": int(30 * day)})
    assert sorted(sweep_ended_jobs(rclient, jobs, now=now)) == ["0000000000000001", "0000000000000002"]
    assert sorted(j.id for j in topics.list_jobs(rclient)) == ["0000000000000003", "0000000000000004"]
    assert sorted(p.name for p in job_settings.jobs.dir.iterdir()) == ["0000000000000003", "0000000000000004"]
    assert sweep_ended_jobs(rclient, jobs.model_copy(update={"retention_s": 0}), now=now + 100 * day) == []
