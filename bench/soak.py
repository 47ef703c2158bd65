"""Soak: `vigil up`'s processes with 4 cameras for a bounded time; RSS of every process and Redis memory each minute.

    .venv/bin/python bench/soak.py --minutes 60 --out runs/soak/soak-60min.json     # the acceptance soak (1 hour)
    .venv/bin/python bench/soak.py --minutes 3 --interval-s 30                       # a short check of the script

Cameras: two RTSP cameras from gst-rtsp-server (tests/rtsp.py), one of which is killed and restarted every
`--churn-s` seconds (reconnect churn: connection lost, backoff, reconnect, warm-up); a live camera reading a file
that ends and is reopened every 10 s; a file camera playing a recording as long as the soak in real time. The model
is FFP `--preset` with random weights, calibrated on synthetic frames (memory does not depend on the weights).

Each sample (one JSON line) holds the resident set size of api, worker, ingest and redis-server (/proc VmRSS), Redis
`used_memory`, and frames scored per camera. The summary gives each process's growth: a least-squares slope over
the samples after the first `--warmup-min` minutes (KB/min), and first-to-last. A process that leaks grows steadily;
caches that fill up level off.
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

import httpx
import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ (RTSP server, footage) from anywhere

from pipeline import register_untrained, stack_env, start_redis

from cli.up import Stack, free_port, stop_process
from service.bus import keys, topics
from tests.rtsp import RtspServer, loop_clip
from tests.synthetic import render_frames, write_video


def rss_kb(pid: int) -> int | None:
    """Resident set size of a process in KB (VmRSS), None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        return None
    return None


def sample(stack: Stack, redis_pid: int, r: redis.Redis, cameras: list[str], started: float) -> dict[str, Any]:
    pids = {name: proc.pid for name, proc in stack.procs} | {"redis-server": redis_pid}
    info: Any = r.info("memory")
    pipe = r.pipeline()
    for camera in cameras:
        pipe.xlen(keys.score_stream_key(camera))
    statuses = topics.list_camera_statuses(r)
    return {
        "minute": round((time.monotonic() - started) / 60, 2),
        "rss_kb": {name: rss_kb(pid) for name, pid in pids.items()},
        "redis_used_memory_kb": int(info["used_memory"]) // 1024,
        "scores": dict(zip(cameras, pipe.execute(), strict=True)),
        "states": {c: (s.state, s.reconnects) for c, s in statuses.items()},
    }


def growth(samples: list[dict[str, Any]], warmup_min: float) -> dict[str, dict[str, float]]:
    """Per process: KB/min (least squares over the samples after warm-up) and MB first to last."""
    series: dict[str, list[tuple[float, float]]] = {}
    for s in samples:
        values = {**s["rss_kb"], "redis used_memory": s["redis_used_memory_kb"]}
        for name, kb in values.items():
            if kb is not None:
                series.setdefault(name, []).append((s["minute"], float(kb)))
    out = {}
    for name, points in series.items():
        steady = [(t, kb) for t, kb in points if t >= warmup_min] or points
        t, kb = np.array(steady).T
        slope = float(np.polyfit(t, kb, 1)[0]) if len(steady) > 1 and np.ptp(t) > 0 else 0.0
        out[name] = {
            "kb_per_min_after_warmup": round(slope, 1),
            "first_mb": round(points[0][1] / 1024, 1),
            "last_mb": round(points[-1][1] / 1024, 1),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, required=True, help="how long to run (the acceptance soak: 60)")
    parser.add_argument("--interval-s", type=float, default=60.0, help="seconds between samples (default 60)")
    parser.add_argument("--churn-s", type=float, default=120.0, help="the churned RTSP server restarts this often")
    parser.add_argument("--warmup-min", type=float, default=1.0, help="minutes left out of the growth slopes")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--out", type=Path, default=None, help="write samples and summary here (JSON)")
    args = parser.parse_args()
    if args.minutes <= 0:
        sys.exit("--minutes must be > 0")

    work = Path(tempfile.mkdtemp(prefix="vigil-soak-"))
    redis_proc, url = start_redis()
    servers: list[RtspServer] = []
    try:
        model, _ = register_untrained(work / "registry", "ffp", args.preset)
        footage = work / "footage"
        footage.mkdir()
        base = write_video(work / "base.mp4", render_frames(64, (64, 64), (40, 52))[0])  # 2.56 s, one anomaly
        seconds = args.minutes * 60 + 120
        recording = loop_clip(base, footage / "recording.mp4", seconds)
        short = loop_clip(base, footage / "short.mp4", 10)
        for port in (free_port(), free_port()):
            servers.append(RtspServer(loop_clip(base, work / f"rtsp-{port}.mp4", seconds), port))
            servers[-1].start()
        env = stack_env(url, work / "registry", footage, batch=8)
        env["VIGIL_INGEST__RECONNECT_MAX_S"] = "5"
        r = redis.Redis.from_url(url)
        cameras = {
            "rtsp-churn": {"url": servers[0].url()},
            "rtsp-steady": {"url": servers[1].url()},
            "live-file": {"url": str(short)},  # kind live: the file ends every 10 s and is opened again
            "file": {"url": str(recording), "kind": "file"},
        }
        with Stack(redis_url=url, api_port=free_port(), env=env, start_redis=False, log_path=work / "log") as stack:
            stack.wait_ready(120)
            for camera, body in cameras.items():
                response = httpx.post(f"{stack.api_url}/cameras", json={"id": camera, "model": model, **body})
                response.raise_for_status()
            started = time.monotonic()
            end = started + args.minutes * 60
            next_sample, next_churn = started, started + args.churn_s
            samples: list[dict[str, Any]] = []
            while True:
                now = time.monotonic()
                if now >= next_sample:
                    samples.append(sample(stack, redis_proc.pid, r, list(cameras), started))
                    print(json.dumps(samples[-1]), flush=True)
                    next_sample += args.interval_s
                    if now >= end:
                        break
                if now >= next_churn:
                    servers[0].restart()  # killed (clients see the connection drop) and started again
                    next_churn += args.churn_s
                dead = stack.exited()
                if dead:
                    tail = (work / "log").read_text(errors="replace")[-4000:]
                    sys.exit(f"{tail}\n{dead[0][0]} exited with {dead[0][1]} during the soak (its log above)")
                time.sleep(min(1.0, max(0.0, min(next_sample, next_churn) - time.monotonic())))
        last = samples[-1]
        summary = {
            "minutes": args.minutes,
            "interval_s": args.interval_s,
            "churn_s": args.churn_s,
            "cameras": list(cameras),
            "scored": last["scores"],
            "states": last["states"],
            "growth": growth(samples, args.warmup_min),
        }
        print(json.dumps({"summary": summary}, indent=1), flush=True)
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"samples": samples, "summary": summary}, indent=1))
    finally:
        for server in servers:
            server.stop()
        stop_process(redis_proc, "redis-server", 5)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
