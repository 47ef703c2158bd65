"""A finished job's files: result.csv / result.json (the columns of `vigil score`), timeline.png, alerts.json.

Built from the job's score stream (one ScoreMsg per scored frame, published by the workers) plus what the
reader recorded: frame count, rate and the pts of the unscored warm-up frames.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import redis

from models.scored import ScoredVideo, write_scored
from models.store import ModelStore
from service.bus import keys, topics
from service.errors import VigilServiceError
from service.messages import JobRecord
from service.settings import Settings

RESULT_FILES = {"csv": "result.csv", "json": "result.json", "png": "timeline.png", "alerts": "alerts.json"}
_MAX_ALERTS = 10_000


class JobFailed(VigilServiceError):
    """The job cannot produce results; the message is the reason shown in `GET /jobs/{id}`."""


def job_dir(settings: Settings, job_id: str) -> Path:
    return settings.jobs.dir / job_id


def write_results(job: JobRecord, r: redis.Redis, settings: Settings, store: ModelStore) -> JobRecord:
    """Assemble and write the job's files; returns the record marked done (or raises JobFailed)."""
    from models.evaluate.report import plot_scored  # matplotlib: imported when the first job finishes

    progress = topics.job_progress(r, job.id)
    total = int(progress["frames_total"])
    head_pts: list[float] = json.loads(progress["head_pts"])
    fps = float(progress["fps"])
    signal_names = tuple(store.resolve(job.model).card().signal_names)
    context = min(job.context, total)
    pts = np.arange(total, dtype=np.float64) / fps  # overwritten by each frame's own pts below
    pts[: len(head_pts)] = head_pts
    raw = np.full((total, len(signal_names)), np.nan, dtype=np.float32)  # (N, S), unscored rows NaN
    scores = np.full(total, np.nan, dtype=np.float64)  # (N,)
    alertable = np.zeros(total, dtype=bool)
    for _, s in topics.read_scores(r, keys.job_stream(job.id), count=None):
        if 0 <= s.frame < total:
            raw[s.frame], scores[s.frame], alertable[s.frame] = s.signals, s.score, s.alertable
            if s.pts is not None:
                pts[s.frame] = s.pts
    missing = int(np.isnan(scores[context:]).sum())
    if missing:
        msg = f"{missing} of {total - context} frames got no score (the workers could not score them; see their logs)"
        raise JobFailed(msg)
    scored = ScoredVideo(
        name=Path(job.name).stem or job.id,
        fps=fps,
        pts=pts,
        raw=raw,
        scores=scores,
        signal_names=signal_names,
        context=context,
        alertable=alertable,
    )
    out = job_dir(settings, job.id)
    staging = out / ".results"  # write_scored names files after the video; they are renamed to fixed names
    staging.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = write_scored(scored, staging, job.model)
    csv_path.replace(out / RESULT_FILES["csv"])
    json_path.replace(out / RESULT_FILES["json"])
    shutil.rmtree(staging, ignore_errors=True)
    plot_scored(scored, out / RESULT_FILES["png"], settings.alerts.threshold)
    alerts = topics.list_alerts(r, limit=_MAX_ALERTS, camera=keys.job_stream(job.id)).alerts
    latest = {a.id: a.model_dump(mode="json") for a in alerts}  # an alert comes back after each change: keep the last
    (out / RESULT_FILES["alerts"]).write_text(json.dumps(list(latest.values())))
    return job.model_copy(
        update={"state": "done", "reason": "", "frames_scored": total - context, "alerts": len(latest)}
    )
