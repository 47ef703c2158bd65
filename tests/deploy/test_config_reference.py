"""docs/CONFIG.md is generated from service/settings.py: the committed file must match a fresh rendering."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gen_config_reference.py"


def _render() -> str:
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_config_reference", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text: str = module.render()
    return text


def test_committed_config_reference_is_up_to_date() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_reference_names_every_setting_with_its_env_var_and_default() -> None:
    from service.settings import Settings

    text = _render()
    for name, field in Settings.model_fields.items():
        section = field.annotation
        fields = getattr(section, "model_fields", None)
        if fields is None:
            assert f"`VIGIL_{name.upper()}`" in text
            continue
        for sub in fields:
            assert f"| `VIGIL_{name.upper()}__{sub.upper()}` |" in text, sub
    assert "| `VIGIL_WORKER__MAX_BATCH` | int | `8` | >= 1, <= 1024 | windows per forward pass |" in text
    assert (
        "| `VIGIL_ALERTS__HYSTERESIS` | float | `0.1` | >= 0, < 1 | alert ends below threshold - hysteresis |" in text
    )
