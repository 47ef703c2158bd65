#!/usr/bin/env bash
# The one prepared GPU check (issue 13): run it on a machine with CUDA, from the repository root, in under 8 minutes:
#   bash bench/gpu_check.sh            # -> runs/gpu_check/summary.json (+ gpu-tests.log), one JSON summary printed last
# 1. the GPU tests (pytest -m gpu: CUDA worker vs CPU scores, precision parity, training on CUDA), at most 3 minutes;
# 2. bench/gpu_check.py: device peak, forward throughput per method/batch/precision with achieved FLOP/s, live vs
#    offline parity in fp32 and bf16, the pipeline ratio, cameras per GPU at 25 fps with p99 < 1 s.
# CPU-only machines: `bash bench/gpu_check.sh --cpu-smoke` runs step 2 on tiny sizes (what the test suite does).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${GPU_CHECK_OUT:-runs/gpu_check}
mkdir -p "$OUT"
if [ "${1:-}" = "--cpu-smoke" ]; then
  exec "$PY" bench/gpu_check.py --device cpu --quick --skip pipeline cameras --out "$OUT/summary.json"
fi
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check: torch sees no CUDA device (nvidia-smi: $(nvidia-smi -L 2>&1 | head -1)); nothing to check" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/nvidia-smi.txt"
started=$(date +%s)
tests_rc=0
timeout 180 "$PY" -m pytest -q -m gpu -p no:cacheprovider > "$OUT/gpu-tests.log" 2>&1 || tests_rc=$?
tail -3 "$OUT/gpu-tests.log"
timeout 330 "$PY" bench/gpu_check.py --device cuda --out "$OUT/summary.json" > "$OUT/check.log" 2>&1 || true
"$PY" - "$OUT" "$tests_rc" "$started" <<'PYEOF'
import json, pathlib, sys, time
out, rc, started = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {"error": "no summary"}
summary["gpu_tests"] = {"exit_code": rc, "last_line": (out / "gpu-tests.log").read_text().strip().splitlines()[-1:]}
summary["total_s"] = round(time.time() - started, 1)
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary))
PYEOF
