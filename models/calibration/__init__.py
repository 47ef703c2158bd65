"""Calibration: raw signals -> scores in [0, 1].

- `card`: the model card's map, fitted on held-out normal videos at training time (standardise, combine,
  smooth, CDF). `vigil eval`'s frame-level "online" protocol and AUCs use it.
- `reference` and `camera`: what the service publishes. Each camera learns its own normal reference and scores
  frames by how often its normal footage would reach them (expected rises per hour), the same scale everywhere.

Pure numpy (plus pydantic state models), so the worker, the API and the offline tools share one implementation.
"""

from models.calibration.card import LEVELS, calibrate, combine, fit_calibration, smooth, to_unit

__all__ = ["LEVELS", "calibrate", "combine", "fit_calibration", "smooth", "to_unit"]
