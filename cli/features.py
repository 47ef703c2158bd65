"""`vigil features extract --dataset PATH --out DIR`: I3D snippet features of every video, cached once per video."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.weights import DEFAULT_PRETRAINED_DIR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    ext = sub.add_parser("extract", help="compute 1024-d Kinetics I3D features per 16-frame snippet")
    ext.add_argument("--dataset", type=Path, required=True, help="dataset root (Ped2 layout) or a video folder")
    ext.add_argument("--out", type=Path, required=True, help="cache directory (index.json + one file per video)")
    ext.add_argument(
        "--weights",
        type=Path,
        default=DEFAULT_PRETRAINED_DIR,
        help="converted I3D weights file or directory (default: pretrained/, see `vigil weights convert-i3d`)",
    )
    ext.add_argument("--splits", nargs="+", default=["train", "test"], choices=["train", "test"])
    ext.add_argument("--batch-size", type=int, default=4, help="snippets per forward pass")
    ext.add_argument("--device", default="auto", help="cpu, cuda or auto")


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from models.errors import VigilModelError
    from models.features.cache import FeatureCache
    from models.features.extract import extract_dataset, feature_index
    from models.inference import resolve_device
    from models.io import sha256_file
    from models.pretrained.i3d import CONVERTED_NAME, load_i3d_kinetics

    if args.batch_size < 1:
        print("vigil features extract: --batch-size must be >= 1")
        return 2
    weights = args.weights / CONVERTED_NAME if args.weights.is_dir() else args.weights
    try:
        device = resolve_device(args.device)
        backbone = load_i3d_kinetics(weights).to(device)
        template = feature_index(backbone, 224, sha256_file(weights), name="i3d-kinetics-400")
        cache = FeatureCache.create_or_open(args.out, template)
        with torch.inference_mode(), tqdm(unit="snippet", desc="I3D features") as bar:
            done = extract_dataset(
                args.dataset,
                cache,
                backbone,
                224,
                tuple(args.splits),
                args.batch_size,
                progress=lambda _key, n: bar.update(n),
            )
    except (VigilModelError, FileNotFoundError, ValueError) as e:
        print(f"vigil features extract: {e}")
        return 1
    print(f"{done} videos computed, {len(cache.keys())} in {args.out}")
    return 0
