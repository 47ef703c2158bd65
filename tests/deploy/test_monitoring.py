"""Every Grafana panel's PromQL returns data from a real Prometheus (Debian `prometheus`) scraping a real stack.

The stack (api + ingest + worker, `vigil up`'s Stack on a private Redis) scores a file camera with an anomalous
span, decimated to half its frame rate (so frames are dropped and alerts fire), next to a broken RTSP camera (so
the errors, reconnects and stream-state panels have something to show). Prometheus scrapes each process every 1 s.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from cli.up import Stack, stop_process
from tests.conftest import free_port
from tests.integration.conftest import model_root, stack_env  # noqa: F401  (model_root: fixture)
from tests.service.worker.models_util import MODEL
from tests.synthetic import render_frames, write_video

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards" / "vigil.json"
CUDA = torch.cuda.is_available()  # the worker runs on CUDA when there is one, so the GPU panel is checked there
# Panels that cannot have data here, and why. Everything else must return at least one finite sample.
SKIPPED = {} if CUDA else {"GPU memory": "no CUDA here: vigil_worker_gpu_memory_bytes is set only by CUDA workers"}
CLIP_FRAMES = 500  # 20 s at 25 fps played in real time: scores keep flowing while the queries run
CLIP_SPAN = (60, 90)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs the Debian package prometheus"),
]


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel, rows included."""
    found: list[tuple[str, str]] = []
    for panel in dashboard.get("panels", []):
        found.extend(panel_queries(panel))  # a row's nested panels
        found.extend((panel["title"], t["expr"]) for t in panel.get("targets", []) if t.get("expr"))
    return found


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("footage")
    frames, _ = render_frames(CLIP_FRAMES, (64, 64), CLIP_SPAN)
    return write_video(root / "clip.mp4", frames)


@pytest.fixture
def stack(redis_url: str, model_root: Path, clip: Path) -> Iterator[Stack]:  # noqa: F811
    device = "cuda" if CUDA else "cpu"
    env = stack_env(redis_url, model_root, VIGIL_FOOTAGE_ROOT=str(clip.parent), VIGIL_WORKER__DEVICE=device)
    with Stack(redis_url=redis_url, api_port=free_port(), metrics_port="auto", start_redis=False, env=env) as s:
        s.wait_ready(90)
        yield s


def _prometheus_config(stack: Stack) -> dict[str, Any]:
    targets = {
        "vigil-api": f"{stack.api_host}:{stack.api_port}",
        "vigil-ingest": f"127.0.0.1:{stack.child_ports['ingest']}",
        "vigil-worker": f"127.0.0.1:{stack.child_ports['worker']}",
    }
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [t]}]} for job, t in targets.items()],
    }


@pytest.fixture
def prometheus(stack: Stack, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus scraping the stack every second; yields its base URL."""
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps(_prometheus_config(stack)))  # JSON is YAML
    port = free_port()
    argv = [
        "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: httpx.get(f"{url}/-/ready", timeout=1).status_code == 200, 20, "Prometheus to start", proc)
        yield url
    finally:
        stop_process(proc, "prometheus", 5.0)


def _wait(ok: Any, timeout_s: float, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(f"{what}: process exited with {proc.returncode}: {err[-2000:]}")
        try:
            if ok():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def query(prometheus: str, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """Instant query through the HTTP API (what Grafana's Prometheus datasource sends); the result vector."""
    params: dict[str, str | float] = {"query": expr} if at is None else {"query": expr, "time": at}
    r = httpx.get(f"{prometheus}/api/v1/query", params=params, timeout=5)
    body = r.json()
    assert r.status_code == 200, f"{expr}: {body.get('error', r.text)}"  # a PromQL syntax error fails here
    assert body["data"]["resultType"] == "vector", expr
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _has_data(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(sample["value"][1])) for sample in result)


def test_every_dashboard_query_returns_data(stack: Stack, prometheus: str, clip: Path) -> None:
    cameras = [
        {"id": "lobby", "url": str(clip), "model": MODEL, "kind": "file", "target_fps": 12.5},  # decimation drops
        {"id": "broken", "url": f"rtsp://127.0.0.1:{free_port()}/nothing", "model": MODEL},  # refused: errors
    ]
    for camera in cameras:
        r = httpx.post(f"{stack.api_url}/cameras", json=camera, timeout=10)  # dev stack: no keys, writes open
        assert r.status_code == 201, r.text
    # The clip is shorter than a camera's learning period: score it on the model card's reference at once.
    r = httpx.post(f"{stack.api_url}/cameras/lobby/calibration", json={"source": "card"}, timeout=10)
    assert r.status_code == 200, r.text

    every = panel_queries(json.loads(DASHBOARD.read_text()))
    queries = [(title, expr) for title, expr in every if title not in SKIPPED]
    assert len(queries) >= 15, f"the dashboard lost panels: {[t for t, _ in queries]}"
    missing: dict[str, str] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        missing = {title: expr for title, expr in queries if not _has_data(query(prometheus, expr))}
        if not missing:
            break
        time.sleep(1.0)
    assert not missing, f"panels without data after 60 s: {json.dumps(missing, indent=1)}"
    # Spot checks that the data means what the panels say.
    dropped = query(prometheus, 'sum by (reason) (vigil_ingest_frames_dropped_total{camera="lobby"})')
    assert any(s["metric"]["reason"] == "decimation" and float(s["value"][1]) > 0 for s in dropped), dropped
    opened = query(prometheus, 'sum(vigil_alerts_total{event="opened"})')
    assert float(opened[0]["value"][1]) >= 1, "the anomalous span opened an alert"
    # The stat panel counts it although the series first appeared at 1 (plain increase() would say 0).
    stat = dict(queries)["Alerts opened (1h)"]
    at = float(opened[0]["value"][0])  # the same evaluation time: an alert opening in between cannot skew it
    assert float(query(prometheus, stat, at)[0]["value"][1]) == float(opened[0]["value"][1])
    errors = query(prometheus, 'vigil_errors_total{component="ingest"}')
    assert errors, "the broken camera's connection errors are counted"
    states = query(prometheus, 'vigil_ingest_stream_state{camera="broken"} == 1')
    assert {s["metric"]["state"] for s in states} <= {"connecting", "error"}, states
