"""`vigil models list|show|promote`: browse the model registry and move aliases (no torch needed)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", help="model registry directory (default: VIGIL_STORE__ROOT)")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = sub.add_parser("list", help="models, versions, aliases, method, created time and key metrics")
    ls.add_argument("name", nargs="?", help="only this model")
    show = sub.add_parser("show", help="print a version's card (JSON)")
    show.add_argument("ref", help="name, name@v3 or name@production")
    promote = sub.add_parser("promote", help="point an alias at a version")
    promote.add_argument("ref", help="the version to promote: name@v3 (or name, the newest)")
    promote.add_argument("--alias", default="production", help="alias to move (default: production)")


def _key_metrics(metrics: dict[str, Any]) -> str:
    """A short summary of whatever metrics a card holds: training steps and losses, eval AUCs."""
    parts: list[str] = []
    train = metrics.get("train", {})
    if "steps" in train:
        parts.append(f"steps={train['steps']}")
    for name, value in sorted(train.get("losses", {}).items()):
        parts.append(f"{name}={value:.4g}")
    evaluation = metrics.get("eval", {})  # written by `vigil eval --record`
    for key in ("paper_micro_auc", "online_micro_auc"):
        if evaluation.get(key) is not None:
            parts.append(f"{key.removesuffix('_micro_auc')}_auc={evaluation[key]:.4f}")
    return " ".join(parts)


def _list(store: Any, only: str | None) -> int:
    names = [only] if only else store.names()
    if not names:
        print(f"no models in {store.root} (train one with `vigil train`)")
        return 0
    print(f"{'REF':<28} {'ALIASES':<16} {'METHOD':<8} {'CREATED':<26} METRICS")
    for name in names:
        versions = store.versions(name)
        if only and not versions:
            print(f"no model named {name!r} in {store.root}; models: {', '.join(store.names()) or 'none'}")
            return 1
        aliases = store.aliases(name)
        for version in versions:
            card = version.card()
            tags = ",".join(sorted(a for a, v in aliases.items() if v == version.version)) or "-"
            metrics = _key_metrics(card.metrics)
            print(f"{version.ref:<28} {tags:<16} {card.method:<8} {card.created_at:<26} {metrics}")
    return 0


def run(args: argparse.Namespace) -> int:
    from models.errors import ModelNotFoundError
    from models.store import ModelStore
    from service.settings import get_settings

    store = ModelStore(Path(args.registry) if args.registry else get_settings().store.root)
    try:
        if args.action == "list":
            return _list(store, args.name)
        if args.action == "show":
            print(store.resolve(args.ref).card().model_dump_json(indent=2))
            return 0
        target = store.promote(args.ref, args.alias)
    except (ModelNotFoundError, ValueError) as e:
        print(f"vigil models {args.action}: {e}")
        return 1
    print(f"{target.name}@{args.alias} -> {target.version}")
    return 0
