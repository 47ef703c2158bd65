"""Accuracy against training CPU time, from the snapshots a run keeps (`snapshot_cpu_minutes` in its config).

    # points of one or more runs -> JSON (selection: the pseudo-anomaly yardstick on held-out training videos only)
    .venv/bin/python scripts/curve.py points runs/ffp-a runs/ffp-b --out runs/curves/ffp.json [--test]
    # registered versions fitted without snapshots (flowmem), on the same yardstick
    .venv/bin/python scripts/curve.py models flowmem-ped2@v1 --dataset ../shared/datasets/ucsd_ped2 --fps 10 \
        --registry runs/registry --kinds fast object shape --out runs/curves/flowmem.json [--test]
    # is a difference on the yardstick more than luck? (points scored with --resamples 1000)
    .venv/bin/python scripts/curve.py compare runs/curves/flowmem.json --base "flowmem-ped2@v1 kinds=..."
    # the PNG of RESULTS from such JSON files, and its table (markdown)
    .venv/bin/python scripts/curve.py plot runs/curves/ffp.json runs/curves/f2lm.json --out docs/img/curves.png
    .venv/bin/python scripts/curve.py table runs/curves/ffp.json runs/curves/f2lm.json

For each snapshot the method fits what it keeps beside its weights (FFP's `local` reference) on the run's other
training videos and is calibrated on its held-out training videos, exactly as `vigil train` does at the end of a
run, then scored on `models.evaluate.pseudo` (pseudo-anomalies injected into those held-out videos,
online protocol) and, with --test, on the labelled test videos (paper and online protocols, as `vigil eval`).
Recipes are chosen on the pseudo-anomaly yardstick alone; the test numbers are reported, never used to choose.

With --alerts the yardstick also says what an operator would get (`pseudo_alerts`): the held-out videos and their
pseudo-anomalies back to back as one camera, through the service's calibration and alert machine at the shipped alert
settings, the camera's reference learned from every training video as `vigil eval` learns it by default: pseudo-event
recall, false alerts per hour and normal time in alerts, without a test label. A frame ranking (the pseudo AUC) can
improve while the alerts at the shipped threshold fire less; this measures the alerts themselves.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cli.options import positive_int
from models.calibration import fit_calibration
from models.data.datasets import LabeledVideo, open_dataset, split_validation
from models.data.transforms import prepare
from models.evaluate.protocols import VideoSignals, evaluate
from models.evaluate.pseudo import (
    ALL_KINDS,
    KINDS,
    REPEATS,
    Kind,
    online_aucs,
    pseudo_online,
    pseudo_raw,
    pseudo_set,
    resampled_auc,
)
from models.inference import score_frames, video_windows
from models.io import load_model
from models.methods.ffp import SIGNAL_NAMES as FFP_SIGNALS
from models.store import ModelStore
from models.train.checkpoint import list_snapshots
from models.train.config import load_snapshot_config, parse_value
from models.train.loop import snapshot_method
from models.types import InputSpec
from service.alerts.yardstick import pseudo_alerts
from service.settings import get_settings

if TYPE_CHECKING:
    from models.base import AnomalyMethod

log = logging.getLogger("curve")


def _compact(frames: np.ndarray) -> np.ndarray:
    """Gray footage stored as 3 equal channels (Ped2) -> (N, H, W): a third of the memory, `prepare` gives the same."""
    gray = frames.ndim == 4 and frames.shape[3] == 3 and np.array_equal(frames[..., 0], frames[..., 1])
    if gray and np.array_equal(frames[..., 0], frames[..., 2]):
        return np.ascontiguousarray(frames[..., 0])
    return frames


class Footage:
    """Decoded native frames of a dataset's held-out training videos and test videos, read once."""

    def __init__(self) -> None:
        self.held: dict[tuple[str, int], list[tuple[str, np.ndarray]]] = {}
        self.trained: dict[tuple[str, int], list[tuple[str, np.ndarray]]] = {}
        self.test: dict[str, list[tuple[LabeledVideo, np.ndarray]]] = {}

    def held_out(self, root: str, num_val: int) -> list[tuple[str, np.ndarray]]:
        if (root, num_val) not in self.held:
            self._read_training(root, num_val)
        return self.held[(root, num_val)]

    def trained_on(self, root: str, num_val: int) -> list[tuple[str, np.ndarray]]:
        """The training videos that were not held out (the network trained on them)."""
        if (root, num_val) not in self.trained:
            self._read_training(root, num_val)
        return self.trained[(root, num_val)]

    def _read_training(self, root: str, num_val: int) -> None:
        train, val = split_validation(open_dataset(root, "train"), num_val)
        self.held[(root, num_val)] = [(v.name, _compact(v.reader.read_all())) for v in val]
        self.trained[(root, num_val)] = [(v.name, _compact(v.reader.read_all())) for v in train]

    def test_videos(self, root: str) -> list[tuple[LabeledVideo, np.ndarray]]:
        if root not in self.test:
            self.test[root] = [(v, _compact(v.reader.read_all())) for v in open_dataset(root, "test")]
        return self.test[root]


@dataclass(frozen=True)
class Yardstick:
    """How the pseudo set is made and what is measured on it (`models.evaluate.pseudo`): the kinds of pseudo-anomaly,
    how many events of each per held-out video (more events: a narrower interval, a longer scoring), whether to run the
    alert machine, and how many resamples of the pseudo AUC to keep."""

    kinds: tuple[Kind, ...] = KINDS
    repeats: int = REPEATS
    alerts: bool = False
    resamples: int = 0

    @property
    def label(self) -> list[str]:
        """What a row's label says about a yardstick other than the default one (the kinds, the repeats)."""
        out = [f"kinds={'+'.join(self.kinds)}"] if self.kinds != KINDS else []
        return out + ([f"repeats={self.repeats}"] if self.repeats != REPEATS else [])


@dataclass(frozen=True)
class Data:
    """Where a point's footage comes from: the dataset, how many training videos were held out, their rate."""

    root: str
    num_val: int
    fps: float | None


def point(
    snapshot: Path,
    footage: Footage,
    with_test: bool,
    signals: list[str] | None = None,
    patch: int | None = None,
    overrides: dict[str, Any] | None = None,
    yardstick: Yardstick = Yardstick(),
) -> list[dict[str, Any]]:
    """One row per signal set: `signals` are "+"-joined subsets of the method's signal names (one scoring pass
    serves them all); None = the method's own signals."""
    cfg, meta = load_snapshot_config(snapshot)
    config = cfg.method.model_copy(update=overrides or {})  # settings that need no retraining (e.g. f2lm error)
    if signals and config.name == "ffp":  # type: ignore[attr-defined]
        _check_signals(signals, tuple(FFP_SIGNALS.values()), "ffp")
        wanted = {name for s in signals for name in s.split("+")}
        update = {"signals": tuple(key for key, name in FFP_SIGNALS.items() if name in wanted)}
        config = config.model_copy(update=update | ({"patch": patch} if patch else {}))  # every signal in one pass
    method = snapshot_method(config, snapshot, torch.device("cpu"))
    data = Data(str(cfg.data.root), cfg.data.num_val, cfg.data.fps)
    # What registration fits beside the weights (FFP's local reference), on the videos the run trained on, as there.
    method.eval().fit_reference(
        video_windows(_prepared(footage.trained_on, data, method.input_spec), method.input_spec.context)
    )
    where = {
        "run": str(snapshot.parent.parent),
        "snapshot": snapshot.name,
        "cpu_minutes": round(meta["cpu_s"] / 60, 2),
        "step": meta["step"],
        "method": cfg.method_name,
    }
    label = [Path(snapshot.parent.parent).name, *(f"{k}={v}" for k, v in (overrides or {}).items())]
    label += [f"patch={config.patch}"] if signals and config.name == "ffp" else []  # type: ignore[attr-defined]
    return score_point(method, where, label, data, footage, with_test, signals, yardstick)


def _check_signals(signals: list[str], known: tuple[str, ...], model: str) -> None:
    """Stops with a message naming the signals `model` does not give, before anything is scored."""
    unknown = sorted({name for s in signals for name in s.split("+")} - set(known))
    if unknown:
        msg = f"--signals names {', '.join(unknown)}, which {model} does not give; its signals: {', '.join(known)}"
        raise SystemExit(msg)


def _prepared(
    videos: Callable[[str, int], list[tuple[str, np.ndarray]]], data: Data, spec: InputSpec
) -> Iterator[np.ndarray]:
    """The videos `videos(root, num_val)` names, prepared for the method, read only when iterated."""
    for _, frames in videos(data.root, data.num_val):
        yield prepare(frames, spec)


def score_point(
    method: AnomalyMethod,
    where: dict[str, Any],
    label: list[str],
    data: Data,
    footage: Footage,
    with_test: bool,
    signals: list[str] | None,
    yardstick: Yardstick,
) -> list[dict[str, Any]]:
    """The rows of one model (a snapshot's or a registered version's): calibrated on the held-out training videos as
    a run's end does, scored on their pseudo-anomalies and, with `with_test`, on the test videos."""
    method.eval()
    spec, names = method.input_spec, list(method.signal_names)
    _check_signals(signals or [], tuple(names), label[0])
    started = time.monotonic()
    held = footage.held_out(data.root, data.num_val)
    held_raw = [score_frames(method, prepare(frames, spec)) for _, frames in held]
    kinds, alerts = yardstick.kinds, yardstick.alerts
    pseudo = pseudo_set(held, repeats=yardstick.repeats, kinds=kinds)
    pseudo_scores = pseudo_raw(method, pseudo)
    if alerts and data.fps is None:
        msg = "--alerts needs the footage's frame rate: set data.fps in the run's config (models) or give --fps"
        raise SystemExit(msg)
    trained = footage.trained_on(data.root, data.num_val) if alerts else []
    trained_raw = [score_frames(method, prepare(f, spec)) for _, f in trained]
    test_signals = []
    if with_test:
        test_signals = [
            VideoSignals(v.name, score_frames(method, prepare(f, spec)), v.labels)
            for v, f in footage.test_videos(data.root)
            if v.labels is not None
        ]
    rows = []
    for variant in signals or ["+".join(names)]:
        cols = [names.index(n) for n in variant.split("+")]
        subset = [names[c] for c in cols]
        raw = np.concatenate([r[:, cols] for r in held_raw])
        calibration = fit_calibration(
            raw,
            subset,
            weights=method.calibration_weights(raw) if subset == names else None,
            segments=[len(r) for r in held_raw],
            source=f"held-out training videos {', '.join(n for n, _ in held)} of {data.root}",
            fps=data.fps,
        )
        scored = [r[:, cols] for r in pseudo_scores]
        online = pseudo_online(scored, pseudo, spec.context, calibration)
        row: dict[str, Any] = {
            **where,
            "label": " ".join(label + ([variant] if signals else []) + yardstick.label),
            "signals": subset,
            "kinds": list(kinds),
            "repeats": yardstick.repeats,
            "pseudo": online_aucs(*online),
        }
        if yardstick.resamples:  # the same online scores, drawn again a video at a time
            row["pseudo_resampled"] = resampled_auc(online[0], online[1], yardstick.resamples).round(6).tolist()
        if alerts:
            assert data.fps is not None  # checked above
            normal = [r[:, cols] for r in held_raw + trained_raw]
            row["alerts"] = pseudo_alerts(calibration, normal, scored, pseudo, spec.context, data.fps)
        if with_test:
            videos = [VideoSignals(v.name, v.raw[:, cols], v.labels) for v in test_signals]
            result, _ = evaluate(videos, spec.context, subset, calibration)
            keys = ("micro_auc", "macro_auc", "macro_chance", "macro_auc_padded", "macro_chance_padded", "eer")
            row["test"] = {f"{p}_{k}": getattr(getattr(result, p), k) for p in ("paper", "online") for k in keys}
        row["eval_s"] = round(time.monotonic() - started, 1)
        log.info("%s", json.dumps({k: v for k, v in row.items() if k not in ("run", "pseudo_resampled")}))
        rows.append(row)
    return rows


def model_points(args: argparse.Namespace) -> int:
    """Points of registered versions (methods fitted without snapshots, e.g. flowmem): the same yardstick, the
    held-out videos given by --dataset and --num-val (those the version was calibrated on)."""
    store = ModelStore(args.registry or get_settings().store.root)
    footage, rows = Footage(), []
    for ref in args.models:
        method, card, version = load_model(store, ref)
        train = card.metrics.get("train", {})
        where = {
            "run": version.ref,
            "snapshot": version.ref,
            "cpu_minutes": round(float(train.get("train_cpu_s", 0.0)) / 60, 2),
            "step": int(train.get("steps", 0)),
            "method": card.method,
        }
        data = Data(str(args.dataset), args.num_val, args.fps)
        rows += score_point(method, where, [version.ref], data, footage, args.test, args.signals, _yardstick(args))
    return _write(rows, args.out)


def points(args: argparse.Namespace) -> int:
    footage = Footage()
    rows = []
    overrides = {k: parse_value(v) for k, _, v in (o.partition("=") for o in args.set)}
    yardstick = _yardstick(args)
    for run in args.runs:
        snapshots = list_snapshots(Path(run))
        if not snapshots:
            print(f"{run} has no snapshots (set snapshot_cpu_minutes in its config)")
            return 1
        if args.last:
            snapshots = snapshots[-1:]
        rows += [
            row
            for s in snapshots
            for row in point(s, footage, args.test, args.signals, args.patch, overrides, yardstick)
        ]
    return _write(rows, args.out)


def _yardstick(args: argparse.Namespace) -> Yardstick:
    return Yardstick(tuple(args.kinds), args.repeats, args.alerts, args.resamples)


def _write(rows: list[dict[str, Any]], out: Path) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    print(f"wrote {len(rows)} points to {out}")
    return 0


def plot(args: argparse.Namespace) -> int:
    from matplotlib.figure import Figure

    series: dict[str, list[dict[str, Any]]] = {}
    for path in args.files:
        for row in json.loads(Path(path).read_text()):
            series.setdefault(row["label"], []).append(row)
    fig = Figure(figsize=(11, 4.2 + 0.22 * ((len(series) + 2) // 3)), layout="constrained")
    axes = fig.subplots(1, 2)
    colours = [f"C{i % 10}" for i in range(len(series))]
    for (name, rows), colour in zip(series.items(), colours, strict=True):
        rows = sorted(rows, key=lambda r: r["cpu_minutes"])
        x = [r["cpu_minutes"] for r in rows]
        if all("test" in r for r in rows):
            axes[0].plot(x, [r["test"]["online_micro_auc"] for r in rows], marker="o", color=colour)
            axes[0].plot(x, [r["test"]["paper_micro_auc"] for r in rows], marker=".", linestyle=":", color=colour)
        axes[1].plot(x, [r["pseudo"]["online_micro_auc"] for r in rows], marker="o", color=colour, label=name)
    axes[0].set(
        xlabel="training CPU-minutes (1 thread)",
        ylabel="Ped2 test micro AUC",
        title="Ped2 test (reported): online solid, paper dotted",
    )
    axes[1].set(
        xlabel="training CPU-minutes (1 thread)",
        ylabel="online micro AUC",
        title="pseudo-anomalies in held-out training videos (selection)",
    )
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=3, fontsize=8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return 0


def table(args: argparse.Namespace) -> int:
    """One markdown row per point: the selection yardstick first, then the test numbers it never saw."""
    rows = [row for path in args.files for row in json.loads(Path(path).read_text())]
    rows.sort(key=lambda r: (r["method"], r["label"], r["cpu_minutes"]))
    kinds = [k for k in ALL_KINDS if any(f"online_micro_auc_{k}" in r["pseudo"] for r in rows)]
    alerts = any("alerts" in r for r in rows)
    # with the alert yardstick, its columns go between the selection's AUC and the test numbers
    middle = (
        f" pseudo events detected ({' / '.join(kinds)}) | false alerts / h | normal time in alerts |" if alerts else ""
    )
    print(
        f"| run, scoring | CPU-min | step | pseudo AUC ({' / '.join(kinds)}) |{middle} test paper / online micro AUC "
        "| test online macro AUC, unpadded (chance) |"
    )
    print("|---" * (9 if alerts else 6) + "|")
    for r in rows:
        p, t = r["pseudo"], r.get("test")
        test = f"{t['paper_micro_auc']:.3f} / {t['online_micro_auc']:.3f}" if t else "-"
        macro = f"{t['online_macro_auc']:.3f} ({t['online_macro_chance']:.3f})" if t else "-"
        auc = f"**{p['online_micro_auc']:.4f}** ({' / '.join(_kind_auc(p, k) for k in kinds)})"
        head = f"| {r['label']} | {r['cpu_minutes']:g} | {r['step']} | {auc} |"
        print(
            f"{head} {_alert_cells(r.get('alerts'), kinds)} {test} | {macro} |"
            if alerts
            else f"{head} {test} | {macro} |"
        )
    return 0


def compare(args: argparse.Namespace) -> int:
    """Each row's pseudo AUC with the 95% interval of its resamples, and its paired difference to the `--base` row
    (the same draws of pseudo videos for both, see `resampled_auc`): whether a yardstick difference is more than
    the luck of which events were drawn."""
    rows = [row for path in args.files for row in json.loads(Path(path).read_text())]
    missing = [r["label"] for r in rows if "pseudo_resampled" not in r]
    if missing:
        print(f"no resamples in {', '.join(missing)}: score them with --resamples N")
        return 1
    base = [r for r in rows if r["label"] == args.base]
    if len(base) != 1:
        print(f"--base must name exactly one row's label; the labels are: {'; '.join(r['label'] for r in rows)}")
        return 1
    ref = np.asarray(base[0]["pseudo_resampled"])
    print(f"| run, scoring | pseudo AUC (95% of resamples) | minus {args.base} (paired, 95%) | resamples above it |")
    print("|---|---|---|---|")
    for r in rows:
        own = np.asarray(r["pseudo_resampled"])
        if len(own) != len(ref):
            print(f"{r['label']} has {len(own)} resamples and the base {len(ref)}: score both with one --resamples")
            return 1
        lo, hi = np.quantile(own, [0.025, 0.975])
        diff = own - ref
        d_lo, d_hi = np.quantile(diff, [0.025, 0.975])
        print(
            f"| {r['label']} | {r['pseudo']['online_micro_auc']:.4f} ({lo:.4f}-{hi:.4f}) | "
            f"{r['pseudo']['online_micro_auc'] - base[0]['pseudo']['online_micro_auc']:+.4f} "
            f"({d_lo:+.4f} to {d_hi:+.4f}) | {100 * np.mean(diff > 0):.0f}% |"
        )
    return 0


def _alert_cells(a: dict[str, Any] | None, kinds: Sequence[str]) -> str:
    if a is None:
        return "- | - | - |"
    per_kind = " / ".join(f"{a[f'recall_{k}']:.2f}" if f"recall_{k}" in a else "-" for k in kinds)
    fa = "-" if a["false_alerts_per_hour"] is None else f"{a['false_alerts_per_hour']:.1f}"
    normal = "-" if a["normal_in_alerts"] is None else f"{100 * a['normal_in_alerts']:.1f}%"
    return f"**{a['detected']} / {a['events']}** ({per_kind}) | {fa} | {normal} |"


def _kind_auc(pseudo: dict[str, float], kind: str) -> str:
    value = pseudo.get(f"online_micro_auc_{kind}")
    return "-" if value is None else f"{value:.3f}"


def _scoring_options() -> argparse.ArgumentParser:
    """What `points` and `models` share: where points go and how they are scored."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, required=True)
    common.add_argument(
        "--test", action="store_true", help="also score the labelled test videos (reported, not chosen on)"
    )
    common.add_argument("--threads", type=int, default=1)
    common.add_argument(
        "--signals",
        nargs="+",
        help="signal sets to calibrate and score separately, '+'-joined signal names, e.g. neg_psnr "
        "neg_patch_psnr neg_psnr+neg_patch_psnr (ffp snapshots are scored with both of its signals for this)",
    )
    common.add_argument(
        "--kinds",
        nargs="+",
        choices=ALL_KINDS,
        default=list(KINDS),
        help="pseudo-anomaly kinds to inject (default: fast object, what every recorded point used; add shape for "
        "appearance anomalies)",
    )
    common.add_argument(
        "--repeats",
        type=positive_int,
        default=REPEATS,
        help=f"pseudo events of each kind per held-out video (default {REPEATS}, what every recorded point used; more "
        "events narrow the resampling interval and lengthen the scoring in proportion)",
    )
    common.add_argument(
        "--alerts",
        action="store_true",
        help="also run the pseudo videos through the camera's calibration and alert machine at the shipped settings "
        "(pseudo-event recall, false alerts per hour, normal time in alerts; scores every training video once more)",
    )
    common.add_argument(
        "--resamples",
        type=int,
        default=0,
        help="also keep this many pseudo AUCs of the pseudo videos drawn again with replacement (for `compare`)",
    )
    return common


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    common = _scoring_options()
    p = sub.add_parser("points", parents=[common], help="evaluate every snapshot of the given runs")
    p.add_argument("runs", nargs="+", help="run directories (out_dir) holding snapshots/")
    p.add_argument("--last", action="store_true", help="only the last snapshot of each run")
    p.add_argument("--patch", type=int, help="ffp: the patch signal's window side (default: the run's method.patch)")
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="method settings that need no retraining, e.g. error=patch patch=16 (f2lm)",
    )
    m = sub.add_parser("models", parents=[common], help="evaluate registered versions (e.g. flowmem's)")
    m.add_argument("models", nargs="+", help="name@vN or name@alias")
    m.add_argument("--registry", type=Path, help="model registry (default: the service's store.root)")
    m.add_argument("--dataset", type=Path, required=True, help="the dataset the versions were fitted on")
    m.add_argument("--num-val", type=int, default=2, help="training videos held out (the last ones), as in the run")
    m.add_argument("--fps", type=float, help="the footage's frame rate (Ped2: 10)")
    q = sub.add_parser("plot", help="AUC against training CPU-minutes from points files")
    q.add_argument("files", nargs="+")
    q.add_argument("--out", type=Path, required=True)
    t = sub.add_parser("table", help="a markdown table of the points in points files")
    t.add_argument("files", nargs="+")
    c = sub.add_parser("compare", help="pseudo AUCs with resampling intervals, paired against one row")
    c.add_argument("files", nargs="+")
    c.add_argument("--base", required=True, help="the label of the row the others are compared with")
    args = parser.parse_args()
    if args.action in ("points", "models"):
        torch.set_num_threads(args.threads)
        return points(args) if args.action == "points" else model_points(args)
    return {"plot": plot, "table": table, "compare": compare}[args.action](args)


if __name__ == "__main__":
    sys.exit(main())
