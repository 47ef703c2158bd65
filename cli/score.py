"""`vigil score FILE_OR_FOLDER --model REF`: in-process batch scoring (no Redis) -> per-video CSV, JSON, PNG, alerts.

The scores are the ones a camera would publish for the same frames (service/alerts/offline.py): the camera's
reference comes from `--learn-from` (default `card`: the model card's held-out normal frames, so every frame can
alert; `first` learns from the input's first seconds as a new live camera does, alerts held back meanwhile), and
the alerts are the service's alert machine at VIGIL_ALERTS__* (`vigil replay` tries other parameters on the output).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from cli.calibration import add_calibration_options
from cli.options import add_scoring_options

if TYPE_CHECKING:
    from models.base import AnomalyMethod
    from models.card import ModelCard
    from models.data.datasets import LabeledVideo
    from models.scored import ScoredVideo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input", type=Path, help="a video file, a folder of videos, a folder of frames, or a dataset root (test split)"
    )
    parser.add_argument("--model", required=True, help="model reference: name, name@v3 or name@production")
    parser.add_argument(
        "--mode",
        choices=["per-video", "stream"],
        default="per-video",
        help="per-video: each video is its own camera session; stream: the videos back to back as one camera",
    )
    add_scoring_options(parser, "score")
    add_calibration_options(parser, "card")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from models.cpu_memory import keep_freed_memory_for
    from models.data.datasets import open_dataset
    from models.evaluate.report import plot_scored
    from models.inference import resolve_device, score_reader
    from models.io import load_model
    from models.scored import write_scored
    from models.store import ModelStore
    from service.settings import get_settings

    settings = get_settings()
    store = ModelStore(args.registry or settings.store.root)
    device = resolve_device(args.device)
    keep_freed_memory_for(device.type)  # the batches' activations are reused, not page-faulted in again
    method, card, version = load_model(store, args.model, device)
    if card.calibration is None:
        print(f"warning: {version.ref} has no calibration; writing raw signals only, the score column stays empty")
    videos = open_dataset(args.input, "test")
    out = args.out = args.out or Path("runs") / "score" / f"{version.name}-{version.version}"
    out.mkdir(parents=True, exist_ok=True)
    threshold = settings.alerts.threshold
    context = method.input_spec.context
    total = sum(max(v.num_frames - context, 0) for v in videos)
    with tqdm(total=total, unit="frame", desc=f"score {version.ref}") as bar:
        scored = [
            score_reader(method, card, v.reader, args.batch_size, device=device, progress=bar.update) for v in videos
        ]
    if card.calibration is not None:
        scored = _as_camera(args, method, card, version.ref, scored, device, videos)
    for one in scored:
        write_scored(one, out, version.ref)
        plot_scored(one, out / f"{one.name}.png", threshold if one.scores is not None else None)
        print(_summary(one, threshold))
    print(f"wrote {len(videos)} video(s) to {out}")
    return 0


def _as_camera(
    args: argparse.Namespace,
    method: AnomalyMethod,
    card: ModelCard,
    ref: str,
    scored: list[ScoredVideo],
    device: object,
    videos: list[LabeledVideo],
) -> list[ScoredVideo]:
    """The videos through the camera's health checks, calibration and alert machine; writes <video>.alerts.json
    (the alerts and the health events) beside the scores."""
    import dataclasses
    import json

    import numpy as np

    from cli.calibration import calibration_params, learned_reference, recording_health
    from service.alerts.offline import Recording, run_camera
    from service.messages import AlertParams
    from service.settings import get_settings

    assert card.calibration is not None  # checked by the caller
    params = calibration_params(args)
    alerts = AlertParams.merge(get_settings().alerts, None)
    reference = learned_reference(args.learn_from, method, card.calibration, ref, params, args, device)  # type: ignore[arg-type]
    fps = [float(args.fps) if args.fps else s.fps for s in scored]
    healths = [recording_health(v, f, method.input_spec.context) for v, f in zip(videos, fps, strict=True)]
    recordings = [
        Recording(
            s.name,
            s.raw[s.context :].astype(np.float64),
            (s.context + np.arange(s.num_frames - s.context)) / f,
            *h.scored(s.context),
        )
        for s, f, h in zip(scored, fps, healths, strict=True)
    ]
    run = run_camera(card.calibration, ref, recordings, params, alerts, args.mode, reference, camera="score")
    out_dir = Path(args.out)
    result = []
    for s, camera, health in zip(scored, run.recordings, healths, strict=True):
        scores = np.full(s.num_frames, np.nan)
        scores[s.context :] = camera.scores
        alertable = np.zeros(s.num_frames, dtype=bool)
        alertable[s.context :] = camera.alertable
        result.append(dataclasses.replace(s, scores=scores, alertable=alertable))
        fields = ("start_frame", "end_frame", "peak_frame", "opened_frame")  # scored-frame indices -> video frames
        local = [
            a.model_copy(update={k: getattr(a, k) + s.context for k in fields if getattr(a, k) is not None})
            for a in camera.alerts
        ]
        document = {
            "video": s.name,
            "model": ref,
            "params": alerts.model_dump(),
            "alerts": [a.model_dump(mode="json") for a in local],
            "health": [
                {"frame": frame, "t": t, "condition": c.condition, "kind": c.kind, "detail": c.detail}
                for frame, t, c in health.events
            ],
        }
        (out_dir / f"{s.name}.alerts.json").write_text(json.dumps(document, indent=1))
    return result


def _summary(scored: ScoredVideo, threshold: float) -> str:
    if scored.scores is None or scored.num_frames <= scored.context:
        return f"{scored.name}: {scored.num_frames} frames (no calibrated scores)"
    valid = scored.scores[scored.context :]
    above = int((valid >= threshold).sum())
    peak = float(valid.max())
    peak_at = float(scored.pts[scored.context + int(valid.argmax())])
    return (
        f"{scored.name}: {scored.num_frames} frames, max score {peak:.3f} at {peak_at:.2f} s, "
        f"{above} frames >= {threshold:g}"
    )
