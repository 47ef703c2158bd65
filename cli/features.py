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
    gcl = sub.add_parser("train-gcl", help="train gcl on cached features over a weak split, evaluate, register")
    gcl.add_argument("--cache", type=Path, required=True, help="feature cache made by `vigil features extract`")
    gcl.add_argument("--dataset", type=Path, required=True, help="the dataset the cache came from (test labels)")
    gcl.add_argument("--weights", type=Path, default=DEFAULT_PRETRAINED_DIR / "i3d-kinetics-400.safetensors")
    gcl.add_argument("--split", default="ped2_weak", help="split YAML, or a name under models/splits/")
    gcl.add_argument("--preset", default="paper", choices=["paper", "small"])
    gcl.add_argument("--steps", type=int, default=600)
    gcl.add_argument("--batch-size", type=int, default=128)
    gcl.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate of G and D")
    gcl.add_argument("--seed", type=int, default=0)
    gcl.add_argument("--name", default="gcl-ped2", help="model name in the registry")
    gcl.add_argument("--registry", type=Path, help="model registry directory (default: VIGIL_STORE__ROOT)")
    gcl.add_argument("--no-register", action="store_true", help="only train and evaluate")


def run(args: argparse.Namespace) -> int:
    return _extract(args) if args.action == "extract" else _train_gcl(args)


def _train_gcl(args: argparse.Namespace) -> int:
    import json

    from pydantic import ValidationError

    from models.errors import VigilModelError
    from models.features.cache import FeatureCache
    from models.features.gcl_run import FeatureRun, register, run_gcl
    from models.features.split import load_split
    from models.registry import get_method
    from service.settings import get_settings

    try:
        config = get_method("gcl").make_config(args.preset, backbone_weights=str(args.weights))
        run = FeatureRun(steps=args.steps, batch_size=args.batch_size, lr_g=args.lr, lr_d=args.lr, seed=args.seed)
        cache = FeatureCache.open(args.cache)
        method, metrics, calibration = run_gcl(config, cache, load_split(args.split), args.dataset, run)  # type: ignore[arg-type]
    except (VigilModelError, FileNotFoundError, ValueError, ValidationError) as e:
        print(f"vigil features train-gcl: {e}")
        return 1
    test = metrics["test"]
    summary = {k: round(v["micro_auc"], 4) for k, v in test.items() if isinstance(v, dict) and "micro_auc" in v}
    print(json.dumps({"micro_auc": summary, "train": metrics["train"]}, indent=2))
    if not args.no_register:
        registry = args.registry or get_settings().store.root
        print(f"registered {register(method, args.name, registry, metrics, calibration)} in {registry}")
    return 0


def _extract(args: argparse.Namespace) -> int:
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
