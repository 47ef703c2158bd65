"""Frame-to-score latency (capture -> score published) p50/p99 with 1, 4 and 16 simulated cameras.

    .venv/bin/python bench/latency.py --preset tiny --cameras 1 4 16 --seconds 8

Each simulated camera is a file camera paced at its native 25 fps (`realtime`), added through the REST API of
`vigil up`'s processes on a private redis-server. Latency per frame = ScoreMsg.published_ts - capture_ts, so it
includes waiting for the window to fill (WINDOW frames = 280 ms for the first frame of a window at 25 fps).

Where the time goes, per frame, in three stages that add up to the latency (an observer thread reads every window
entry as it is added to `vigil:windows`, before a worker deletes it; the entry id is Redis's clock at XADD):
- fill: from the frame's capture to the capture of its window's last frame (waiting for the window);
- ingest: from the window's last capture to its XADD (preparing and publishing the window);
- score: from the XADD to the score's publication (worker read, batching, forward pass, ordering, calibration,
  alert machine, the publishing transaction).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import redis
from pipeline import WINDOW, add_cameras, register_untrained, scored, stack_env, start_redis, synthetic_clip

from cli.up import Stack, free_port, stop_process
from service.bus import keys, topics

FPS = 25


class WindowObserver:
    """Reads every entry added to the windows stream (plain XREAD, no consumer group: the workers are unaffected) and
    keeps, per (camera, frame), when its window was added (the entry id's milliseconds) and when its last frame was
    captured."""

    def __init__(self, url: str) -> None:
        self.r = redis.Redis.from_url(url)
        self.added: dict[tuple[str, int], tuple[float, float]] = {}  # (camera, frame) -> (xadd_ts, window_last_ts)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WindowObserver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        try:
            self._read()
        except Exception as e:  # a bench, not a service: say why the stages are missing, loudly
            print(f"window observer stopped: {type(e).__name__}: {e}", flush=True)
            raise

    def _read(self) -> None:
        last = "$"
        while not self._stop.is_set():
            for _, entries in self.r.xread({keys.windows_stream(0): last}, block=200, count=500) or []:
                for entry_id, fields in entries:
                    last = entry_id.decode()
                    window = topics.decode_window(fields)
                    xadd_ts = int(last.split("-")[0]) / 1000
                    for i in range(len(window.capture_ts)):
                        self.added[(window.camera, window.first_frame + i)] = (xadd_ts, window.capture_ts[-1])


def _stats(ms: np.ndarray) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1)}


def measure(
    api: str,
    r: redis.Redis,
    clip: Path,
    model: str,
    count: int,
    per_camera: int,
    timeout_s: float,
    url: str,
    prefix: str = "n",
) -> dict:
    """Add `count` realtime cameras, wait until every frame is scored, return latency percentiles (ms), overall and
    per stage. Camera ids are new in every round: a file camera re-added under an id whose play-through ended
    publishes nothing again (it resumes where it ended), and its old scores would be measured instead."""
    with WindowObserver(url) as observer:
        cameras = add_cameras(api, clip, model, count, realtime=True, prefix=f"{prefix}{count}-")
        deadline = time.monotonic() + timeout_s
        while scored(r, cameras) < per_camera * count and time.monotonic() < deadline:
            time.sleep(0.2)
    latencies, stages = [], []
    for cam in cameras:
        for _, s in topics.read_scores(r, cam, count=None):
            latencies.append(s.published_ts - s.capture_ts)
            if (cam, s.frame) in observer.added:
                xadd_ts, last_ts = observer.added[(cam, s.frame)]
                stages.append((last_ts - s.capture_ts, xadd_ts - last_ts, s.published_ts - xadd_ts))
    for cam in cameras:
        httpx.delete(f"{api}/cameras/{cam}", timeout=10)
    ms = np.array(latencies) * 1000
    parts = np.array(stages) * 1000
    return {
        "cameras": count,
        "frames": len(ms),
        "expected_frames": per_camera * count,
        **_stats(ms),
        "max_ms": round(float(ms.max()), 1),
        "stages": {name: _stats(parts[:, i]) for i, name in enumerate(("fill", "ingest", "score"))},
        "frames_with_stages": len(parts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seconds", type=float, default=8.0, help="clip length per camera")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--window", type=int, default=WINDOW, help="VIGIL_INGEST__WINDOW_FRAMES (scored frames)")
    parser.add_argument("--max-wait-ms", type=float, default=20.0, help="VIGIL_WORKER__MAX_WAIT_MS (the default: 20)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vigil-latency-"))
    redis_proc, url = start_redis()
    try:
        model, method = register_untrained(work / "registry", "ffp", args.preset)
        frames = int(args.seconds * FPS)
        clip = synthetic_clip(work / "clip.mp4", frames)
        env = stack_env(url, work / "registry", work, args.batch)
        env["VIGIL_INGEST__WINDOW_FRAMES"] = str(args.window)  # the two knobs latency trades against overhead
        env["VIGIL_WORKER__MAX_WAIT_MS"] = str(args.max_wait_ms)
        r = redis.Redis.from_url(url)
        with Stack(redis_url=url, api_port=free_port(), env=env, start_redis=False, log_path=work / "log") as stack:
            stack.wait_ready(120)
            per_camera = frames - method.input_spec.context  # type: ignore[attr-defined]
            # Warm-up round (not reported): the worker loads the model on its first window, which takes seconds.
            measure(stack.api_url, r, clip, model, 1, per_camera, args.seconds * 10 + 60, url, prefix="warm")
            for count in args.cameras:
                timeout_s = args.seconds * 10 + 60
                result = measure(stack.api_url, r, clip, model, count, per_camera, timeout_s=timeout_s, url=url)
                knobs = {"window": args.window, "max_wait_ms": args.max_wait_ms, "batch": args.batch}
                print(json.dumps({"preset": args.preset, **knobs, **result}), flush=True)
    finally:
        stop_process(redis_proc, "redis-server", 5)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
