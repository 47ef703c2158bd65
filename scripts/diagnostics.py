"""Diagnostics quoted in docs/RESULTS.md, each recomputed from saved outputs (none of them chooses anything).

# per-signal AUCs of a multi-signal model from `vigil eval`'s signals.npz and the model's card
.venv/bin/python scripts/diagnostics.py signals runs/eval/f2lm-small-v1 --model f2lm-small --registry REG
# how far the card's calibration sits from the test videos' normal frames (online score of normal test frames)
.venv/bin/python scripts/diagnostics.py shift runs/eval/ffp-small-v1 --model ffp-small --registry REG
# one-class nearest-neighbour baseline on a snippet feature cache over a weak split
.venv/bin/python scripts/diagnostics.py knn runs/features/ped2-i3d --split ped2_weak --dataset PED2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.calibration import combine, smooth
from models.card import Calibration
from models.evaluate.metrics import roc_auc
from models.evaluate.protocols import paper_scores, scored_labels
from models.evaluate.report import load_signals
from models.store import ModelStore


def _card_calibration(model: str, registry: Path) -> tuple[Calibration, list[str], int]:
    card = ModelStore(registry).resolve(model).card()
    if card.calibration is None:
        msg = f"{model} has no calibration"
        raise SystemExit(msg)
    return card.calibration, card.signal_names, int(card.input_spec["context"])


def signals(args: argparse.Namespace) -> int:
    """Paper (per-video min-max) and online-raw (no normalisation) micro AUC of each raw signal on its own."""
    calibration, names, context = _card_calibration(args.model, args.registry)
    videos = load_signals(args.eval_dir / "signals.npz")
    labels = np.concatenate([scored_labels(v, context) for v in videos])
    out = {}
    for i, name in enumerate(names):
        one_hot = np.eye(len(names))[i]
        paper = np.concatenate([paper_scores(v.raw, one_hot) for v in videos])
        raw = np.concatenate([v.raw[:, i] for v in videos])
        out[name] = {"paper_micro_auc": roc_auc(labels, paper), "raw_micro_auc": roc_auc(labels, raw)}
    out["weights"] = {s.name: s.weight for s in calibration.signals}
    print(json.dumps(out, indent=2))
    return 0


def shift(args: argparse.Namespace) -> int:
    """Online scores of the *normal* test frames: the share above 0.95 and the median standardised signal (in
    units of the held-out scale, 0 = the held-out median) of normal and anomalous test frames."""
    from models.evaluate.protocols import online_scores

    calibration, _, context = _card_calibration(args.model, args.registry)
    videos = load_signals(args.eval_dir / "signals.npz")
    labels = np.concatenate([scored_labels(v, context) for v in videos])
    online = np.concatenate([online_scores(v.raw.astype(np.float64), calibration) for v in videos])
    combined = np.concatenate([combine(calibration, v.raw.astype(np.float64)) for v in videos])
    held = np.asarray(calibration.normal_values)
    smoothed_held = smooth(held, calibration.ema_alpha) if len(held) else held
    out = {
        "normal_test_frames": int((labels == 0).sum()),
        "normal_above_0.95": float((online[labels == 0] > 0.95).mean()),
        "normal_above_0.99": float((online[labels == 0] > 0.99).mean()),
        "median_standardised_normal_test": float(np.median(combined[labels == 0])),
        "median_standardised_anomalous_test": float(np.median(combined[labels == 1])),
        "median_standardised_held_out": float(np.median(held)) if len(held) else None,
        "held_out_above_0.95": float(
            (smoothed_held > np.interp(0.95, calibration.levels, calibration.quantiles)).mean()
        )
        if len(held)
        else None,
    }
    print(json.dumps(out, indent=2))
    return 0


def knn(args: argparse.Namespace) -> int:
    """Distance of each test snippet to its nearest training-normal snippet (L2 on the cached features); the
    published snippet alignment (each snippet's value on its own 16 frames); micro AUC over the split's test."""
    import torch

    from models.data.splits import load_split, read_test_labels
    from models.evaluate.protocols import snippet_frames
    from models.features.cache import FeatureCache

    cache = FeatureCache.open(args.cache)
    split = load_split(args.split)
    memory = torch.cat([cache.load(k) for k in split.train.normal])  # (N, D)
    labels = read_test_labels(args.dataset, split.test)
    scores, truth = [], []
    for key in split.test:
        distance = torch.cdist(cache.load(key), memory).amin(dim=1).double().numpy()[:, None]  # (S, 1)
        frames = snippet_frames(distance, len(labels[key]), cache.index.snippet_frames, causal=False)[:, 0]
        scores.append(frames)
        truth.append(labels[key][: len(frames)])
    y, s = np.concatenate(truth), np.concatenate(scores)
    print(json.dumps({"micro_auc": roc_auc(y, s), "frames": len(y), "memory_snippets": int(memory.shape[0])}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    for name in ("signals", "shift"):
        p = sub.add_parser(name)
        p.add_argument("eval_dir", type=Path, help="a `vigil eval` output folder (signals.npz)")
        p.add_argument("--model", required=True)
        p.add_argument("--registry", type=Path, required=True)
    k = sub.add_parser("knn")
    k.add_argument("cache", type=Path)
    k.add_argument("--split", default="ped2_weak")
    k.add_argument("--dataset", type=Path, required=True)
    args = parser.parse_args()
    return {"signals": signals, "shift": shift, "knn": knn}[args.action](args)


if __name__ == "__main__":
    sys.exit(main())
