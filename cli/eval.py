"""`vigil eval MODEL --dataset PATH`: score every test video, report both protocols (JSON + PNG), optionally record."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.evaluate.protocols import EvalResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model reference: name, name@v3 or name@production")
    parser.add_argument("--dataset", required=True, type=Path, help="dataset root; its test split is scored")
    parser.add_argument("--registry", type=Path, help="model registry directory (default: VIGIL_STORE__ROOT)")
    parser.add_argument("--out", type=Path, help="output directory (default: runs/eval/<name>-<version>)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--batch-size", type=_positive, default=8, help="windows per forward pass (default: 8)")
    parser.add_argument("--record", action="store_true", help="write the metrics into the model card")


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        msg = f"must be >= 1, got {n}"
        raise argparse.ArgumentTypeError(msg)
    return n


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from models.errors import VigilModelError

    try:
        return _run(args)
    except (VigilModelError, ValidationError, ValueError) as e:
        print(f"vigil eval: {e}")
        return 1


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from models.data.datasets import dataset_fingerprint, open_dataset
    from models.errors import DatasetError
    from models.evaluate.protocols import VideoSignals, evaluate
    from models.evaluate.report import write_eval
    from models.inference import resolve_device, score_video
    from models.io import load_model
    from models.store import ModelStore
    from service.settings import get_settings

    store = ModelStore(args.registry or get_settings().store.root)
    device = resolve_device(args.device)
    method, card, version = load_model(store, args.model, device)
    videos = open_dataset(args.dataset, "test")
    unlabelled = [v.name for v in videos if v.labels is None]
    if unlabelled:
        msg = (
            f"{args.dataset} has no ground truth for test videos {', '.join(unlabelled[:5])}; "
            "evaluation needs a *.mat, *.m, frame_labels_*.npy or test_frame_mask/ (see `vigil eval --help`)"
        )
        raise DatasetError(msg)
    context = method.input_spec.context
    total = sum(max(v.num_frames - context, 0) for v in videos)
    signals = []
    with tqdm(total=total, unit="frame", desc=f"eval {version.ref}") as bar:
        for v, labels in [(v, v.labels) for v in videos if v.labels is not None]:  # all, after the check above
            _, raw = score_video(method, v.reader, batch_size=args.batch_size, device=device, progress=bar.update)
            signals.append(VideoSignals(v.name, raw, labels))
    result, scores = evaluate(
        signals, context, list(method.signal_names), card.calibration, model=version.ref, dataset=str(args.dataset)
    )
    out = args.out or Path("runs") / "eval" / f"{version.name}-{version.version}"
    json_path, png_path = write_eval(result, scores, [s.labels for s in signals], [s.name for s in signals], out)
    _print_table(result)
    print(f"wrote {json_path} and {png_path}")
    if args.record:
        entry = {
            **result.summary(),
            "dataset": str(args.dataset),
            "dataset_fingerprint": dataset_fingerprint(videos),
            "num_videos": len(videos),
            "num_frames": result.paper.num_frames,
            "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        store.write_card(version, card.model_copy(update={"metrics": {**card.metrics, "eval": entry}}))
        print(f"recorded the metrics in the card of {version.ref}")
    return 0


def _print_table(result: EvalResult) -> None:
    def fmt(value: Any) -> str:
        return "-" if value is None else f"{value:.4f}"

    online = result.online
    rows = [
        ("micro AUC", result.paper.micro_auc, online.micro_auc if online else None),
        ("macro AUC", result.paper.macro_auc, online.macro_auc if online else None),
        ("EER", result.paper.eer, online.eer if online else None),
    ]
    print(
        f"{result.model} on {result.dataset}: {result.paper.num_frames} scored frames, "
        f"{result.paper.num_anomalous} anomalous"
    )
    print(f"{'':<10}  {'paper':>8}  {'online':>8}")
    for name, paper, onl in rows:
        print(f"{name:<10}  {fmt(paper):>8}  {fmt(onl):>8}")
    if online is None:
        print(f"online protocol skipped: {result.online_skipped}")
