"""The packages of `models` form a layered graph: no two import each other (lazy imports inside functions count),
and each imports on its own in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

MODELS = Path(__file__).resolve().parents[2] / "models"
PACKAGES = sorted(p.name for p in MODELS.iterdir() if (p / "__init__.py").is_file())


def _package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "models" and parts[1] in PACKAGES else None


def package_graph() -> dict[str, set[str]]:
    """models.<package> -> the other models packages any of its modules imports (at any depth of the file)."""
    graph: dict[str, set[str]] = {p: set() for p in PACKAGES}
    for package in PACKAGES:
        for path in (MODELS / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                else:
                    continue
                graph[package] |= {t for n in names if (t := _package_of(n)) and t != package}
    return graph


def test_no_two_packages_import_each_other() -> None:
    graph = package_graph()
    assert {"features", "train", "methods", "evaluate"} <= set(graph)
    # Depth-first search for a cycle; report the first one found.
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, node])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [])):
            pytest.fail(f"import cycle between models packages: {' -> '.join(cycle)}")


def test_features_is_extraction_and_cache_only() -> None:
    assert package_graph()["features"] <= {"components", "data"}


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_alone(package: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import models.{package}"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
