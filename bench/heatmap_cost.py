"""Benchmark: what alert heatmaps add to the worker per window, on one core.

For each registered model given (default: the ones trained for docs/RESULTS.md, *Heatmaps*), a batch of windows as the
worker gets them (context + `window_frames` = 8 scored frames of real Ped2 test footage, prepared to the model's input)
is scored, alternating for several rounds, through `forward_windows` (what the worker does without heatmaps) and
through `forward_windows_maps` plus what the worker does with the maps (quantise, encode, one pipelined Redis SET per
frame when `--redis` is given). Prints ms per window of each and the difference (medians over rounds), and the part
that only heatmaps do, timed on its own (the full-size maps made coarse, quantised, encoded and written), which is
steadier than the difference of two forward passes on a loaded machine. No timing is asserted in tests; this script
is where it is measured.

    OMP_NUM_THREADS=1 .venv/bin/python bench/heatmap_cost.py --registry runs/registry ffp-small dast-small-skip1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import numpy as np
import torch

from models.data.datasets import open_dataset
from models.data.transforms import prepare
from models.heatmap import coarse_maps, quantize
from models.inference import forward_windows, forward_windows_maps
from models.io import load_model
from models.store import ModelStore
from service.heatmaps.store import encode_map

PED2 = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ucsd_ped2"
WINDOW_FRAMES = 8  # the ingester's default (VIGIL_INGEST__WINDOW_FRAMES)


def _windows(frames: np.ndarray, context: int, batch: int) -> torch.Tensor:
    """(B, context + 8, C, H, W) float in [0, 1] from consecutive prepared frames."""
    t = context + WINDOW_FRAMES
    clips = np.stack([frames[i * WINDOW_FRAMES : i * WINDOW_FRAMES + t] for i in range(batch)])
    return torch.from_numpy(clips).permute(0, 1, 4, 2, 3).float().div_(255.0)


def _store(maps: np.ndarray, client: Any) -> list[bytes]:
    """What the worker does with a batch's coarse maps (B, N, h, w): quantise, encode, write (when `client`)."""
    blobs: list[bytes] = []
    for m in maps:
        q, scales = quantize(m)
        blobs.extend(encode_map(q[i], float(scales[i]), 0.1 * i) for i in range(len(q)))
    if client is not None:
        pipe = client.pipeline(transaction=False)
        for i, blob in enumerate(blobs):
            pipe.set(f"bench:heat:{i}", blob, ex=60)
        pipe.execute()
    return blobs


def measure(ref: str, store: ModelStore, batch: int, rounds: int, redis_url: str | None) -> dict[str, Any]:
    method, card, version = load_model(store, ref, torch.device("cpu"))
    spec = method.input_spec
    video = open_dataset(PED2, "test")[0]
    raw = np.stack([f for _, _, f in video.reader.iter_frames()][: spec.context + WINDOW_FRAMES * batch + 1])
    window = _windows(prepare(raw, spec), spec.context, batch)
    client = None
    if redis_url:
        import redis

        client = redis.Redis.from_url(redis_url)
    plain, with_maps, extra = [], [], []
    with torch.inference_mode():
        _, full = method.score_with_maps(window)  # (B, N, H, W) at the input size
    for _ in range(rounds):
        start = time.perf_counter()
        _store(coarse_maps(full).numpy(), client)
        extra.append((time.perf_counter() - start) / batch)
        start = time.perf_counter()
        forward_windows(method, window, card.precision)
        plain.append((time.perf_counter() - start) / batch)
        start = time.perf_counter()
        _, maps = forward_windows_maps(method, window, card.precision)
        blobs = _store(maps.numpy(), client)
        with_maps.append((time.perf_counter() - start) / batch)
    a, b = statistics.median(plain) * 1000, statistics.median(with_maps) * 1000
    return {
        "model": version.ref,
        "input": f"{spec.height}x{spec.width}x{spec.channels}",
        "batch": batch,
        "ms_per_window": round(a, 2),
        "ms_per_window_with_maps": round(b, 2),
        "added_ms": round(b - a, 2),
        "added_share": round((b - a) / a, 4),
        "heatmap_only_ms": round(statistics.median(extra) * 1000, 3),
        "bytes_per_frame": len(blobs[0]),
        "redis": bool(client),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="model references in the registry")
    parser.add_argument("--registry", type=Path, default=Path("runs/registry"))
    parser.add_argument("--batch", type=int, default=4, help="windows per forward pass")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--redis", help="a Redis URL: include the worker's writes of the maps")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [measure(ref, ModelStore(args.registry), args.batch, args.rounds, args.redis) for ref in args.models]
    for row in rows:
        print(
            f"{row['model']:<24} {row['input']:<12} {row['ms_per_window']:>8.2f} ms/window, with maps "
            f"{row['ms_per_window_with_maps']:>8.2f} ms (+{row['added_ms']:.2f} ms, {100 * row['added_share']:+.1f}%), "
            f"heatmap-only part {row['heatmap_only_ms']:.3f} ms/window, {row['bytes_per_frame']} B/frame"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
