"""Choose alert defaults on normal footage only: cross-validated false alerts per hour on a dataset's training videos.

The training videos of a camera are all normal. They are split into folds; each fold's videos are played back to back
as one camera whose reference was learned from the other folds (as `vigil eval --learn-from train` learns from the
training split), through the service's calibration and alert machine, and every alert counts as a false alert.
Printed per threshold: realised false alerts per hour, the share of time inside alerts, and (to check the score
scale) the realised rate of rises above the level against the rate the scale predicts. Test videos are never read.

    .venv/bin/python scripts/alert_defaults.py ffp-small --dataset ../shared/datasets/ucsd_ped2 --fps 10 \
        --registry runs/registry --folds 4
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cli.calibration import recording
from models.calibration.camera import CalibrationParams, CameraReference, fit_from_footage
from models.calibration.reference import score_to_rate
from models.data.datasets import open_dataset
from models.inference import resolve_device
from models.io import load_model
from models.store import ModelStore
from service.alerts.offline import run_camera
from service.messages import AlertParams
from service.settings import get_settings

THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--fps", type=float, required=True, help="frame rate of the footage")
    parser.add_argument("--registry", type=Path, default=None)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    args = parser.parse_args()
    settings = get_settings()
    method, card, version = load_model(ModelStore(args.registry or settings.store.root), args.model, "cpu")
    assert card.calibration is not None, "the model has no calibration"
    params = CalibrationParams.model_validate(
        settings.calibration.model_dump(include=set(CalibrationParams.model_fields))
    )
    defaults = AlertParams.merge(settings.alerts, None)
    videos = open_dataset(args.dataset, "train")
    recs = [recording(method, v, args.fps, 8, resolve_device("cpu")) for v in videos]
    folds = [list(range(i, len(recs), args.folds)) for i in range(args.folds)]
    rows = []
    for threshold in THRESHOLDS:
        alerts = defaults.model_copy(update={"threshold": threshold})
        false, frames, inside, rises, predicted = 0, 0, 0, 0, 0.0
        for held in folds:
            learn = [r for i, r in enumerate(recs) if i not in held]
            ref = fit_from_footage(card.calibration, [r.raw for r in learn], args.fps, params, "other folds")
            reference = CameraReference(model=version.ref, version=1, profiles={"colour": ref})
            run = run_camera(
                card.calibration, version.ref, [recs[i] for i in held], params, alerts, "stream", reference
            )
            scores = np.concatenate([r.scores for r in run.recordings])
            false += len(run.spans)
            frames += len(scores)
            inside += sum(s.end - s.start + 1 for s in run.spans)
            above = scores >= threshold
            rises += int(np.sum(above[1:] & ~above[:-1]) + above[0])
            predicted += score_to_rate(threshold) * len(scores) / args.fps / 3600
        hours = frames / args.fps / 3600
        rows.append(
            {
                "threshold": threshold,
                "false_alerts_per_hour": false / hours,
                "false_alerts": false,
                "normal_in_alerts": inside / frames,
                "rises_per_hour": rises / hours,
                "predicted_rises_per_hour": predicted / hours,
                "hours": hours,
            }
        )
        r = rows[-1]
        print(
            f"threshold {threshold:.2f}: {r['false_alerts']} false alerts in {hours * 60:.1f} min = "
            f"{r['false_alerts_per_hour']:.1f}/h, {r['normal_in_alerts']:.1%} of the time in alerts; "
            f"rises above it {r['rises_per_hour']:.1f}/h (the scale says {r['predicted_rises_per_hour']:.1f}/h)"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"model": version.ref, "folds": args.folds, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
