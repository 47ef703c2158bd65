"""What-if replay of a day of one camera: how long `POST /cameras/{id}/replay` takes, and what the archive costs.

Fills a private redis-server with `--hours` of one camera's archive at `--fps` through the worker's own append path
(8-frame windows into 256-frame chunks; realistic scores with a few hundred anomalous bursts), then times the
replay through the real API route (FastAPI TestClient: JSON in and out, Redis read, decode, alert machine) and its
parts, and reports Redis memory per archived frame.

    .venv/bin/python bench/replay.py --hours 24 --fps 10
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient

from service.alerts.machine import ScoreRun, replay
from service.api.app import create_app
from service.bus import topics
from service.bus.topics.calibration import encode_records
from service.messages import AlertParams, CameraConfig
from service.settings import RedisSettings, Settings

WINDOW = 8
CAMERA = "bench"


def _redis() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("redis-server is not installed")
    proc = subprocess.Popen([exe, "--port", str(port), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            return proc, url
        except redis.ConnectionError:
            time.sleep(0.05)
    sys.exit("redis-server did not start")


def fill(r: redis.Redis, hours: float, fps: float, seed: int = 0) -> tuple[int, float, float]:
    """Write the archive; returns (frames, start ts, end ts)."""
    n = int(hours * 3600 * fps) // WINDOW * WINDOW
    rng = np.random.default_rng(seed)
    start = time.time() - hours * 3600
    ts = start + np.arange(n) / fps
    scores = np.clip(rng.normal(0.18, 0.05, n), 0.0, 0.99)
    for s in rng.integers(0, n - 100, 300):  # a few hundred bursts above a 0.5 threshold
        scores[s : s + int(rng.integers(3, 60))] = rng.uniform(0.5, 0.95)
    raw = rng.normal(0.0, 1.0, (n, 1)).astype(np.float32)
    flags = np.ones(n, dtype=np.uint8)  # alertable, ready, colour
    pipe = r.pipeline(transaction=False)
    for i in range(0, n, WINDOW):
        sl = slice(i, i + WINDOW)
        frames = np.arange(i, i + WINDOW, dtype=np.int64)
        zero = np.zeros(WINDOW)
        payload = encode_records(frames, ts[sl], scores[sl], scores[sl], scores[sl], zero, flags[sl], raw[sl])
        topics.append_signals(pipe, CAMERA, "bench@v1", 1, payload, float(ts[i]), retention_s=int(hours * 3600) + 3600)
        if len(pipe) >= 2000:
            pipe.execute()
    pipe.execute()
    return n, float(ts[0]), float(ts[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    proc, url = _redis()
    try:
        r = redis.Redis.from_url(url)
        before = int(r.info("memory")["used_memory"])
        n, start, end = fill(r, args.hours, args.fps)
        used = int(r.info("memory")["used_memory"]) - before
        entries = r.xlen(f"vigil:cam:{CAMERA}:signals")
        print(f"archive: {n:,} frames ({args.hours:g} h at {args.fps:g} fps) in {entries:,} entries + an open chunk")
        print(f"  Redis memory {used / 2**20:.1f} MiB = {used / n:.1f} bytes per frame")
        settings = Settings(redis=RedisSettings(url=url))  # type: ignore[arg-type]
        topics.put_camera(r, CameraConfig(id=CAMERA, url="rtsp://cam.example/1", model="bench@v1"))
        params = AlertParams(threshold=0.5, hysteresis=0.1, min_duration_frames=5, cooldown_frames=25)
        with TestClient(create_app(settings)) as client:
            body = {"start": start, "end": end + 1, "threshold": 0.6}
            for k in range(args.rounds):
                t0 = time.perf_counter()
                resp = client.post(f"/cameras/{CAMERA}/replay", json=body)
                total = time.perf_counter() - t0
                resp.raise_for_status()
                t1 = time.perf_counter()
                records = topics.read_signals(r, CAMERA, start, end + 1)
                t2 = time.perf_counter()
                alerts, _ = replay(
                    ScoreRun.held(records.frames, records.ts, records.scores, records.alertable), params, CAMERA, "m"
                )
                t3 = time.perf_counter()
                result = resp.json()
                print(
                    f"round {k + 1}: POST /cameras/{CAMERA}/replay {total:.3f} s for {result['frames']:,} frames "
                    f"({len(result['alerts'])} alerts at threshold 0.6); parts: read + decode {t2 - t1:.3f} s, "
                    f"alert machine {t3 - t2:.3f} s ({len(alerts)} alerts at 0.5)"
                )
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
