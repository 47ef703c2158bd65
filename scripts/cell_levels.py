"""How unlike flowmem's cells are on normal footage: per-cell distances of a registered flowmem version on a dataset's
held-out training videos (the videos it was calibrated on, never the test set).

    .venv/bin/python scripts/cell_levels.py flowmem-base@v1 --dataset ../shared/datasets/ucsd_ped2 \\
        --registry runs/registry [--num-val 2]

For motion and appearance it prints the frames' largest cell distance (median, 99th percentile), the spread of the
cells' own 99th percentiles, the cells that are most often the frame's largest, and the largest cell level per grid
row: the measurements behind `method.normalise` (docs/RESULTS.md, *flowmem: each cell in units of its own normal
level*).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.data.datasets import open_dataset, split_validation
from models.data.transforms import prepare
from models.inference import video_windows
from models.io import load_model
from models.methods.flowmem import Flowmem
from models.store import ModelStore


def held_out_distances(method: Flowmem, root: Path, num_val: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames, cells) motion and appearance distances of the held-out training videos, as `cell_scores` gives them."""
    _, held = split_validation(open_dataset(root, "train"), num_val)
    videos = (prepare(v.reader.read_all(), method.input_spec) for v in held)
    motion, appearance = [], []
    with torch.no_grad():
        for window in video_windows(videos, method.input_spec.context):
            m, a = method.cell_scores(window)
            motion.append(m[0])
            appearance.append(a[0])
    return torch.cat(motion).numpy(), torch.cat(appearance).numpy()


def report(name: str, distances: np.ndarray, cols: int) -> None:
    largest = distances.max(axis=1)
    levels = np.quantile(distances, 0.99, axis=0)
    print(
        f"{name}: {len(distances)} frames; the frame's largest cell: median {np.median(largest):.3f}, p99 "
        f"{np.quantile(largest, 0.99):.3f}"
    )
    print(f"  cells' p99: min {levels.min():.3f}, median {np.median(levels):.3f}, max {levels.max():.3f}")
    counts = np.bincount(distances.argmax(axis=1), minlength=distances.shape[1])
    top = [(int(c) // cols, int(c) % cols, int(counts[c])) for c in np.argsort(-counts)[:8]]
    print(f"  most often the frame's largest (row, col, frames): {top}")
    rows = " ".join(f"{v:.3g}" for v in levels.reshape(-1, cols).max(axis=1))
    print(f"  largest cell p99 per row: {rows}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a registered flowmem version, name@vN")
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--num-val", type=int, default=2, help="training videos held out (the last ones), as fitted")
    args = parser.parse_args()
    torch.set_num_threads(1)
    method, _, _ = load_model(ModelStore(args.registry), args.model)
    if not isinstance(method, Flowmem):
        print(f"{args.model} is a {type(method).__name__}, not a flowmem version")
        return 1
    motion, appearance = held_out_distances(method, args.dataset, args.num_val)
    cols = method.config.grid[1]
    report("motion", motion, cols)
    report("appearance", appearance, cols)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
