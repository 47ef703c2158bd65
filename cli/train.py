"""`vigil train CONFIG.yaml [key=value ...]`: train a method offline, calibrate it and register it.

`vigil train RUN/snapshots/cpu_00030.00min [method.signals=[patch] register.name=...]` registers a snapshot of a run
instead (calibrated on the run's held-out videos, as at the end of a run), with no training."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        help="training YAML, e.g. models/configs/ffp_ped2_small.yaml, or a run's snapshot directory to register "
        "(only method.*, register.*, device and num_threads may be overridden then)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted overrides parsed as YAML, e.g. steps=500 optim.generator_lr=2e-4 method.size=96",
    )
    parser.add_argument("--resume", metavar="CKPT", help="'auto' (newest under out_dir) or a checkpoint directory")
    parser.add_argument("--registry", help="model registry directory (default: VIGIL_STORE__ROOT)")


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from models.errors import VigilModelError
    from models.train.config import load_snapshot_config, load_train_config, one_line
    from models.train.loop import register_snapshot, train
    from service.settings import get_settings

    overrides = list(args.overrides)
    snapshot = Path(args.config) if Path(args.config).is_dir() else None
    if args.resume and snapshot is not None:
        print("vigil train: --resume continues a run from a checkpoint; a snapshot is registered as it is")
        return 2
    if args.resume:
        overrides.append(f"resume={args.resume}")
    meta: dict[str, object] = {}
    try:
        if snapshot is not None:
            cfg, meta = load_snapshot_config(snapshot, overrides)
        else:
            cfg = load_train_config(args.config, overrides)
    except ValidationError as e:
        print(f"vigil train: invalid configuration: {one_line(e)}")
        return 2
    except (ValueError, FileNotFoundError, VigilModelError) as e:
        print(f"vigil train: invalid configuration: {e}")
        return 2
    if args.registry:
        cfg = cfg.model_copy(
            update={"registration": cfg.registration.model_copy(update={"registry": Path(args.registry)})}
        )
    elif cfg.registration.registry is None:
        root = get_settings().store.root
        cfg = cfg.model_copy(update={"registration": cfg.registration.model_copy(update={"registry": root})})
    try:
        result = train(cfg) if snapshot is None else register_snapshot(cfg, snapshot, meta)
    except (VigilModelError, FileExistsError) as e:
        print(f"vigil train: {e}")
        return 1
    if result.ref is not None:
        print(f"registered {result.ref} in {cfg.registration.registry}")
    else:
        print(f"training finished (registration off); checkpoints in {cfg.out_dir / 'checkpoints'}")
    return 0
