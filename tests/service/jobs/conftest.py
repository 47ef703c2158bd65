"""Job test fixtures: a tiny trained FFP in a store, a Ped2 test clip as mp4 (synthetic without the dataset),
settings on the private Redis with their own jobs dir and footage root, API clients, ingesters and workers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from models.data.video import list_images
from models.store import ModelStore
from service.api.app import create_app
from service.ingest.ingester import Ingester
from service.settings import Settings
from tests.conftest import PED2
from tests.service.processes import running
from tests.service.worker.helpers import FAST_WORKER, running_worker
from tests.service.worker.models_util import MODEL, TrainedModel, register_version
from tests.synthetic import write_video

PED2_CLIP = PED2 / "testing" / "frames" / "01"
MODEL_REF = f"{MODEL}@production"


@pytest.fixture(scope="session")
def job_model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """Registry with `tiny@v1` (calibrated, promoted to production). Not the shared `trained_store`: a bad-input
    test registers an uncalibrated `raw@v1` here."""
    root = tmp_path_factory.mktemp("registry")
    model = register_version(root, seed=100)
    ModelStore(root).promote(f"{MODEL}@v1")
    return model


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory, synthetic_video: tuple[Path, np.ndarray]) -> Path:
    """Ped2 test clip 01 (180 frames, 360x240) encoded to H.264 mp4, or the synthetic clip without the dataset."""
    if not PED2_CLIP.is_dir():
        return synthetic_video[0]
    frames = np.stack([cv2.imread(str(p), cv2.IMREAD_COLOR) for p in list_images(PED2_CLIP)])
    return write_video(tmp_path_factory.mktemp("ped2") / "ped2-test-01.mp4", frames)


@pytest.fixture
def job_settings(redis_url: str, job_model: TrainedModel, tmp_path: Path) -> Settings:
    (tmp_path / "footage").mkdir()
    return Settings(
        redis={"url": redis_url, "startup_wait_s": 5},
        store={"root": job_model.root},
        jobs={"dir": tmp_path / "jobs", "queue_windows": 4},
        footage_root=tmp_path / "footage",
        ingest={"window_frames": 8, "lease_ttl_s": 1.5, "heartbeat_ttl_s": 1.5, "metrics_port": 0},
        worker=FAST_WORKER,
    )


@pytest.fixture
def make_client() -> Iterator[Callable[..., TestClient]]:
    """Factory: make_client(settings) -> a started TestClient (lifespan run), closed at teardown."""
    clients: list[TestClient] = []

    def make(settings: Settings) -> TestClient:
        client = TestClient(create_app(settings))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def running_ingester(settings: Settings, ingester_id: str) -> AbstractContextManager[Ingester]:
    """An Ingester in a background thread; stopped (leases released) and joined on exit."""
    return running(Ingester(settings, ingester_id=ingester_id), f"ingester {ingester_id}")


@contextmanager
def running_stack(settings: Settings) -> Iterator[None]:
    """One ingester and one worker, as `vigil up` runs them (threads here, same code)."""
    with running_ingester(settings, "ingest-a"), running_worker(settings, "worker-a"):
        yield


def wait_job(client: TestClient, job_id: str, states: tuple[str, ...], timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body = client.get(f"/jobs/{job_id}").json()
        if body["state"] in states:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {body['state']} after {timeout_s} s: {body}")
        time.sleep(0.1)


def upload(client: TestClient, path: Path, model: str = MODEL_REF, **kw: Any) -> Any:
    with path.open("rb") as f:
        return client.post("/jobs", data={"model": model}, files={"file": (path.name, f, "video/mp4")}, **kw)
