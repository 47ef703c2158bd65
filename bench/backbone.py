"""Benchmark: the frozen EfficientNet-Lite0 that flowmem's appearance and F2LM's label stream run on every frame.

For each input size, the same batch goes alternately through the network's eval path (each BatchNorm folded into its
conv, channels-last, symmetric SAME padding inside the conv, CPU batches in chunks small enough for the heap: what
`LabelBackbone` runs), through the same path in one call (`eval_one_chunk`) and through `plain_forward` (module by
module, each BatchNorm a separate pass over the activations, NCHW, one call: the network as written), several rounds
in one run; prints milliseconds of wall and CPU time per frame (medians), the CPU ratios, and the largest difference
between the eval and plain outputs. Then flowmem's whole `score` per frame at each preset, to show
what share of a frame the backbone is. No timing is asserted in tests; this script is where it is measured.

    .venv/bin/python bench/backbone.py                    # torch's default threads
    OMP_NUM_THREADS=1 .venv/bin/python bench/backbone.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import torch

from models.pretrained import efficientnet_lite0 as lite0
from models.pretrained.efficientnet_lite0 import load_pretrained, plain_forward
from models.registry import create_method, get_method

# (label, height, width): flowmem's paper and small presets, F2LM's paper preset
SIZES = (("flowmem paper", 240, 352), ("flowmem small", 120, 176), ("f2lm paper", 256, 256))


def timed(fn: Callable[[], object], frames: int) -> tuple[float, float]:
    """(wall ms, CPU ms) per frame of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return 1000 * (time.perf_counter() - wall) / frames, 1000 * (time.process_time() - cpu) / frames


def bench_backbone(batch: int, rounds: int) -> list[dict[str, object]]:
    net = load_pretrained(5)
    rows = []
    for label, h, w in SIZES:
        x = torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1
        paths: dict[str, Callable[[], torch.Tensor]] = {
            "eval": lambda: net(x),  # noqa: B023  (called within this iteration)
            "eval_one_chunk": lambda: one_chunk(net, x),  # noqa: B023
            "plain": lambda: plain_forward(net, x),  # noqa: B023
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}
        with torch.inference_mode():
            for fn in paths.values():  # warm-up: oneDNN picks its kernels on the first call
                fn()
            for _ in range(rounds):  # alternate, so load from other processes hits all alike
                for name, fn in paths.items():
                    times[name].append(timed(fn, batch))
            diff = float((net(x) - plain_forward(net, x)).abs().max())
        row: dict[str, object] = {"input": f"{label} {h}x{w}"}
        for name, values in times.items():
            row[f"{name}_ms_per_frame"] = round(statistics.median(t[0] for t in values), 2)
            row[f"{name}_cpu_ms_per_frame"] = round(statistics.median(t[1] for t in values), 2)
        for name in ("eval", "eval_one_chunk"):
            row[f"plain_over_{name}_cpu"] = round(
                statistics.median(t[1] for t in times["plain"]) / statistics.median(t[1] for t in times[name]), 2
            )
        row["max_abs_diff_eval_vs_plain"] = diff
        rows.append(row)
        print(json.dumps(row))
    return rows


def one_chunk(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The eval path with the whole batch in one call (no CPU chunking): what chunking alone saves."""
    saved = lite0._CHUNK_BYTES
    lite0._CHUNK_BYTES = 2**62
    try:
        return net(x)
    finally:
        lite0._CHUNK_BYTES = saved


def bench_flowmem(batch: int, rounds: int) -> None:
    """flowmem's `score` per scored frame, windows of 8 scored frames, `batch` windows per call (the worker's)."""
    for preset in ("paper", "small"):
        method = create_method(get_method("flowmem").make_config(preset)).eval()
        spec = method.input_spec
        x = torch.rand(batch, spec.context + 8, spec.channels, spec.height, spec.width)
        with torch.inference_mode():
            method.score(x)
            times = [timed(lambda: method.score(x), batch * 8) for _ in range(rounds)]  # noqa: B023
        wall, cpu = statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)
        print(
            json.dumps(
                {"flowmem": preset, "score_ms_per_frame": round(wall, 2), "score_cpu_ms_per_frame": round(cpu, 2)}
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16, help="frames per backbone call (default 16)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--no-flowmem", action="store_true", help="skip flowmem's whole score")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}, batch {args.batch}, {args.rounds} rounds, medians")
    bench_backbone(args.batch, args.rounds)
    if not args.no_flowmem:
        bench_flowmem(2, args.rounds)


if __name__ == "__main__":
    main()
