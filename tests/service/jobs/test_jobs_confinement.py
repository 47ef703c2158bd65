"""A job on a path under the footage root reads that one file: an HLS playlist or a concat list there that names a
file outside the root is refused (415) before any frame is read, and the job runner's reader refuses it too."""

from __future__ import annotations

import pytest

from models.data.video import NotSelfContainedError, open_video
from service.bus import keys
from tests.service.ingest.test_confinement import write_escapes
from tests.service.jobs.conftest import MODEL_REF


@pytest.mark.parametrize("kind", ["hls", "concat"])
def test_path_jobs_on_playlists_are_refused(job_settings, make_client, rclient, tmp_path, kind):
    root = job_settings.footage_root
    root.mkdir(parents=True, exist_ok=True)
    (tmp_path / "outside").mkdir()
    escapes = write_escapes(root, tmp_path / "outside")
    client = make_client(job_settings)
    r = client.post("/jobs", json={"path": escapes[kind].name, "model": MODEL_REF})
    assert r.status_code == 415, r.text
    assert "not a self-contained video file" in r.json()["detail"]
    assert str(tmp_path) not in r.text  # the client sees its own file name, no server path
    assert rclient.zcard(keys.JOBS_INDEX) == 0
    with pytest.raises(NotSelfContainedError):  # what the ingester's job runner opens a path job with
        list(open_video(escapes[kind]).iter_frames())
