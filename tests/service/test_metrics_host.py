"""The ingester's and worker's /metrics (it lists camera ids) listen where the operator says, loopback by default."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from service.ingest.ingester import Ingester
from service.settings import IngestSettings, Settings, WorkerSettings
from tests.conftest import free_port
from tests.service.processes import running


def test_loopback_by_default() -> None:
    assert IngestSettings().metrics_host == "127.0.0.1"
    assert WorkerSettings().metrics_host == "127.0.0.1"


def test_the_ingester_serves_metrics_on_its_metrics_host_only(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(
        redis={"url": redis_url},
        store={"root": tmp_path},
        ingest={"metrics_port": port, "metrics_host": "127.0.0.2"},  # another loopback address
    )
    with running(Ingester(settings), "ingester"):
        assert "vigil_ingest_cameras_owned" in httpx.get(f"http://127.0.0.2:{port}/metrics", timeout=5).text
        with pytest.raises(httpx.ConnectError):  # a 0.0.0.0 listener would answer here too
            httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
