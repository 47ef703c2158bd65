"""Frame-to-score latency (capture -> score published) p50/p99 with 1, 4 and 16 simulated cameras.

    .venv/bin/python bench/latency.py --preset tiny --cameras 1 4 16 --seconds 8

Each simulated camera is a file camera paced at its native 25 fps (`realtime`), added through the REST API of
`vigil up`'s processes on a private redis-server. Latency per frame = ScoreMsg.published_ts - capture_ts, so it
includes waiting for the window to fill (WINDOW frames = 280 ms for the first frame of a window at 25 fps).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import redis
from pipeline import WINDOW, add_cameras, register_untrained, scored, stack_env, start_redis, synthetic_clip

from cli.up import Stack, free_port, stop_process
from service.bus import topics

FPS = 25


def measure(api: str, r: redis.Redis, clip: Path, model: str, count: int, per_camera: int, timeout_s: float) -> dict:
    """Add `count` realtime cameras, wait until every frame is scored, return latency percentiles (ms)."""
    cameras = add_cameras(api, clip, model, count, realtime=True, prefix=f"n{count}-")
    deadline = time.monotonic() + timeout_s
    while scored(r, cameras) < per_camera * count and time.monotonic() < deadline:
        time.sleep(0.2)
    latencies = []
    for cam in cameras:
        latencies += [s.published_ts - s.capture_ts for _, s in topics.read_scores(r, cam, count=None)]
    for cam in cameras:
        httpx.delete(f"{api}/cameras/{cam}", timeout=10)
    ms = np.array(latencies) * 1000
    return {
        "cameras": count,
        "frames": len(ms),
        "expected_frames": per_camera * count,
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seconds", type=float, default=8.0, help="clip length per camera")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vigil-latency-"))
    redis_proc, url = start_redis()
    try:
        model, method = register_untrained(work / "registry", args.preset)
        frames = int(args.seconds * FPS)
        clip = synthetic_clip(work / "clip.mp4", frames)
        env = stack_env(url, work / "registry", work, args.batch)
        r = redis.Redis.from_url(url)
        with Stack(redis_url=url, api_port=free_port(), env=env, start_redis=False, log_path=work / "log") as stack:
            stack.wait_ready(120)
            per_camera = frames - method.input_spec.context  # type: ignore[attr-defined]
            # Warm-up round (not reported): the worker loads the model on its first window, which takes seconds.
            measure(stack.api_url, r, clip, model, 1, per_camera, timeout_s=args.seconds * 10 + 60)
            for count in args.cameras:
                result = measure(stack.api_url, r, clip, model, count, per_camera, timeout_s=args.seconds * 10 + 60)
                print(json.dumps({"preset": args.preset, "window": WINDOW, "batch": args.batch, **result}), flush=True)
    finally:
        stop_process(redis_proc, "redis-server", 5)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
