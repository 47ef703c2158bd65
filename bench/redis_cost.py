"""Benchmark: what one camera costs Redis at steady state, and where one Redis instance would saturate.

For each camera count, a fresh Redis and `vigil up`'s processes (FFP `tiny` with random weights, windows of 8 frames)
play file cameras in real time at 25 fps (320x240 H.264); after a warm-up, Redis's own counters are read at the
start and the end of a measurement window: commands processed, network bytes in and out, CPU seconds of the Redis
process (`INFO cpu`: main thread and I/O, user + system) and `used_memory`. Per camera and per scored frame they are
what a deployment sizes Redis by; the saturation estimate is the camera count at which the Redis process would need
one whole core (a Redis instance executes commands on one thread), extrapolated from the measured CPU per camera.

    .venv/bin/python bench/redis_cost.py                    # 1, 4 and 8 cameras, 40 s each after 20 s of warm-up
    .venv/bin/python bench/redis_cost.py --cameras 2 --measure-s 20

On a 2-core machine the worker (not Redis) is what falls behind first as cameras are added; the `kept up` column
says whether every camera was scored at its frame rate during the window, and the per-frame costs hold either way.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import add_cameras, register_untrained, scored, stack_env, start_redis, synthetic_clip

from cli.up import Stack, free_port, stop_process

FPS = 25.0  # synthetic_clip's rate


def counters(r: redis.Redis) -> dict[str, float]:
    """Redis's cumulative counters that the cost is the difference of, and its memory now."""
    info: dict[str, Any] = r.info("all")
    return {
        "commands": float(info["total_commands_processed"]),
        "net_in": float(info["total_net_input_bytes"]),
        "net_out": float(info["total_net_output_bytes"]),
        "cpu_s": float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
        "memory": float(info["used_memory"]),
    }


def measure(count: int, warmup_s: float, measure_s: float, work: Path) -> dict[str, Any]:
    """One run with `count` real-time file cameras; the costs over `measure_s` seconds after `warmup_s`."""
    redis_proc, url = start_redis()
    try:
        model, _ = register_untrained(work / f"registry-{count}", "tiny")
        footage = work / "footage"
        footage.mkdir(exist_ok=True)
        clip = footage / "clip.mp4"
        if not clip.exists():  # long enough to outlast warm-up and measurement at 25 fps
            synthetic_clip(clip, int((warmup_s + measure_s + 30) * FPS), size=(240, 320))
        env = stack_env(url, work / f"registry-{count}", footage, batch=8)
        r = redis.Redis.from_url(url)
        with Stack(redis_url=url, api_port=free_port(), env=env, start_redis=False, log_path=work / "log") as stack:
            stack.wait_ready(120)
            cameras = add_cameras(stack.api_url, clip, model, count, realtime=True)
            time.sleep(warmup_s)
            before, frames_before, t0 = counters(r), scored(r, cameras), time.perf_counter()
            time.sleep(measure_s)
            after, frames_after, t1 = counters(r), scored(r, cameras), time.perf_counter()
    finally:
        stop_process(redis_proc, "redis-server", 5)
    seconds = t1 - t0
    frames = frames_after - frames_before
    per_s = {k: (after[k] - before[k]) / seconds for k in ("commands", "net_in", "net_out", "cpu_s")}
    cpu_per_camera = per_s["cpu_s"] / count
    return {
        "cameras": count,
        "seconds": round(seconds, 1),
        "frames_per_s": round(frames / seconds, 1),
        "kept_up": frames / seconds >= 0.95 * FPS * count,
        "per_camera": {
            "commands_per_s": round(per_s["commands"] / count, 1),
            "bytes_in_per_s": round(per_s["net_in"] / count),
            "bytes_out_per_s": round(per_s["net_out"] / count),
            "redis_cpu_ms_per_s": round(cpu_per_camera * 1000, 2),
            "memory_growth_kb_per_min": round((after["memory"] - before["memory"]) / seconds * 60 / 1024 / count, 1),
        },
        "per_frame": {
            "commands": round(per_s["commands"] * seconds / max(frames, 1), 2),
            "bytes_in": round(per_s["net_in"] * seconds / max(frames, 1)),
            "bytes_out": round(per_s["net_out"] * seconds / max(frames, 1)),
        },
        "memory_mb_at_end": round(after["memory"] / 1024**2, 1),
        "cameras_at_one_redis_core": round(1.0 / cpu_per_camera) if cpu_per_camera > 0 else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--warmup-s", type=float, default=20.0)
    parser.add_argument("--measure-s", type=float, default=40.0)
    parser.add_argument("--out", type=Path, default=None, help="write the results here (JSON)")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed (Debian: apt-get install redis-server)")
    work = Path(tempfile.mkdtemp(prefix="vigil-redis-cost-"))
    results = []
    try:
        for count in args.cameras:
            results.append(measure(count, args.warmup_s, args.measure_s, work))
            print(json.dumps(results[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
