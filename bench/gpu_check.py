"""The GPU check: one run, one JSON summary (run it through `bench/gpu_check.sh` on a machine with CUDA).

Sections, each bounded in time so the whole check fits in 8 minutes on one GPU:
- `device`: name, memory, torch/CUDA versions, and the peak the card reaches on a large matmul (bf16 and fp32 with
  TF32 off), which the forward rates below are compared with (a datasheet peak is also given for known cards);
- `forward`: per method and preset, frames/s of `method.score` on full batches of windows at several batch sizes,
  in fp32 and bf16 autocast, with the FLOPs of one window (torch's FlopCounterMode) -> achieved FLOP/s and its share
  of the measured peak;
- `parity`: the same frames scored offline (`models.inference.score_frames`, what `vigil score`/`eval` run) and the
  way the worker does (`service.worker.inference.score_frames`), in fp32 and in bf16: largest raw-signal and
  calibrated-score differences (the card's `precision` says which one its calibration was fitted in);
- `pipeline`: `bench/pipeline.py` (the live pipeline's frames/s against the bare forward rate) for FFP tiny and small;
- `cameras`: `bench/latency.py` with growing camera counts at 25 fps, the largest count whose p99 frame-to-score
  latency stays under 1 s, for FFP small and paper.

`--device cpu --quick` runs every section on tiny sizes in seconds: the default test run does that, so the script
is known to work before a GPU is ever lent (tests/bench/test_gpu_check.py).

    .venv/bin/python bench/gpu_check.py --out runs/gpu_check.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models
from models.calibration import fit_calibration
from models.calibration.camera import CalibrationParams, CameraCalibrator
from models.inference import score_frames as offline_score_frames

BENCH = Path(__file__).resolve().parent
# Dense datasheet peaks (TFLOP/s), for orientation beside the measured matmul peak.
DATASHEET_TFLOPS = {
    "H100": {"bf16": 989.0, "fp32": 67.0},
    "H200": {"bf16": 989.0, "fp32": 67.0},
    "A100": {"bf16": 312.0, "fp32": 19.5},
}
METHODS = [
    ("ffp", "small"),
    ("ffp", "paper"),
    ("dast", "small"),
    ("f2lm", "small"),
    ("gcl", "tiny"),
    ("vadclip", "tiny"),
    ("flowmem", "paper"),  # its DIS flow runs on the CPU whatever the device; its FLOPs count the torch part only
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Any, device: torch.device, min_s: float, max_iters: int = 1000) -> tuple[float, int]:
    """(seconds per call, calls) after two warm-up calls, running for at least `min_s`."""
    fn()
    fn()
    _sync(device)
    start, n = time.perf_counter(), 0
    while n < max_iters and (n < 3 or time.perf_counter() - start < min_s):
        fn()
        n += 1
    _sync(device)
    return (time.perf_counter() - start) / n, n


def device_section(device: torch.device, quick: bool) -> dict[str, Any]:
    n = 512 if quick else 8192
    out: dict[str, Any] = {"type": device.type, "torch": torch.__version__, "cpu_cores": os.cpu_count()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda)
        out["datasheet_tflops"] = next((v for k, v in DATASHEET_TFLOPS.items() if k in props.name), None)
    peaks = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        if device.type == "cpu" and name == "bf16" and not quick:
            continue
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        torch.backends.cuda.matmul.allow_tf32 = False
        per_call, _ = _timed(lambda a=a, b=b: a @ b, device, 0.5 if quick else 3.0)
        peaks[name] = 2 * n**3 / per_call
    out["measured_peak_tflops"] = {k: round(v / 1e12, 2) for k, v in peaks.items()}
    out["_peaks"] = peaks
    return out


def _window_flops(method: models.AnomalyMethod, window: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        method.score(window[:1])
    return int(counter.get_total_flops())


def forward_section(device: torch.device, quick: bool, peaks: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    methods = METHODS[:1] if quick else METHODS
    for name, preset in methods:
        if name not in models.list_methods():
            continue
        config = models.get_method(name).make_config("tiny" if quick else preset)
        method = models.create_method(config).eval().to(device)
        spec = method.input_spec
        t = spec.context + 8
        flops = None
        for batch in (1, 2) if quick else (1, 8, 32):
            frames = torch.rand(batch, t, spec.channels, spec.height, spec.width, device=device)
            if flops is None:
                try:
                    flops = _window_flops(method, frames)
                except Exception as e:  # an op the counter does not know: report rates without FLOP/s
                    flops = 0
                    print(f"flop count of {name}/{preset} failed: {e}", file=sys.stderr)
            for precision in ("fp32", "bf16"):
                if precision == "bf16" and device.type != "cuda" and not quick:
                    continue
                dtype = torch.bfloat16 if precision == "bf16" else None

                def step(frames: torch.Tensor = frames, dtype: torch.dtype | None = dtype, m: Any = method) -> None:
                    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                        m.score(frames)

                try:
                    per_call, _ = _timed(step, device, 0.3 if quick else 2.0, 200)
                except RuntimeError as e:  # out of memory at this batch
                    rows.append(
                        {
                            "method": name,
                            "preset": preset,
                            "batch": batch,
                            "precision": precision,
                            "error": str(e)[:200],
                        }
                    )
                    continue
                frames_per_s = batch * 8 / per_call
                achieved = flops * batch / per_call if flops else None
                rows.append(
                    {
                        "method": name,
                        "preset": "tiny" if quick else preset,
                        "batch": batch,
                        "precision": precision,
                        "frames_per_s": round(frames_per_s, 1),
                        "gflops_per_window": round(flops / 1e9, 3) if flops else None,
                        "achieved_tflops": round(achieved / 1e12, 3) if achieved else None,
                        "share_of_peak": round(achieved / peaks[precision], 4)
                        if achieved and precision in peaks
                        else None,
                    }
                )
        del method
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def parity_section(device: torch.device, quick: bool) -> dict[str, Any]:
    """Offline (vigil score/eval) against the worker's scoring path, fp32 and bf16, on the same synthetic frames; the
    scores through the camera calibration both paths share."""
    from models.io import build_card
    from service.worker.inference import score_frames as worker_score_frames
    from service.worker.models import LoadedModel

    method = models.create_method(models.get_method("ffp").make_config("tiny")).eval().to(device)
    spec = method.input_spec
    rng = np.random.default_rng(0)
    n_frames = spec.context + (32 if quick else 256)
    frames = rng.integers(0, 255, (n_frames, spec.height, spec.width, spec.channels), dtype=np.uint8)
    reference = offline_score_frames(method, frames, device=device, precision="fp32")
    cal = fit_calibration(reference.astype(np.float64), list(method.signal_names), fps=25.0)
    out: dict[str, Any] = {}
    for precision in ("fp32", "bf16"):
        offline = offline_score_frames(method, frames, device=device, precision=precision)
        card = build_card(method, "parity", calibration=cal).model_copy(update={"precision": precision})
        loaded = LoadedModel(ref="parity@v1", method=method, card=card, calibration=cal)
        starts = range(spec.context, n_frames - 7, 8)  # the worker's windows: context frames, then 8 to score
        windows = [frames[i - spec.context : i + 8] for i in starts]
        live = worker_score_frames(loaded, windows, device).reshape(-1, offline.shape[1])
        n = min(len(live), len(offline))
        scores = [
            CameraCalibrator(cal, "parity@v1", CalibrationParams()).step(raw, np.arange(n) / 25.0, 0.4).scores
            for raw in (offline[:n].astype(np.float64), live[:n])
        ]
        out[precision] = {
            "frames": int(n),
            "card_precision": card.precision,
            "max_raw_diff_live_vs_offline": float(np.abs(offline[:n] - live[:n]).max()),
            "max_score_diff_live_vs_offline": float(np.abs(scores[0] - scores[1]).max()),
            "max_raw_diff_vs_fp32": float(np.abs(offline[:n] - reference[:n]).max()),
        }
    return out


def _json_lines(cmd: list[str], timeout_s: float) -> list[dict[str, Any]]:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=BENCH.parent)
    except subprocess.TimeoutExpired as e:
        return [
            {"error": f"timed out after {timeout_s} s", "stdout": (e.stdout or b"")[-500:].decode(errors="replace")}
        ]
    rows = []
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            rows.append(json.loads(line))
    if done.returncode != 0 or not rows:
        rows.append({"error": f"exit {done.returncode}", "stderr": done.stderr[-800:]})
    return rows


def pipeline_section(quick: bool, budget_s: float) -> list[dict[str, Any]]:
    rows = []
    for preset in ("tiny",) if quick else ("tiny", "small"):
        frames = "40" if quick else "1500"  # ingest busy throughout the measured span
        cmd = [sys.executable, str(BENCH / "pipeline.py"), "--preset", preset, "--cameras", "4", "--frames", frames]
        rows.extend(_json_lines(cmd, budget_s))
    return rows


def cameras_section(quick: bool, budget_s: float) -> list[dict[str, Any]]:
    """Largest camera count with p99 < 1 s at 25 fps, per preset (camera counts doubling until it fails)."""
    rows = []
    for preset in ("tiny",) if quick else ("small", "paper"):
        counts = ["1", "2"] if quick else ["4", "8", "16", "32", "64"]
        seconds = "2" if quick else "6"
        cmd = [
            sys.executable,
            str(BENCH / "latency.py"),
            "--preset",
            preset,
            "--cameras",
            *counts,
            "--seconds",
            seconds,
        ]
        results = _json_lines(cmd, budget_s)
        ok = [
            r["cameras"]
            for r in results
            if "p99_ms" in r and r["p99_ms"] < 1000 and r["frames"] == r["expected_frames"]
        ]
        rows.append({"preset": preset, "runs": results, "cameras_with_p99_under_1s": max(ok) if ok else 0})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the CPU check that the script works)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["forward", "parity", "pipeline", "cameras"])
    parser.add_argument("--out", type=Path, help="also write the summary here")
    args = parser.parse_args()
    device = torch.device(
        "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device.replace("auto", "cpu")
    )
    started = time.monotonic()
    summary: dict[str, Any] = {"device": device_section(device, args.quick)}
    peaks = summary["device"].pop("_peaks")
    if "forward" not in args.skip:
        summary["forward"] = forward_section(device, args.quick, peaks)
    if "parity" not in args.skip:
        summary["parity"] = parity_section(device, args.quick)
    if "pipeline" not in args.skip:
        summary["pipeline"] = pipeline_section(args.quick, 60 if args.quick else 150)
    if "cameras" not in args.skip:
        summary["cameras"] = cameras_section(args.quick, 60 if args.quick else 150)
    summary["elapsed_s"] = round(time.monotonic() - started, 1)
    text = json.dumps(summary, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
