"""`make demo` (python -m cli.demo) with an already trained model: the camera learning its reference, the live
timeline, the alerts, a clean stop.

The model here is the integration tests' tiny FFP (trained for seconds on other backgrounds): the camera's own
reference, learned from the clip's first 10 s, is what makes its normal frames score low and the anomaly alert.
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
    assert len(lines) == 30  # 746 scored frames of the 750-frame clip, 25 per line
    learning = [i for i, line in enumerate(lines) if "learning (alerts held back)" in line]
    assert learning == list(range(len(learning)))
    assert 9 <= len(learning) <= 11  # the first 10 s
    assert not any("ALERT-LEVEL" in line for line in lines[len(learning) : 19])  # normal frames after learning
    assert "ALERT-LEVEL <- anomaly in the clip" in out.stdout
    assert re.search(r"reference v1 \(\w+ profile\) learned from \d+ live frames", out.stdout), out.stdout
    count = re.search(r"GET /alerts\?camera=demo: (\d+) alert", out.stdout)
    assert count is not None, out.stdout
    assert int(count.group(1)) >= 1
    assert re.search(r"frames \d+-(\d+|\.\.\.)\s+peak [\d.]+ at frame \d+\s+(open|closed)", out.stdout), out.stdout
    assert out.stdout.rstrip().endswith("done.")
