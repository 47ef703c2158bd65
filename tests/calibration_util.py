"""What tests compare live scores with: the camera calibration path run offline (service/alerts/offline.py), and
the model card's reference installed on a camera as if learned (what POST /cameras/{id}/calibration {"source":
"card"} does), so a short synthetic clip can alert without first spending a learning period on it."""

from __future__ import annotations

import numpy as np
import redis

from models.calibration.camera import CalibrationParams, CameraReference, card_reference
from models.card import Calibration
from service import calibration
from service.alerts.offline import Recording, ScoredRecording, run_camera
from service.messages import AlertParams
from service.settings import AlertSettings

PROFILES = ("colour", "mono")


def card_camera_reference(card: Calibration, model: str, params: CalibrationParams | None = None) -> CameraReference:
    ref = card_reference(card, params or CalibrationParams())
    return CameraReference(model=model, version=1, profiles=dict.fromkeys(PROFILES, ref))


def use_card_reference(
    r: redis.Redis, camera: str, card: Calibration, model: str, params: CalibrationParams | None = None
) -> CameraReference:
    """Install the card's reference on `camera` for resolved `model` (through service.calibration, as the API does)."""
    ref = card_reference(card, params or CalibrationParams())
    reference, _ = calibration.install(r, camera, model, dict.fromkeys(PROFILES, ref))
    return reference


def offline_scores(
    card: Calibration,
    model: str,
    raw: np.ndarray,
    reference: CameraReference | None = None,
    params: CalibrationParams | None = None,
    alerts: AlertParams | None = None,
    fps: float = 25.0,
) -> ScoredRecording:
    """The scores (and alerts) a camera publishes for these consecutive frames' raw signals (at `fps`)."""
    run = run_camera(
        card,
        model,
        [Recording("clip", np.asarray(raw, dtype=np.float64), np.arange(len(raw), dtype=np.float64) / fps)],
        params or CalibrationParams(),
        alerts or AlertParams.merge(AlertSettings(), None),
        "stream",
        reference,
    )
    return run.recordings[0]
