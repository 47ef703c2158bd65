"""Bad job requests get a clear 4xx and leave nothing behind: no folder, no file, no record, nothing in the temp dir.

Only the API runs here (no ingester, no worker), on the real Redis and a real model store.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from models.io import build_card, save_model
from models.store import ModelStore
from service.bus import keys
from service.settings import ApiSettings
from tests.service.jobs.conftest import MODEL_REF, upload

ADMIN, VIEWER = "admin-key-0123456789", "viewer-key-0123456789"


@pytest.fixture
def api(job_settings, make_client, monkeypatch, tmp_path):
    """A client with keys; the process temp dir points at an empty folder so any spooling would show."""
    spool = tmp_path / "system-tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    settings = job_settings.model_copy(update={"api": ApiSettings(admin_keys=[ADMIN])})
    client = make_client(settings)
    client.headers["X-API-Key"] = ADMIN
    return client, settings, spool


def _left_nothing(settings, spool: Path, rclient) -> None:
    jobs_dir = settings.jobs.dir
    assert not jobs_dir.exists() or list(jobs_dir.iterdir()) == [], list(jobs_dir.iterdir())
    assert list(spool.iterdir()) == []
    assert rclient.zcard(keys.JOBS_INDEX) == 0
    assert rclient.scard(keys.JOBS_ACTIVE) == 0


def test_upload_that_is_not_a_video_is_refused(api, rclient, tmp_path):
    client, settings, spool = api
    for name, data in [("notes.txt", b"hello\n" * 1000), ("fake.mp4", bytes(range(256)) * 64)]:
        path = tmp_path / name
        path.write_bytes(data)
        r = upload(client, path)
        assert r.status_code == 415, r.text
        assert name in r.json()["detail"]
        assert "not a video" in r.json()["detail"]
        assert str(tmp_path) not in r.json()["detail"]  # no server paths in errors
    _left_nothing(settings, spool, rclient)


def test_upload_over_the_size_limit_is_refused_and_removed(api, rclient, clip):
    client, settings, spool = api
    size = clip.stat().st_size
    for limit in (size // 2, size // 200):  # streamed past the limit; refused from Content-Length alone
        limited = settings.model_copy(update={"jobs": settings.jobs.model_copy(update={"max_upload_bytes": limit})})
        client.app.state.settings = limited
        r = upload(client, clip)
        assert r.status_code == 413, r.text
        assert f"limit of {limit} bytes" in r.json()["detail"]
        assert "VIGIL_JOBS__MAX_UPLOAD_BYTES" in r.json()["detail"]
    _left_nothing(settings, spool, rclient)


def test_paths_outside_the_footage_root_are_refused(api, rclient, tmp_path, clip):
    client, settings, spool = api
    root = settings.footage_root
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(clip.read_bytes())
    (root / "link.mp4").symlink_to(outside)
    (root / "sub").mkdir()
    (root / "sub" / "up").symlink_to(tmp_path)
    cases = {
        "../secret.mp4": 403,
        "sub/../../secret.mp4": 403,
        str(outside): 403,
        "/etc/passwd": 403,
        "link.mp4": 403,  # a symlink inside pointing out
        "sub/up/secret.mp4": 403,  # a directory symlink on the way
        "missing.mp4": 404,
    }
    for path, status in cases.items():
        r = client.post("/jobs", json={"path": path, "model": MODEL_REF})
        assert r.status_code == status, (path, r.text)
        assert path in r.json()["detail"]
    (root / "notes.txt").write_text("hello")
    r = client.post("/jobs", json={"path": "notes.txt", "model": MODEL_REF})
    assert r.status_code == 415, r.text
    _left_nothing(settings, spool, rclient)


def test_path_job_without_footage_root_says_how_to_set_it(api, rclient):
    client, settings, spool = api
    client.app.state.settings = settings.model_copy(update={"footage_root": None})
    r = client.post("/jobs", json={"path": "clip.mp4", "model": MODEL_REF})
    assert r.status_code == 400
    assert "VIGIL_FOOTAGE_ROOT" in r.json()["detail"]
    _left_nothing(settings, spool, rclient)


def test_unknown_or_uncalibrated_model_is_refused_before_anything_is_written(api, rclient, clip, job_model):
    client, settings, spool = api
    r = upload(client, clip, model="nope@v1")
    assert r.status_code == 404
    assert "tiny" in r.json()["detail"]  # names the models that exist
    r = upload(client, clip, model="tiny@v9")
    assert r.status_code == 404
    assert "production" in r.json()["detail"]
    shutil.copy(clip, settings.footage_root / clip.name)
    r = client.post("/jobs", json={"path": clip.name, "model": "nope"})
    assert r.status_code == 404
    assert "tiny" in r.json()["detail"]
    save_model(ModelStore(job_model.root), job_model.method, build_card(job_model.method, "raw"))
    r = upload(client, clip, model="raw")
    assert r.status_code == 422
    assert "no calibration" in r.json()["detail"]
    _left_nothing(settings, spool, rclient)


def test_malformed_requests(api, rclient, clip):
    client, settings, spool = api
    with clip.open("rb") as f:  # the model must come before the file, so nothing is written for a bad one
        r = client.post("/jobs", files={"file": ("clip.mp4", f, "video/mp4")})
    assert r.status_code == 422
    assert "model" in r.json()["detail"]
    r = client.post("/jobs", data={"model": MODEL_REF}, files={"other": ("x.bin", b"123")})
    assert r.status_code == 400
    assert "`file` part" in r.json()["detail"]
    r = client.post("/jobs", content=b"--x\r\nnonsense", headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 400
    r = client.post("/jobs", content=b"x", headers={"content-type": "multipart/form-data"})
    assert r.status_code == 400
    assert "boundary" in r.json()["detail"]
    r = client.post("/jobs", content=b"abc", headers={"content-type": "video/mp4"})
    assert r.status_code == 415
    r = client.post("/jobs", json={"path": "a.mp4", "model": MODEL_REF, "extra": 1})
    assert r.status_code == 422
    r = client.post("/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    _left_nothing(settings, spool, rclient)


def test_keys_and_unknown_jobs(api, rclient, clip):
    client, settings, spool = api
    r = client.post("/jobs", json={"path": "a.mp4", "model": MODEL_REF}, headers={"X-API-Key": ""})
    assert r.status_code == 401
    r = client.post("/jobs", json={"path": "a.mp4", "model": MODEL_REF}, headers={"X-API-Key": VIEWER})
    assert r.status_code == 401  # unknown key (no viewer keys configured)
    unknown = "0123456789abcdef"
    for suffix in ("", "/result.csv", "/result.json", "/timeline.png", "/alerts"):
        r = client.get(f"/jobs/{unknown}{suffix}")
        assert r.status_code == 404, suffix
        assert unknown in r.json()["detail"]
    assert client.delete(f"/jobs/{unknown}").status_code == 404
    assert client.get("/jobs/..%2F..%2Fetc").status_code in (404, 422)
    assert client.get("/jobs/not-a-job-id").status_code == 422
    assert client.get("/jobs").json() == []
    _left_nothing(settings, spool, rclient)


def test_results_of_a_queued_job_are_a_conflict(api, rclient, clip):
    """Accepted, but with no ingester running it stays queued: results answer 409 saying why."""
    client, settings, _ = api
    r = upload(client, clip)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["state"] == "queued"
    assert job["frames_total"] > 0
    assert job["progress"] == 0.0
    folder = settings.jobs.dir / job["id"]
    assert [p.name for p in folder.iterdir()] == ["input.mp4"]
    assert (folder / "input.mp4").read_bytes() == clip.read_bytes()
    r = client.get(f"/jobs/{job['id']}/result.csv")
    assert r.status_code == 409
    assert "queued" in r.json()["detail"]
    assert rclient.sismember(keys.JOBS_ACTIVE, job["id"])
    r = client.delete(f"/jobs/{job['id']}")
    assert r.status_code == 409
    assert "queued" in r.json()["detail"]
    assert folder.is_dir()
