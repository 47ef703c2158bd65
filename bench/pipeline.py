"""End-to-end pipeline throughput vs the model's own forward rate at the same batch size, measured in one run.

    .venv/bin/python bench/pipeline.py --preset tiny --cameras 4 --worker-threads 1
    .venv/bin/python bench/pipeline.py --method flowmem --preset small --cameras 2 --frames 300

Runs `vigil up`'s processes (ingest, worker, api) on a private redis-server; file cameras added through the REST
API play a synthetic clip as fast as the pipeline takes it. Pipeline rate = scored frames/s in steady state (10%
to 90% of all frames); forward rate = frames/s of `method.score` on full batches of windows in this process. The
model is untrained (random weights, or flowmem's empty memories, calibrated on synthetic normal frames): throughput
does not depend on weights or on what a memory holds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import httpx
import numpy as np
import redis

from cli.up import Stack, free_port, redis_reachable, stop_process

WINDOW = 8  # VIGIL_INGEST__WINDOW_FRAMES used by every run


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("redis-server is not installed (Debian: apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    while not redis_reachable(url, 0.2):
        time.sleep(0.05)
    return proc, url


def synthetic_clip(path: Path, frames: int, size: tuple[int, int] = (120, 160)) -> Path:
    """A moving-block clip (H.264 via PyAV) at 25 fps."""
    import av

    h, w = size
    rng = np.random.default_rng(0)
    background = rng.integers(60, 120, (h, w), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.height, stream.width, stream.pix_fmt = h, w, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for t in range(frames):
            img = background.copy()
            x = (t * 3) % (w - 16)
            img[h // 2 : h // 2 + 16, x : x + 16] = 200
            bgr = np.repeat(img[:, :, None], 3, axis=2)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(bgr, format="bgr24")))
        container.mux(stream.encode())
    return path


def register_untrained(store_root: Path, name: str, preset: str) -> tuple[str, object]:
    """Method `name` at `preset`, untrained, calibrated on synthetic normal windows, promoted; returns (ref, method)."""
    import torch

    from models.calibration import fit_calibration
    from models.io import build_card, save_model
    from models.registry import create_method, get_method
    from models.store import ModelStore

    torch.manual_seed(0)
    method = create_method(get_method(name).make_config(preset)).eval()
    spec = method.input_spec
    window = torch.rand(4, spec.context + 16, spec.channels, spec.height, spec.width)
    with torch.inference_mode():
        raw = method.score(window).reshape(-1, len(method.signal_names)).double().numpy()
    ref = f"bench-{name}-{preset}"
    card = build_card(method, ref, calibration=fit_calibration(raw, list(method.signal_names)))
    store = ModelStore(store_root)
    version = save_model(store, method, card)
    store.promote(version.ref)
    return ref, method


def forward_fps(method: object, batch: int, seconds: float = 5.0) -> tuple[float, float]:
    """Scored frames/s of `method.score` on (batch, context + WINDOW, C, H, W) windows, what the worker runs, and the
    CPU milliseconds it took per frame."""
    import torch

    spec = method.input_spec  # type: ignore[attr-defined]
    x = torch.rand(batch, spec.context + WINDOW, spec.channels, spec.height, spec.width)
    with torch.inference_mode():
        method.score(x)  # type: ignore[attr-defined]  # warm-up
        n, start, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - start < seconds:
            method.score(x)  # type: ignore[attr-defined]
            n += 1
    frames = n * batch * WINDOW
    return frames / (time.perf_counter() - start), 1000 * (time.process_time() - cpu) / frames


def stack_env(redis_url: str, store_root: Path, footage: Path, batch: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(
        {
            "VIGIL_REDIS__URL": redis_url,
            "VIGIL_STORE__ROOT": str(store_root),
            "VIGIL_FOOTAGE_ROOT": str(footage),
            "VIGIL_WORKER__DEVICE": "auto",
            "VIGIL_WORKER__MAX_BATCH": str(batch),
            "VIGIL_INGEST__WINDOW_FRAMES": str(WINDOW),
        }
    )
    return env


def add_cameras(api: str, clip: Path, model: str, count: int, realtime: bool, prefix: str = "cam") -> list[str]:
    ids = [f"{prefix}{i}" for i in range(count)]
    for cam in ids:
        body = {"id": cam, "url": str(clip), "model": model, "kind": "file", "realtime": realtime}
        r = httpx.post(f"{api}/cameras", json=body, timeout=10)
        r.raise_for_status()
    return ids


def scored(r: redis.Redis, cameras: list[str]) -> int:
    from service.bus import keys

    pipe = r.pipeline()
    for cam in cameras:
        pipe.xlen(keys.score_stream_key(cam))
    return int(sum(pipe.execute()))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pipeline_fps(
    r: redis.Redis, cameras: list[str], total: int, timeout_s: float, pids: dict[str, int]
) -> tuple[float, dict[str, float]]:
    """Scored frames/s between 10% and 90% of `total` (steady state: no start-up, no tail), and the CPU time each
    process in `pids` spent per scored frame over the same span, in milliseconds."""
    marks: dict[float, tuple[float, int, dict[str, float]]] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        n, now = scored(r, cameras), time.perf_counter()
        for frac in (0.1, 0.9):
            if n >= frac * total and frac not in marks:
                marks[frac] = (now, n, {name: cpu_seconds(pid) for name, pid in pids.items()})
        if 0.9 in marks:
            (t0, n0, c0), (t1, n1, c1) = marks[0.1], marks[0.9]
            ms_per_frame = {name: round(1000 * (c1[name] - c0[name]) / (n1 - n0), 3) for name in pids}
            return (n1 - n0) / (t1 - t0), ms_per_frame
        time.sleep(0.05)
    sys.exit(f"timed out: {scored(r, cameras)} of {total} frames scored in {timeout_s} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="ffp", help="a frame method of `vigil methods` (default ffp)")
    parser.add_argument("--preset", default="small", help="its preset (FFP: tiny 32x32, small 128x128, paper 256x256)")
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument(
        "--frames", type=int, default=1500, help="frames per camera clip (long enough that ingest runs throughout)"
    )
    parser.add_argument("--batch", type=int, default=8, help="worker max batch (windows) and forward batch")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--max-wait-ms", type=float, default=None, help="VIGIL_WORKER__MAX_WAIT_MS (default: the setting's)"
    )
    parser.add_argument(
        "--worker-threads", type=int, default=None, help="VIGIL_WORKER__CPU_THREADS (default: the setting's)"
    )
    parser.add_argument(
        "--release-freed-memory",
        action="store_true",
        help="glibc's default allocation policy in the worker and the forward timing "
        "(VIGIL_WORKER__KEEP_FREED_MEMORY=false)",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vigil-bench-"))
    redis_proc, url = start_redis()
    try:
        model, method = register_untrained(work / "registry", args.method, args.preset)
        clip = synthetic_clip(work / "clip.mp4", args.frames)
        if not _cuda() and not args.release_freed_memory:  # timed under the CPU worker's allocation policy
            from models.cpu_memory import keep_freed_memory

            keep_freed_memory()
        # Forward rate before and after the pipeline run, averaged: on a shared machine the load drifts.
        forward_before, cpu_before = forward_fps(method, args.batch)
        env = stack_env(url, work / "registry", work, args.batch)
        if args.max_wait_ms is not None:
            env["VIGIL_WORKER__MAX_WAIT_MS"] = str(args.max_wait_ms)
        if args.worker_threads is not None:
            env["VIGIL_WORKER__CPU_THREADS"] = str(args.worker_threads)
        if args.release_freed_memory:
            env["VIGIL_WORKER__KEEP_FREED_MEMORY"] = "false"
        with Stack(redis_url=url, api_port=free_port(), env=env, start_redis=False, log_path=work / "log") as stack:
            stack.wait_ready(120)
            cameras = add_cameras(stack.api_url, clip, model, args.cameras, realtime=False)
            per_camera = args.frames - method.input_spec.context  # type: ignore[attr-defined]
            pids = {name: proc.pid for name, proc in stack.procs} | {"redis": redis_proc.pid}
            end_to_end, cpu_ms = pipeline_fps(
                redis.Redis.from_url(url), cameras, per_camera * args.cameras, args.timeout, pids
            )
        forward_after, cpu_after = forward_fps(method, args.batch)
        forward = (forward_before + forward_after) / 2
        result = {
            "method": args.method,
            "preset": args.preset,
            "cameras": args.cameras,
            "batch": args.batch,
            "max_wait_ms": args.max_wait_ms,
            "worker_threads": args.worker_threads,
            "keep_freed_memory": not args.release_freed_memory,
            "device": "cpu" if not _cuda() else "cuda",
            "cpu_cores": os.cpu_count(),
            "model_forward_fps": round(forward, 1),
            "forward_fps_before_after": [round(forward_before, 1), round(forward_after, 1)],
            "pipeline_fps": round(end_to_end, 1),
            "ratio": round(end_to_end / forward, 3),
            # where the CPU went: ms of CPU per scored frame by process, against the bare forward pass's
            "cpu_ms_per_frame": cpu_ms,
            "forward_cpu_ms_per_frame": round((cpu_before + cpu_after) / 2, 3),
        }
        print(json.dumps(result))
        if cpu_ms.get("ingest", 0.0) < 0.01:
            print(
                "warning: the ingester was done before the measured span, so this measured the worker draining a "
                "backlog alone; use more --frames",
                file=sys.stderr,
            )
    finally:
        stop_process(redis_proc, "redis-server", 5)
        shutil.rmtree(work, ignore_errors=True)


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


if __name__ == "__main__":
    main()
