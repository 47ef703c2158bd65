"""`vigil mqtt`: publish alert events, camera states and scores to an MQTT broker (see service/mqtt/bridge.py)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-port", type=int, help="serve /metrics here, 0 = off (VIGIL_MQTT__METRICS_PORT)")
    parser.add_argument(
        "--exit-with-parent", action="store_true", help="stop when the parent process dies (for supervisors)"
    )


def run(args: argparse.Namespace) -> int:
    import logging

    from pydantic import ValidationError

    from service.logging import setup_logging
    from service.settings import Settings, get_settings

    setup_logging("mqtt", logging.DEBUG if args.verbose else logging.INFO)
    try:
        settings = get_settings()
        if args.metrics_port is not None:
            data = settings.model_dump()
            data["mqtt"]["metrics_port"] = args.metrics_port
            settings = Settings.model_validate(data)
    except ValidationError as e:
        print(f"vigil mqtt: invalid configuration: {e}")
        return 2
    if not settings.mqtt.enabled:
        print("vigil mqtt: MQTT is off; set VIGIL_MQTT__ENABLED=true and VIGIL_MQTT__HOST (docs/OPERATIONS.md, MQTT)")
        return 2

    from service.lifecycle import exit_with_parent
    from service.mqtt.bridge import MqttBridge

    if args.exit_with_parent:
        exit_with_parent()
    return MqttBridge(settings).run()
