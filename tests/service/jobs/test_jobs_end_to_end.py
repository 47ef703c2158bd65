"""Jobs end to end on a real Redis, with the real ingester and worker: same scores as `vigil score`, restarts.

The clip is Ped2 test clip 01 encoded to mp4 (the synthetic clip when the dataset is absent); the model is a
tiny FFP trained for a few seconds and calibrated, registered in a temporary store.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil
import time

import numpy as np
import pytest

from models.inference import score_file
from models.io import load_model
from models.store import ModelStore
from service.bus import keys, topics
from tests.calibration_util import card_camera_reference, offline_scores
from tests.service.jobs.conftest import (
    MODEL_REF,
    running_ingester,
    running_stack,
    upload,
    wait_job,
)
from tests.service.worker.helpers import running_worker

# The worker scores windows of 8 frames in batches of up to 4 windows; `vigil score` scores windows of 16 in
# batches of 8. FFP scores each frame from its own 4 context frames, so only the batch shapes differ. On this
# CPU the results are bit-identical (measured); rtol 1e-5 / atol 1e-6 only leaves room for a BLAS/oneDNN build
# that picks its float32 reduction order by batch shape. Any real difference (a wrong frame, a decimated or
# re-decoded pixel, a restarted EMA) moves scores by orders of magnitude more.
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def offline(clip, job_model):
    """What `vigil score` computes for the clip with the same model: the camera path on the card's reference (the
    default calibration of both `vigil score` and jobs)."""
    method, card, version = load_model(ModelStore(job_model.root), MODEL_REF, "cpu")
    scored = score_file(method, card, clip)
    assert card.calibration is not None
    reference = card_camera_reference(card.calibration, version.ref)
    camera = offline_scores(card.calibration, version.ref, scored.raw[scored.context :].astype(np.float64), reference)
    scores = scored.scores.copy()
    scores[scored.context :] = camera.scores
    return dataclasses.replace(scored, scores=scores), version.ref


@pytest.mark.slow
def test_upload_and_path_jobs_match_vigil_score_and_survive_api_restart(
    job_settings, make_client, rclient, clip, offline
):
    scored, ref = offline
    shutil.copy(clip, job_settings.footage_root / clip.name)
    client = make_client(job_settings)
    with running_stack(job_settings):
        created = upload(client, clip)
        assert created.status_code == 201, created.text
        by_path = client.post("/jobs", json={"path": clip.name, "model": MODEL_REF})
        assert by_path.status_code == 201, by_path.text
        ids = [created.json()["id"], by_path.json()["id"]]
        assert created.headers["location"] == f"/jobs/{ids[0]}"
        assert created.json()["model"] == ref  # pinned at submission
        for job_id in ids:
            done = wait_job(client, job_id, ("done", "failed"), 120)
            assert done["state"] == "done", done

    restarted = make_client(job_settings)  # a new API process: state in Redis, files on disk
    listed = restarted.get("/jobs").json()
    assert [j["id"] for j in listed] == ids[::-1]  # newest first
    for job_id in ids:
        job = restarted.get(f"/jobs/{job_id}").json()
        n, ctx = scored.num_frames, scored.context
        assert (job["frames_total"], job["context"], job["frames_scored"]) == (n, ctx, n - ctx)
        assert job["progress"] == 1.0
        document = restarted.get(f"/jobs/{job_id}/result.json").json()
        records = document["frames"]
        assert [r["frame"] for r in records] == list(range(n))
        assert all(r["score"] is None and r["raw"] is None for r in records[:ctx])
        got = np.array([r["score"] for r in records[ctx:]])
        np.testing.assert_allclose(got, scored.scores[ctx:], rtol=RTOL, atol=ATOL)
        raw = np.array([[r["raw"][s] for s in scored.signal_names] for r in records[ctx:]])
        np.testing.assert_allclose(raw, scored.raw[ctx:], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose([r["pts"] for r in records], scored.pts, atol=1e-6)
        assert document["model"] == ref
        assert document["signal_names"] == list(scored.signal_names)

        table = list(csv.reader(io.StringIO(restarted.get(f"/jobs/{job_id}/result.csv").text)))
        assert table[0] == ["frame", "pts", "score", "alertable", *scored.signal_names]  # the columns of `vigil score`
        assert len(table) == n + 1
        np.testing.assert_allclose([float(row[2]) for row in table[1 + ctx :]], scored.scores[ctx:], atol=2e-6)

        png = restarted.get(f"/jobs/{job_id}/timeline.png")
        assert png.status_code == 200
        assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
        alerts = restarted.get(f"/jobs/{job_id}/alerts").json()
        assert len(alerts) == job["alerts"]
        for alert in alerts:
            assert alert["camera"] == keys.job_stream(job_id)
            assert ctx <= alert["start_frame"] <= alert["peak_frame"] < n
        # the job's score stream is gone once its results are on disk
        assert rclient.exists(keys.score_stream_key(keys.job_stream(job_id))) == 0
    assert rclient.scard(keys.JOBS_ACTIVE) == 0
    deleted = restarted.delete(f"/jobs/{ids[0]}")
    assert deleted.status_code == 204
    assert not (job_settings.jobs.dir / ids[0]).exists()
    assert restarted.get(f"/jobs/{ids[0]}").status_code == 404
    assert [j["id"] for j in restarted.get("/jobs").json()] == [ids[1]]


@pytest.mark.slow
def test_ingester_and_worker_restart_mid_job_lose_and_duplicate_nothing(
    job_settings, make_client, rclient, clip, offline
):
    """Ingester A publishes a few windows while no worker runs, then stops; ingester B resumes the job from
    the next unpublished frame and a worker scores it. Every frame is scored exactly once."""
    scored, _ = offline
    client = make_client(job_settings)
    job_id = upload(client, clip).json()["id"]
    stream = keys.job_stream(job_id)
    with running_ingester(job_settings, "ingest-a"):
        deadline = time.monotonic() + 30
        while topics.camera_backlog(rclient, stream) < job_settings.jobs.queue_windows:  # reader waits on the bus
            assert time.monotonic() < deadline, "the job's first windows were not published"
            time.sleep(0.05)
        time.sleep(0.3)
        assert topics.camera_backlog(rclient, stream) == job_settings.jobs.queue_windows  # WAIT: no more than that
        assert client.get(f"/jobs/{job_id}").json()["state"] == "running"
    with running_worker(job_settings, "worker-a"):  # scores the windows A left, then stops mid-job
        deadline = time.monotonic() + 30
        while topics.camera_backlog(rclient, stream) > 0:
            assert time.monotonic() < deadline, "the worker did not score the first windows"
            time.sleep(0.05)
    with running_ingester(job_settings, "ingest-b"), running_worker(job_settings, "worker-b"):
        done = wait_job(client, job_id, ("done", "failed"), 120)
    assert done["state"] == "done", done
    n, ctx, w = scored.num_frames, scored.context, job_settings.ingest.window_frames
    assert int(rclient.get(keys.camera_seq_key(stream))) == -(-(n - ctx) // w)  # one window per 8 frames, no more
    records = client.get(f"/jobs/{job_id}/result.json").json()["frames"]
    got = np.array([r["score"] for r in records[ctx:]])
    np.testing.assert_allclose(got, scored.scores[ctx:], rtol=RTOL, atol=ATOL)
    assert json.loads(rclient.get(keys.job_key(job_id)))["owner"] == "ingest-b"


@pytest.mark.slow
def test_a_job_that_cannot_finish_fails_with_its_reason(job_settings, make_client, rclient, clip):
    settings = job_settings.model_copy(update={"jobs": job_settings.jobs.model_copy(update={"max_frames": 20})})
    client = make_client(settings)
    job_id = upload(client, clip).json()["id"]
    with running_stack(settings):
        failed = wait_job(client, job_id, ("done", "failed"), 60)
    assert failed["state"] == "failed"
    assert "more than 20 frames" in failed["reason"]
    assert "jobs.max_frames" in failed["reason"]
    r = client.get(f"/jobs/{job_id}/result.csv")
    assert r.status_code == 409
    assert "more than 20 frames" in r.json()["detail"]
    assert not rclient.sismember(keys.JOBS_ACTIVE, job_id)
    scores = keys.score_stream_key(keys.job_stream(job_id))
    assert rclient.ttl(scores) > 0 or not rclient.exists(scores)  # scores still in flight expire with the job
    assert client.delete(f"/jobs/{job_id}").status_code == 204


@pytest.mark.slow
def test_a_path_swapped_for_a_symlink_out_after_submission_is_not_read(job_settings, make_client, tmp_path, clip):
    client = make_client(job_settings)
    inside = job_settings.footage_root / "cam.mp4"
    shutil.copy(clip, inside)
    job_id = client.post("/jobs", json={"path": "cam.mp4", "model": MODEL_REF}).json()["id"]
    inside.unlink()
    inside.symlink_to(clip)  # outside the footage root
    with running_stack(job_settings):
        failed = wait_job(client, job_id, ("done", "failed"), 60)
    assert failed["state"] == "failed"
    assert "outside the footage root" in failed["reason"]
    assert failed["frames_scored"] == 0
