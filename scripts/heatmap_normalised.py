"""Would heatmaps localise better relative to each cell's normal error? A measurement, not a feature.

Scores the last 2 training videos of a dataset (the held-out normal videos `vigil train` calibrates on; never test
labels) and every test video with a model that has a localisation map, keeps the coarse maps as the service does
(models/heatmap.py), and prints the pixel AUC (all frames, anomalous frames) and the share of masked frames whose map
peak is inside the mask (models/evaluate/localization.py, the protocol of `vigil eval --heatmaps`) for the maps as
they are and divided or reduced by each cell's error statistics on the normal videos.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/heatmap_normalised.py ffp-small@v1 --registry runs/registry \\
        --dataset ../shared/datasets/ucsd_ped2
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.data.datasets import LabeledVideo, open_dataset
from models.evaluate.localization import load_pixel_masks, localization
from models.heatmap import dequantize, quantize
from models.inference import score_video
from models.io import load_model
from models.store import ModelStore


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--registry", type=Path, default=Path("runs/registry"))
    parser.add_argument(
        "--dataset", type=Path, default=Path(__file__).resolve().parents[2] / "shared/datasets/ucsd_ped2"
    )
    parser.add_argument("--normal-videos", type=int, default=2, help="last training videos used as normal footage")
    args = parser.parse_args()
    torch.set_num_threads(1)
    method, card, version = load_model(ModelStore(args.registry), args.model, torch.device("cpu"))
    context = method.input_spec.context

    def stored_maps(video: LabeledVideo) -> np.ndarray:
        chunks: list[np.ndarray] = []
        score_video(method, video.reader, on_maps=chunks.append, precision=card.precision)
        q, scales = quantize(np.concatenate(chunks))
        return dequantize(q, scales)

    normal = np.concatenate([stored_maps(v) for v in open_dataset(args.dataset, "train")[-args.normal_videos :]])
    mean, p99 = normal.mean(axis=0), np.quantile(normal, 0.99, axis=0)  # (h, w) each
    tests = open_dataset(args.dataset, "test")
    maps = [stored_maps(v) for v in tests]
    by_name = load_pixel_masks(args.dataset)
    masks = [by_name[v.name][context:] for v in tests]
    variants: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "as stored": lambda m: m,
        "divided by the cell's normal mean": lambda m: m / (mean + 1e-4),
        "divided by the cell's normal 99th percentile": lambda m: m / (p99 + 1e-4),
        "above the cell's normal 99th percentile": lambda m: np.maximum(m - p99, 0) + 1e-9 * m,  # ties broken by m
    }
    rows = {}
    for name, transform in variants.items():
        r = localization([transform(m) for m in maps], masks, {}, {})
        rows[name] = {
            "pixel_auc": round(r.pixel_auc, 4),
            "pixel_auc_anomalous_frames": round(r.pixel_auc_anomalous_frames, 4),
            "peak_in_mask_frames": round(r.peaks_masked_frames.peak_in_mask or 0.0, 4),
        }
        print(f"{version.ref} {name:<46} {json.dumps(rows[name])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
