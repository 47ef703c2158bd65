"""`vigil api`: serve the REST/WebSocket API with uvicorn (settings from VIGIL_* variables)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="bind address (default: VIGIL_API__HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: VIGIL_API__PORT, 8000)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--exit-with-parent", action="store_true", help="stop when the parent process dies (for supervisors)"
    )


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from service.api.app import create_app
    from service.lifecycle import exit_with_parent
    from service.settings import get_settings

    settings = get_settings()
    if args.host is not None:  # a --host override must pass the same check as VIGIL_API__HOST
        settings = settings.model_copy(update={"api": settings.api.model_copy(update={"host": args.host})})
        settings = type(settings).model_validate(settings.model_dump())
    app = create_app(settings)
    if args.exit_with_parent:
        exit_with_parent()  # SIGTERM: uvicorn's graceful stop
    uvicorn.run(
        app,
        host=settings.api.host,
        port=args.port or settings.api.port,
        log_level=args.log_level,
        # Uvicorn's access log prints query strings; WebSocket clients may pass ?api_key=, so keep it off.
        access_log=False,
    )
    return 0
