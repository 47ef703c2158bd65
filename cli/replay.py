"""`vigil replay DIR --threshold ...`: the alerts other alert parameters would give on `vigil score` output.

Reads the per-video JSON files `vigil score` wrote (scores and the alertable flag of every frame) and runs the
service's alert machine over them with the given parameters (absent ones: VIGIL_ALERTS__*), per video or with the
videos back to back (`--mode stream`). Scores are not recomputed, so this takes well under a second for a day of
footage; `POST /cameras/{id}/replay` does the same over a live camera's archive.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scores", type=Path, help="a `vigil score` output folder (or one of its <video>.json files)")
    parser.add_argument("--threshold", type=float, help="alert threshold (default VIGIL_ALERTS__THRESHOLD)")
    parser.add_argument("--hysteresis", type=float, help="(default VIGIL_ALERTS__HYSTERESIS)")
    parser.add_argument("--min-duration-frames", type=int, help="(default VIGIL_ALERTS__MIN_DURATION_FRAMES)")
    parser.add_argument("--cooldown-frames", type=int, help="(default VIGIL_ALERTS__COOLDOWN_FRAMES)")
    parser.add_argument("--mode", choices=["per-video", "stream"], default="per-video")
    parser.add_argument("--out", type=Path, help="write the alerts as JSON here")


def _documents(path: Path) -> list[dict[str, Any]]:
    files = [path] if path.is_file() else sorted(p for p in path.glob("*.json") if not p.name.endswith(".alerts.json"))
    docs = [json.loads(p.read_text()) for p in files]
    docs = [d for d in docs if isinstance(d, dict) and "frames" in d and "video" in d]
    if not docs:
        msg = f"no `vigil score` output in {path}: expected <video>.json files with per-frame scores"
        raise ValueError(msg)
    missing = [d["video"] for d in docs if not d.get("calibrated")]
    if missing:
        msg = f"videos {', '.join(missing)} have no scores (their model had no calibration); score them again"
        raise ValueError(msg)
    return docs


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from service.alerts.machine import ScoreRun, replay
    from service.messages import AlertParams
    from service.settings import get_settings

    given = {
        "threshold": args.threshold,
        "hysteresis": args.hysteresis,
        "min_duration_frames": args.min_duration_frames,
        "cooldown_frames": args.cooldown_frames,
    }
    params = AlertParams.model_validate(
        {
            **AlertParams.merge(get_settings().alerts, None).model_dump(),
            **{k: v for k, v in given.items() if v is not None},
        }
    )
    docs = _documents(args.scores)
    runs = []
    for doc in docs:
        rows = [f for f in doc["frames"] if f["score"] is not None]
        frames = np.array([f["frame"] for f in rows], dtype=np.int64)
        scores = np.array([f["score"] for f in rows], dtype=np.float64)
        alertable = np.array([f.get("alertable", True) for f in rows], dtype=bool)
        runs.append((doc, frames, np.array([f["pts"] for f in rows]), scores, alertable))
    results: list[dict[str, Any]] = []
    if args.mode == "stream":
        offsets = np.cumsum([0, *[len(r[1]) for r in runs]])
        run = ScoreRun.held(
            np.concatenate([np.arange(len(r[1])) + o for r, o in zip(runs, offsets, strict=False)]),
            np.concatenate([r[2] for r in runs]),
            np.concatenate([r[3] for r in runs]),
            np.concatenate([r[4] for r in runs]),
        )
        alerts, _ = replay(run, params, "stream", docs[0]["model"])
        results.append({"videos": [d["video"] for d in docs], "alerts": [a.model_dump(mode="json") for a in alerts]})
        print(f"{len(docs)} videos back to back: {len(alerts)} alert(s)")
    else:
        for doc, frames, ts, scores, alertable in runs:
            alerts, _ = replay(ScoreRun.held(frames, ts, scores, alertable), params, doc["video"], doc["model"])
            results.append({"video": doc["video"], "alerts": [a.model_dump(mode="json") for a in alerts]})
            spans = ", ".join(f"{a.start_frame}-{a.end_frame if a.end_frame is not None else '...'}" for a in alerts)
            print(f"{doc['video']}: {len(alerts)} alert(s){': frames ' + spans if alerts else ''}")
    print(params.describe())
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"params": params.model_dump(), "mode": args.mode, "results": results}, indent=1)
        )
        print(f"wrote {args.out}")
    return 0
