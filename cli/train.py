"""`vigil train CONFIG.yaml [key=value ...]`: train a method offline, calibrate it and register it."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="training YAML, e.g. models/configs/ffp_ped2_small.yaml")
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
    from models.train.config import load_train_config, one_line
    from models.train.loop import train
    from service.settings import get_settings

    overrides = list(args.overrides)
    if args.resume:
        overrides.append(f"resume={args.resume}")
    try:
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
        result = train(cfg)
    except (VigilModelError, FileExistsError) as e:
        print(f"vigil train: {e}")
        return 1
    if result.ref is not None:
        print(f"registered {result.ref} in {cfg.registration.registry}")
    else:
        print(f"training finished (registration off); checkpoints in {cfg.out_dir / 'checkpoints'}")
    return 0
