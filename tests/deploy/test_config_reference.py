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

    def check(fields: dict, prefix: str) -> None:  # nested sections (a health check) one level deeper
        for sub, info in fields.items():
            nested = getattr(info.annotation, "model_fields", None)
            if nested is not None:
                check(nested, f"{prefix}{sub.upper()}__")
            else:
                assert f"| `{prefix}{sub.upper()}` |" in text, sub

    for name, field in Settings.model_fields.items():
        fields = getattr(field.annotation, "model_fields", None)
        if fields is None:
            assert f"`VIGIL_{name.upper()}`" in text
            continue
        check(fields, f"VIGIL_{name.upper()}__")
    assert "| `VIGIL_HEALTH__FROZEN__MIN_S` | float | `1.0` | > 0, <= 3600.0 | no change for this long = frozen |" in (
        text
    )
    assert "| `VIGIL_WORKER__MAX_BATCH` | int | `8` | >= 1, <= 1024 | windows per forward pass |" in text
    assert (
        "| `VIGIL_ALERTS__HYSTERESIS` | float | `0.1` | >= 0, < 1 | alert ends below threshold - hysteresis |" in text
    )
