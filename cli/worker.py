"""`vigil worker`: score windows from the Redis bus with models from the registry (see service/worker/main.py)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id", help="consumer name in the Redis group (default: host-pid-random)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: VIGIL_WORKER__DEVICE (auto)")
    parser.add_argument("--max-batch", type=int, help="windows per forward pass (VIGIL_WORKER__MAX_BATCH)")
    parser.add_argument("--max-wait-ms", type=float, help="wait this long to fill a batch (VIGIL_WORKER__MAX_WAIT_MS)")
    parser.add_argument("--metrics-port", type=int, help="serve /metrics here, 0 = off (VIGIL_WORKER__METRICS_PORT)")
    parser.add_argument("--store", type=Path, help="model registry directory (VIGIL_STORE__ROOT)")
    parser.add_argument(
        "--exit-with-parent", action="store_true", help="stop when the parent process dies (for supervisors)"
    )


def run(args: argparse.Namespace) -> int:
    import logging

    from pydantic import ValidationError

    from service.logging import setup_logging
    from service.settings import Settings, get_settings

    setup_logging("worker", logging.DEBUG if args.verbose else logging.INFO)
    try:
        settings = get_settings()
    except ValidationError as e:
        print(f"vigil worker: invalid VIGIL_* environment: {e}")
        return 2
    overrides = {
        "device": args.device,
        "max_batch": args.max_batch,
        "max_wait_ms": args.max_wait_ms,
        "metrics_port": args.metrics_port,
    }
    data = settings.model_dump()
    data["worker"].update({k: v for k, v in overrides.items() if v is not None})
    if args.store is not None:
        data["store"]["root"] = args.store
    try:
        settings = Settings.model_validate(data)
    except ValidationError as e:
        print(f"vigil worker: invalid option: {e}")
        return 2

    from service.lifecycle import exit_with_parent
    from service.worker.main import Worker

    if args.exit_with_parent:
        exit_with_parent()
    return Worker(settings, worker_id=args.id).run()
