"""The alert yardstick: what an operator would get on pseudo-anomalies in held-out normal footage, without a label.

`models/evaluate/pseudo.py` injects events into held-out normal videos and ranks frames (a pseudo AUC); a ranking can
improve while the alerts at the shipped threshold fire less. `pseudo_alerts` runs the pseudo videos through the same
camera calibration and alert machine as `vigil eval` and the worker (`service/alerts/offline.py`) at the shipped
settings and reports the events an operator would be alerted to. scripts/curve.py chooses recipes with it (--alerts).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.calibration.camera import CameraReference, fit_from_footage
from models.card import Calibration
from models.evaluate.events import event_metrics
from models.evaluate.pseudo import ALL_KINDS, PseudoVideo
from service.alerts.offline import Recording, run_camera
from service.messages import AlertParams
from service.settings import get_settings


def pseudo_alerts(
    card: Calibration,
    normal: list[np.ndarray],
    raw: list[np.ndarray],
    videos: list[PseudoVideo],
    context: int,
    fps: float,
) -> dict[str, Any]:
    """The alerts an operator would get on a pseudo set: its videos back to back as one camera (stream mode) through
    the service's calibration and alert machine (`service/alerts/offline.py`, as `vigil eval`) at the shipped alert
    and calibration settings, the camera's reference learned from `normal` (raw signals of every training video, as
    `vigil eval --learn-from train`). Event recall overall and per kind, false alerts per hour and normal time in
    alerts of the pseudo stream."""
    settings = get_settings()
    params = settings.calibration  # what the worker calibrates cameras with (worker/main.py)
    machine = AlertParams.merge(settings.alerts, None)
    profile = fit_from_footage(card, [r.astype(np.float64) for r in normal], fps, params, "every training video")
    reference = CameraReference(model="yardstick", version=1, profiles={"colour": profile, "mono": profile})
    recordings = [
        Recording(v.name, r.astype(np.float64), (context + np.arange(len(r))) / fps)
        for r, v in zip(raw, videos, strict=True)
    ]
    run = run_camera(card, "yardstick", recordings, params, machine, "stream", reference)
    names = [v.name for v in videos]
    result = event_metrics([v.labels[context:] for v in videos], run.spans, fps, "stream", names)
    out: dict[str, Any] = {
        "recall": result.recall,
        "events": result.events,
        "detected": result.detected,
        "false_alerts_per_hour": result.false_alerts_per_hour,
        "normal_in_alerts": result.normal_in_alerts,
        "delay_median_s": result.delay_median_s,
    }
    missed = [m.split(":")[0] for m in result.missed]
    for kind in ALL_KINDS:
        with_kind = [n for n in names if "+" in n and n.split("+")[1].rstrip("0123456789") == kind]
        if with_kind:  # one event per injected video
            out[f"recall_{kind}"] = 1 - sum(n in missed for n in with_kind) / len(with_kind)
    return out
