"""`vigil score FILE_OR_FOLDER --model REF`: in-process batch scoring (no Redis) -> per-video CSV, JSON and PNG."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from cli.options import add_scoring_options

if TYPE_CHECKING:
    from models.scored import ScoredVideo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input", type=Path, help="a video file, a folder of videos, a folder of frames, or a dataset root (test split)"
    )
    parser.add_argument("--model", required=True, help="model reference: name, name@v3 or name@production")
    add_scoring_options(parser, "score")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

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
    method, card, version = load_model(store, args.model, device)
    if card.calibration is None:
        print(f"warning: {version.ref} has no calibration; writing raw signals only, the score column stays empty")
    videos = open_dataset(args.input, "test")
    out = args.out or Path("runs") / "score" / f"{version.name}-{version.version}"
    out.mkdir(parents=True, exist_ok=True)
    threshold = settings.alerts.threshold
    context = method.input_spec.context
    total = sum(max(v.num_frames - context, 0) for v in videos)
    with tqdm(total=total, unit="frame", desc=f"score {version.ref}") as bar:
        for v in videos:
            scored = score_reader(method, card, v.reader, args.batch_size, device=device, progress=bar.update)
            write_scored(scored, out, version.ref)
            plot_scored(scored, out / f"{scored.name}.png", threshold if scored.scores is not None else None)
            bar.write(_summary(scored, threshold))
    print(f"wrote {len(videos)} video(s) to {out}")
    return 0


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
