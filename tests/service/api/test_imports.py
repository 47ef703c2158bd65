"""The API process must stay slim: importing and building the app never imports torch."""

from __future__ import annotations

import subprocess
import sys


def test_api_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "from service.api.app import create_app\n"
        "from service.settings import Settings\n"
        "create_app(Settings())\n"
        "import cli.api, cli.up\n"
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not loaded, loaded\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
