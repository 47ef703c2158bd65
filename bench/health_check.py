"""Benchmark: the camera-health check's cost per frame against the cost of decoding the same frame, on one core.

For each frame size (the model input sizes 128x128 and 256x256, Ped2's 360x240 and 720p) an H.264 clip of a
camera-like scene is written, then, alternating for several rounds: decode it with PyAV on one thread (what the
frame costs to get), and run the health check on the decoded frames (models.health: the measurements from the
frame's planes plus the monitor's step, what the ingester adds per frame), OpenCV on one thread. Prints ms per frame
and the ratio check / decode (medians over rounds), and the budget check: at most 1 ms per frame at the model's input
size. No timing is asserted in tests; this script is where it is measured.

    .venv/bin/python bench/health_check.py                  # 200 frames per size, 5 rounds
    .venv/bin/python bench/health_check.py --frames 100 --rounds 3 --json runs/bench/health_check.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import av
import cv2

from models.health import HealthMonitor, HealthParams, frame_info
from tests.synthetic import render_scene, write_stream

SIZES = {"128x128 (ffp-small input)": (128, 128), "256x256 (FFP paper input)": (256, 256)}
SIZES |= {"360x240 (Ped2)": (240, 360), "1280x720": (720, 1280)}
BUDGET_MS = 1.0  # per frame at the model's input size, one core


def decode(path: Path) -> tuple[list[Any], float]:
    """(decoded av.VideoFrames, seconds) with one decoding thread."""
    frames = []
    start = time.perf_counter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        stream.codec_context.thread_count = 1
        frames.extend(container.decode(stream))
    return frames, time.perf_counter() - start


def check(frames: list[Any], fps: float) -> float:
    """Seconds the health check takes over the decoded frames (a fresh monitor, as a new camera)."""
    monitor = HealthMonitor(HealthParams())
    start = time.perf_counter()
    for i, frame in enumerate(frames):
        monitor.step(frame_info(frame), i / fps)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, (h, w) in SIZES.items():
            clip = write_stream(Path(tmp) / f"{w}x{h}.mp4", render_scene(args.frames, (h, w), seed=1))
            decode_s, check_s = [], []
            for _ in range(args.rounds):  # alternate, so both see the same machine load
                frames, seconds = decode(clip)
                decode_s.append(seconds / len(frames))
                check_s.append(check(frames, 25.0) / len(frames))
            d, c = statistics.median(decode_s) * 1000, statistics.median(check_s) * 1000
            results.append(
                {"size": label, "decode_ms": d, "check_ms": c, "ratio": c / d, "worst_check_ms": max(check_s) * 1000}
            )
            print(f"{label:<28} decode {d:7.3f} ms/frame   check {c:6.3f} ms/frame   ratio {c / d:5.2f}")
    model_sizes = [r for r in results if "input" in r["size"]]
    worst = max(r["check_ms"] for r in model_sizes)
    verdict = "met" if worst <= BUDGET_MS else "MISSED"
    print(f"budget: at most {BUDGET_MS:g} ms per frame at the model's input size: {worst:.3f} ms, {verdict}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": results, "budget_ms": BUDGET_MS}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
