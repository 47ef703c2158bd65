"""`vigil ingest`: run an ingester (cameras from the Redis registry -> windows on the bus; settings from VIGIL_*)."""

from __future__ import annotations

import argparse
import logging
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id", default=None, help="ingester id (default: host-pid-random); must be unique")
    parser.add_argument(
        "--metrics-port", type=int, default=None, help="Prometheus port (default: VIGIL_INGEST__METRICS_PORT, 9101)"
    )
    parser.add_argument("--registry", default=None, help="model registry dir (default: VIGIL_STORE__ROOT)")
    parser.add_argument(
        "--exit-with-parent", action="store_true", help="stop when the parent process dies (for supervisors)"
    )


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from service.ingest.ingester import Ingester
    from service.lifecycle import exit_with_parent
    from service.logging import setup_logging
    from service.settings import get_settings

    setup_logging("ingest", logging.DEBUG if getattr(args, "verbose", False) else logging.INFO)
    try:
        settings = get_settings()
        updates: dict[str, Any] = {}
        if args.metrics_port is not None:
            updates["ingest"] = settings.ingest.model_copy(update={"metrics_port": args.metrics_port})
        if args.registry is not None:
            updates["store"] = settings.store.model_copy(update={"root": args.registry})
        settings = settings.model_copy(update=updates)
    except ValidationError as e:
        logging.getLogger("vigil.ingest").error("invalid settings: %s", e)
        return 2
    if not 0 <= settings.ingest.metrics_port <= 65535:
        logging.getLogger("vigil.ingest").error("--metrics-port must be 0..65535 (0 = no metrics server)")
        return 2
    if args.exit_with_parent:
        exit_with_parent()
    return Ingester(settings, ingester_id=args.id).run()
