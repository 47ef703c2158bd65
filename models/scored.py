"""Per-frame scores of one video and their CSV/JSON files: shared by `vigil score` and the API's batch jobs.

No torch here, so the ingester that assembles a job's results does not import it.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ScoredVideo:
    """Per-frame output for one video. Arrays have one row per decoded frame; unscored frames hold NaN.

    raw: (N, S) raw signals; scores: (N,) calibrated in [0, 1], or None when the model has no calibration.
    """

    name: str
    fps: float
    pts: np.ndarray  # (N,) seconds
    raw: np.ndarray  # (N, S) float32, first `context` rows NaN
    scores: np.ndarray | None  # (N,) float64, first `context` entries NaN
    signal_names: tuple[str, ...]
    context: int
    alertable: np.ndarray | None = None  # (N,) bool: the frame could open or extend an alert (camera scores only)

    @property
    def num_frames(self) -> int:
        return len(self.pts)

    def records(self) -> list[dict[str, object]]:
        """One JSON-ready dict per frame: frame, pts (s), score (None before `context`), raw signals by name."""
        out: list[dict[str, object]] = []
        for i in range(self.num_frames):
            scored = i >= self.context
            score = float(self.scores[i]) if scored and self.scores is not None else None
            raw = {n: float(v) for n, v in zip(self.signal_names, self.raw[i], strict=True)} if scored else None
            record: dict[str, object] = {"frame": i, "pts": float(self.pts[i]), "score": score, "raw": raw}
            if self.alertable is not None:
                record["alertable"] = bool(self.alertable[i]) if scored else None
            out.append(record)
        return out


def write_scored(scored: ScoredVideo, out: Path, model_ref: str) -> tuple[Path, Path]:
    """<out>/<video>.csv and .json: frame, pts (s), score (empty before `context`), raw signals."""
    records = scored.records()
    csv_path = out / f"{scored.name}.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        flags = ["alertable"] if scored.alertable is not None else []
        writer.writerow(["frame", "pts", "score", *flags, *scored.signal_names])
        for r in records:
            raw = r["raw"]
            names = scored.signal_names
            values = [f"{raw[n]:.7g}" for n in names] if isinstance(raw, dict) else [""] * len(names)  # float32 digits
            score = r["score"]
            alertable = [{None: "", True: "1", False: "0"}[r["alertable"]]] if flags else []  # type: ignore[index]
            text = "" if score is None else f"{score:.6f}"
            writer.writerow([r["frame"], f"{r['pts']:.6f}", text, *alertable, *values])
    json_path = out / f"{scored.name}.json"
    document = {
        "video": scored.name,
        "model": model_ref,
        "fps": scored.fps,
        "context": scored.context,
        "signal_names": list(scored.signal_names),
        "calibrated": scored.scores is not None,
        "frames": records,
    }
    json_path.write_text(json.dumps(document, allow_nan=False))
    return csv_path, json_path
