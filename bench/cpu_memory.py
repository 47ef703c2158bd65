"""Benchmark: what keeping freed memory in the process (models/cpu_memory.py) does to CPU scoring.

Each model is scored in two fresh processes, one with glibc's default allocation policy and one after
`keep_freed_memory()`, alternating for several rounds in one run: wall and CPU milliseconds per scored frame (user and
kernel apart), minor page faults per frame, and peak resident memory. Models are untrained (the cost does not depend
on the weights), windows of 8 scored frames, `--batch` windows per call as the worker batches them.

    .venv/bin/python bench/cpu_memory.py
    .venv/bin/python bench/cpu_memory.py --models ffp:small:8 flowmem:paper:8 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs in the child: one model, one policy, a warm-up call, then `calls` timed calls.
CHILD = """
import json, os, resource, sys, time
sys.path.insert(0, {root!r})
import torch
from models.cpu_memory import keep_freed_memory
applied = keep_freed_memory() if {keep} else False
from models.registry import create_method, get_method
torch.manual_seed(0)
method = create_method(get_method({name!r}).make_config({preset!r})).eval()
spec = method.input_spec
x = torch.rand({batch}, spec.context + 8, spec.channels, spec.height, spec.width)
with torch.inference_mode():
    method.score(x)
    t0, c0, r0 = time.perf_counter(), os.times(), resource.getrusage(resource.RUSAGE_SELF)
    for _ in range({calls}):
        method.score(x)
    t1, c1, r1 = time.perf_counter(), os.times(), resource.getrusage(resource.RUSAGE_SELF)
frames = {calls} * {batch} * 8
print(json.dumps({{
    "applied": applied,
    "wall_ms": 1000 * (t1 - t0) / frames,
    "user_ms": 1000 * (c1.user - c0.user) / frames,
    "kernel_ms": 1000 * (c1.system - c0.system) / frames,
    "faults": (r1.ru_minflt - r0.ru_minflt) / frames,
    "max_rss_mb": r1.ru_maxrss / 1024,
}}))
"""


def run_child(name: str, preset: str, batch: int, keep: bool, calls: int) -> dict[str, float]:
    code = CHILD.format(root=str(ROOT), keep=keep, name=name, preset=preset, batch=batch, calls=calls)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["ffp:small:8", "f2lm:small:4", "dast:small:8", "flowmem:paper:8"],
        help="method:preset:windows per call",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=3, help="timed calls per process")
    args = parser.parse_args()
    for spec in args.models:
        name, preset, batch = spec.split(":")
        runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for _ in range(args.rounds):  # alternate, so load from other processes hits both alike
            for keep in (False, True):
                runs[keep].append(run_child(name, preset, int(batch), keep, args.calls))
        row: dict[str, object] = {"model": f"{name} {preset}", "windows_per_call": int(batch)}
        for keep, label in ((False, "default"), (True, "keep")):
            for key in ("wall_ms", "user_ms", "kernel_ms", "faults", "max_rss_mb"):
                row[f"{label}_{key}"] = round(statistics.median(r[key] for r in runs[keep]), 2)
        row["keep_applied"] = all(r["applied"] for r in runs[True])
        row["cpu_ratio_default_over_keep"] = round(
            (row["default_user_ms"] + row["default_kernel_ms"]) / (row["keep_user_ms"] + row["keep_kernel_ms"]),
            2,  # type: ignore[operator]
        )
        print(json.dumps(row))


if __name__ == "__main__":
    main()
