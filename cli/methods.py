"""`vigil methods [NAME] [--json]`: the registered methods, their presets with input specs, their pretrained parts,
the data they train on and the training configs shipped for them (as timm's `list_models`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

CONFIGS = Path(__file__).resolve().parents[1] / "models" / "configs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="one method (default: all)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def describe(name: str) -> dict[str, Any]:
    """What `vigil methods` shows for one registered method."""
    import yaml

    from models.registry import get_method
    from models.train.objectives import get_objective

    spec = get_method(name)
    presets = {}
    for preset in spec.config_cls.PRESETS:  # type: ignore[attr-defined]
        config = spec.make_config(preset)
        presets[preset] = config.input_spec.to_dict()  # type: ignore[attr-defined]
    configs = []
    for path in sorted(CONFIGS.glob("*.yaml")):
        method = (yaml.safe_load(path.read_text()) or {}).get("method") or {}
        if method.get("name") == name:
            configs.append(f"models/configs/{path.name}")
    objective = get_objective(name)
    return {
        "name": name,
        "paper": spec.paper,
        "presets": presets,
        "pretrained": list(spec.pretrained) or ["none"],
        "localization_map": spec.localizes,  # a per-pixel map: alert heatmaps (GET /alerts/{id}/heatmap.jpg)
        "trains_on": list(objective.data),
        "optim": list(objective.optim.model_fields),
        "configs": configs,
    }


def _spec_text(spec: dict[str, Any]) -> str:
    colour = {1: "gray", 3: "BGR"}[spec["channels"]]
    frames = "frame" if spec["context"] == 1 else "frames"
    return f"{spec['height']}x{spec['width']} {colour}, {spec['context']} {frames} of context"


def run(args: argparse.Namespace) -> int:
    from models.registry import list_methods

    names = [args.name] if args.name else list_methods()
    rows = [describe(n) for n in names]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['name']}: {row['paper']}")
        for preset, spec in row["presets"].items():
            print(f"  preset {preset:<6} {_spec_text(spec)}")
        print(f"  pretrained: {'; '.join(row['pretrained'])}")
        print(f"  localisation map: {'yes (alert heatmaps)' if row['localization_map'] else 'none'}")
        print(f"  trains on: {', '.join(row['trains_on'])}; optim: {', '.join(row['optim'])}")
        print(f"  configs: {', '.join(row['configs']) or '-'}")
    return 0
