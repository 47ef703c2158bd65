"""`vigil features extract --dataset PATH --out DIR`: I3D or CLIP snippet features of every video, cached once per
video; gcl and vadclip train on such a cache with `vigil train` (data.split and data.features)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cli.weights import DEFAULT_PRETRAINED_DIR

if TYPE_CHECKING:
    import torch

    from models.features.cache import FeatureIndex

    Encoder = Callable[[torch.Tensor], torch.Tensor]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    ext = sub.add_parser("extract", help="compute Kinetics I3D (1024-d) or CLIP image features per 16-frame snippet")
    ext.add_argument("--dataset", type=Path, required=True, help="dataset root (Ped2 layout) or a video folder")
    ext.add_argument("--out", type=Path, required=True, help="cache directory (index.json + one file per video)")
    ext.add_argument(
        "--weights",
        type=Path,
        default=DEFAULT_PRETRAINED_DIR,
        help="I3D: converted weights file or directory (default: pretrained/, see `vigil weights convert-i3d`); "
        "CLIP: an open_clip safetensors checkpoint",
    )
    ext.add_argument("--backbone", choices=["i3d", "clip"], default="i3d", help="snippet feature backbone")
    ext.add_argument("--clip-arch", default="ViT-B-16", help="open_clip architecture of the CLIP checkpoint")
    ext.add_argument("--splits", nargs="+", default=["train", "test"], choices=["train", "test"])
    ext.add_argument("--batch-size", type=int, default=4, help="snippets per forward pass")
    ext.add_argument("--device", default="auto", help="cpu, cuda or auto")


def run(args: argparse.Namespace) -> int:
    return _extract(args)


def _extract(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from models.errors import VigilModelError
    from models.features.cache import FeatureCache
    from models.features.extract import extract_dataset
    from models.inference import resolve_device

    if args.batch_size < 1:
        print("vigil features extract: --batch-size must be >= 1")
        return 2
    try:
        device = resolve_device(args.device)
        encode, size, template = (_clip_backbone if args.backbone == "clip" else _i3d_backbone)(args, device)
        cache = FeatureCache.create_or_open(args.out, template)
        with torch.inference_mode(), tqdm(unit="snippet", desc=f"{template.backbone} features") as bar:
            done = extract_dataset(
                args.dataset, cache, encode, size, tuple(args.splits), progress=lambda _key, n: bar.update(n)
            )
    except (VigilModelError, FileNotFoundError, ValueError) as e:
        print(f"vigil features extract: {e}")
        return 1
    print(f"{done} videos computed, {len(cache.keys())} in {args.out}")
    return 0


def _i3d_backbone(args: argparse.Namespace, device: torch.device) -> tuple[Encoder, int, FeatureIndex]:
    from models.features.extract import feature_index, i3d_encoder
    from models.io import sha256_file
    from models.pretrained.i3d import CONVERTED_NAME, load_i3d_kinetics

    weights = args.weights / CONVERTED_NAME if args.weights.is_dir() else args.weights
    backbone = load_i3d_kinetics(weights).to(device)
    template = feature_index(backbone, 224, sha256_file(weights), name="i3d-kinetics-400")
    return i3d_encoder(backbone, args.batch_size), 224, template


def _clip_backbone(args: argparse.Namespace, device: torch.device) -> tuple[Encoder, int, FeatureIndex]:
    """CLIP image features through vadclip's own encoder, so cached and live features are made the same way."""
    from models.features.cache import FeatureIndex
    from models.io import sha256_file
    from models.methods.vadclip import Vadclip, VadclipConfig
    from models.pretrained.clip import image_size
    from models.types import SNIPPET_FRAMES

    size = image_size(args.clip_arch)
    method = Vadclip(
        VadclipConfig(clip_arch=args.clip_arch, size=size, a_branch=False, backbone_weights=str(args.weights))
    )
    method.load_pretrained()
    method.to(device).eval()
    template = FeatureIndex(
        backbone=f"clip-{args.clip_arch}",
        feature_dim=method.config.feature_dim,
        snippet_frames=SNIPPET_FRAMES,
        weights_sha256=sha256_file(args.weights),
        preprocessing=f"whole frame resized to {size}x{size} (no crop), BGR->RGB, CLIP mean/std; "
        f"per-frame image embeddings averaged over each {SNIPPET_FRAMES}-frame snippet",
    )
    return lambda frames: method.encode_snippets(frames.to(device)).cpu(), size, template
