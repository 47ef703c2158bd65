"""Command-line options shared by the subcommands that load a model and score footage in-process."""

from __future__ import annotations

import argparse
from pathlib import Path


def positive_int(value: str) -> int:
    n = int(value)
    if n < 1:
        msg = f"must be >= 1, got {n}"
        raise argparse.ArgumentTypeError(msg)
    return n


def add_scoring_options(parser: argparse.ArgumentParser, command: str) -> None:
    """--registry, --out (default runs/<command>/<name>-<version>), --device and --batch-size."""
    parser.add_argument("--registry", type=Path, help="model registry directory (default: VIGIL_STORE__ROOT)")
    parser.add_argument("--out", type=Path, help=f"output directory (default: runs/{command}/<name>-<version>)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="windows per forward pass (default: 8)")
