"""The prepared GPU check works before a GPU is lent: the shell script parses, and its Python part runs every
section on tiny sizes on the CPU (the pipeline and camera sections start real stacks: covered by bench runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_script_parses_and_its_python_part_runs_on_cpu(tmp_path: Path) -> None:
    assert subprocess.run(["bash", "-n", str(ROOT / "bench" / "gpu_check.sh")], check=False).returncode == 0
    out = tmp_path / "summary.json"
    cmd = [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--device", "cpu", "--quick"]
    done = subprocess.run([*cmd, "--skip", "pipeline", "cameras", "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads(out.read_text())
    assert summary["device"]["type"] == "cpu"
    assert summary["device"]["measured_peak_tflops"]["fp32"] > 0
    rows = summary["forward"]
    assert {(r["batch"], r["precision"]) for r in rows} == {(1, "fp32"), (1, "bf16"), (2, "fp32"), (2, "bf16")}
    assert all(r["frames_per_s"] > 0 and r["gflops_per_window"] > 0 for r in rows)
    # The worker's scoring path and offline scoring agree exactly in each precision, and bf16 moves the signals.
    assert summary["parity"]["fp32"]["max_raw_diff_live_vs_offline"] == 0.0
    assert summary["parity"]["bf16"]["max_score_diff_live_vs_offline"] == 0.0
    assert summary["parity"]["bf16"]["max_raw_diff_vs_fp32"] > 0.0
