"""`make demo` (python -m cli.demo) with an already trained model: live timeline, the alerts, a clean stop.

The model here is the integration tests' tiny FFP (trained for seconds on other backgrounds), so this checks the
demo's machinery, not where the alert lands; the demo's own model (trained by the demo) alerts on frames 150-180.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import stack_env
from tests.service.worker.models_util import MODEL


@pytest.mark.integration
def test_demo_streams_the_clip_and_shows_the_alert(model_root: Path) -> None:
    env = stack_env("redis://127.0.0.1:1/0", model_root)  # the demo starts its own private redis-server
    cmd = [sys.executable, "-m", "cli.demo", "--model", f"{MODEL}@v1", "--registry", str(model_root), "--timeout", "90"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("frames ")]
    assert len(lines) == 31  # 246 scored frames of the 250-frame clip, 8 per line
    assert "ALERT-LEVEL <- anomaly in the clip" in out.stdout
    count = re.search(r"GET /alerts\?camera=demo: (\d+) alert", out.stdout)
    assert count is not None, out.stdout
    assert int(count.group(1)) >= 1
    assert re.search(r"frames \d+-(\d+|\.\.\.)\s+peak [\d.]+ at frame \d+\s+(open|closed)", out.stdout), out.stdout
    assert out.stdout.rstrip().endswith("done.")
