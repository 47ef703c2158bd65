"""How the camera calibration's drift tracking behaves: slow shifts followed, anomalies not absorbed.

A camera learns its reference from 3 minutes of correlated normal noise (the smoothed-error statistics of a real
camera: unit spread, lag-1 correlation 0.8) at 10 fps, then sees, for each drift time constant:
- a ramp: its normal level rises by 3 spreads over 30 minutes (light, weather), then stays there 30 minutes;
- a step: the level jumps by 1.5 spreads (a busier scene) and stays there 30 minutes;
- an anomaly lasting 5 minutes (5 spreads above normal), then normal footage again;
- an anomaly that creeps up over 2 minutes to the same level and stays 3 minutes (smoke, a slowly forming crowd).
Printed per case: alerts, share of time in alerts and where the drift offset ended, through the service's own
calibration and alert machine (service/alerts/offline.py) at the default alert settings.

    .venv/bin/python scripts/calibration_drift.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.calibration import fit_calibration
from models.calibration.camera import CalibrationParams, CameraReference, fit_from_footage
from service.alerts.offline import Recording, run_camera
from service.messages import AlertParams
from service.settings import AlertSettings

FPS = 10.0
MIN = int(60 * FPS)


def noise(n: int, seed: int) -> np.ndarray:
    """Unit-spread correlated noise in the units of the card's standardised signal."""
    rho = 0.8
    return np.asarray(lfilter([1.0], [1.0, -rho], np.random.default_rng(seed).normal(size=n) * np.sqrt(1 - rho**2)))


def main() -> None:
    card = fit_calibration(noise(3000, 0)[:, None], ["err"], fps=FPS)  # raw == standardised (centre 0, scale ~1)
    scale = card.signals[0].scale
    alerts = AlertParams.merge(AlertSettings(), None)
    cases = {
        "ramp +3 over 30 min, then 30 min there": np.r_[np.linspace(0, 3, 30 * MIN), np.full(30 * MIN, 3.0)],
        "step +1.5, 30 min": np.full(30 * MIN, 1.5),
        "anomaly +5 for 5 min, then 10 min normal": np.r_[np.full(5 * MIN, 5.0), np.zeros(10 * MIN)],
        "anomaly creeping to +5 over 2 min, 3 min there": np.r_[np.linspace(0, 5, 2 * MIN), np.full(3 * MIN, 5.0)],
    }
    print(f"alerts at threshold {alerts.threshold}, hysteresis {alerts.hysteresis}; 10 fps; levels in spreads")
    for tau in (60.0, 300.0, 600.0):
        params = CalibrationParams(drift_tau_s=tau)
        learned = fit_from_footage(card, [noise(3 * MIN, 1)[:, None] * scale], FPS, params, "3 min")
        reference = CameraReference(model="m@v1", version=1, profiles={"colour": learned})
        for i, (name, shift) in enumerate(cases.items()):
            z = (noise(len(shift), 10 + i) + shift) * scale
            run = run_camera(card, "m@v1", [Recording(name, z[:, None], np.arange(len(z)) / FPS)], params, alerts,
                             "stream", reference)  # fmt: skip
            rec = run.recordings[0]
            inside = sum(s.end - s.start + 1 for s in run.spans) / len(z)
            longest = max((s.end - s.start + 1 for s in run.spans), default=0) / FPS
            drift = float(rec.levels[-1] - rec.values[-1]) / learned.spread  # in spreads of the learned reference
            print(
                f"tau {tau:>6.0f} s | {name:<44} | alerts {len(run.spans):>3} | time in alerts {inside:6.1%} | "
                f"longest {longest:6.0f} s | drift offset at the end {drift:+.2f}"
            )


if __name__ == "__main__":
    main()
