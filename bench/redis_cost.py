"""Benchmark: what one camera costs Redis at steady state, and where one Redis instance would saturate.

For each camera count, a fresh Redis and `vigil up`'s processes (FFP `tiny` with random weights, windows of 8 frames)
play file cameras in real time at 25 fps (320x240 H.264); after a warm-up, Redis's own counters are read at the
start and the end of a measurement window: commands processed, network bytes in and out, CPU seconds of the Redis
process (`INFO cpu`: main thread and I/O, user + system) and `used_memory`. Per camera and per scored frame they are
what a deployment sizes Redis by; the saturation estimate is the camera count at which the Redis process would need
one whole core (a Redis instance executes commands on one thread), extrapolated from the measured CPU per camera.

    .venv/bin/python bench/redis_cost.py                    # 1, 4 and 8 cameras, 40 s each after 20 s of warm-up
    .venv/bin/python bench/redis_cost.py --cameras 2 --measure-s 20
    .venv/bin/python bench/redis_cost.py --cluster 3 --cameras 8   # a local 3-master Redis Cluster, 4 partitions each

With `--cluster N` the counters are summed over the N masters, and `shards` says what share of the commands, of
the Redis CPU and of the memory each master took: how evenly the cameras' partitions spread the load.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import add_cameras, register_untrained, scored, stack_env, start_redis, synthetic_clip

from cli.up import Stack, free_port, stop_process
from service.bus.client import connect
from service.settings import RedisSettings
from tests.redis_cluster import LocalCluster

FPS = 25.0  # synthetic_clip's rate


@dataclass
class Backend:
    """The Redis a run uses: its URL, the settings the stack gets, one plain client per server (for the counters),
    the vigil client (for the scores) and how to stop it."""

    url: str
    env: dict[str, str]
    servers: list[redis.Redis]
    client: redis.Redis
    stop: Any


def single_redis() -> Backend:
    proc, url = start_redis()
    client = redis.Redis.from_url(url)
    return Backend(url, {}, [client], client, lambda: stop_process(proc, "redis-server", 5))


def local_cluster(work: Path, masters: int) -> Backend:
    cluster = LocalCluster(work / "cluster", masters, persist=False).start()
    partitions = 4 * masters
    env = {"VIGIL_REDIS__CLUSTER": "true", "VIGIL_REDIS__PARTITIONS": str(partitions)}
    client = connect(RedisSettings(url=cluster.url, cluster=True, partitions=partitions))
    return Backend(cluster.url, env, [redis.Redis(port=p) for p in cluster.ports], client, cluster.stop)


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


def measure(count: int, warmup_s: float, measure_s: float, work: Path, masters: int) -> dict[str, Any]:
    """One run with `count` real-time file cameras; the costs over `measure_s` seconds after `warmup_s`."""
    backend = local_cluster(work / f"run-{count}", masters) if masters else single_redis()
    try:
        model, _ = register_untrained(work / f"registry-{count}", "ffp", "tiny")
        footage = work / "footage"
        footage.mkdir(exist_ok=True)
        clip = footage / "clip.mp4"
        if not clip.exists():  # long enough to outlast warm-up and measurement at 25 fps
            synthetic_clip(clip, int((warmup_s + measure_s + 30) * FPS), size=(240, 320))
        env = {**stack_env(backend.url, work / f"registry-{count}", footage, batch=8), **backend.env}
        r = backend.client
        with Stack(
            redis_url=backend.url, api_port=free_port(), env=env, start_redis=False, log_path=work / "log"
        ) as stack:
            stack.wait_ready(120)
            cameras = add_cameras(stack.api_url, clip, model, count, realtime=True)
            time.sleep(warmup_s)
            before_each, frames_before, t0 = (
                [counters(s) for s in backend.servers],
                scored(r, cameras),
                time.perf_counter(),
            )
            time.sleep(measure_s)
            after_each, frames_after, t1 = (
                [counters(s) for s in backend.servers],
                scored(r, cameras),
                time.perf_counter(),
            )
    finally:
        backend.stop()
    before = {k: sum(c[k] for c in before_each) for k in before_each[0]}
    after = {k: sum(c[k] for c in after_each) for k in after_each[0]}
    deltas = [{k: a[k] - b[k] for k in ("commands", "cpu_s")} for a, b in zip(after_each, before_each, strict=True)]
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
        "shards": [
            {
                "commands_share": round(d["commands"] / max(after["commands"] - before["commands"], 1), 3),
                "cpu_share": round(d["cpu_s"] / max(after["cpu_s"] - before["cpu_s"], 1e-9), 3),
                "memory_share_at_end": round(a["memory"] / after["memory"], 3),
            }
            for d, a in zip(deltas, after_each, strict=True)
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--warmup-s", type=float, default=20.0)
    parser.add_argument("--measure-s", type=float, default=40.0)
    parser.add_argument("--out", type=Path, default=None, help="write the results here (JSON)")
    parser.add_argument("--cluster", type=int, default=0, metavar="N", help="a local Redis Cluster of N masters")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed (Debian: apt-get install redis-server)")
    work = Path(tempfile.mkdtemp(prefix="vigil-redis-cost-"))
    results = []
    try:
        for count in args.cameras:
            results.append(measure(count, args.warmup_s, args.measure_s, work, args.cluster))
            print(json.dumps(results[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
