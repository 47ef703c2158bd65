"""`vigil eval MODEL --dataset PATH`: score every test video, report frame AUCs and what an operator sees.

Frame level: the paper and online protocols (and the AUC of the published scores). Event level: the test videos go
through the service's own camera calibration and alert machine (service/alerts/offline.py) at the service's alert
settings, in `stream` mode (back to back as one camera) and `per-video` mode; the camera learns its reference from
`--learn-from` (default: the dataset's training videos, footage marked normal), never from test labels.
Writes eval.json, eval.png, events.png and signals.npz; `--record` stores the headline numbers in the card.
`--heatmaps` (methods with a localisation map) also measures pixel-level localisation against the dataset's pixel
masks: pixel AUC and the share of alerts whose heatmap peak is inside the mask (models/evaluate/localization.py).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.calibration import add_calibration_options
from cli.options import add_scoring_options

if TYPE_CHECKING:
    import numpy as np
    import torch

    from models.base import AnomalyMethod
    from models.card import ModelCard, Precision
    from models.data.datasets import LabeledVideo
    from models.evaluate.localization import LocalizationResult
    from models.evaluate.protocols import EvalResult, VideoSignals
    from models.store import ModelStore, ModelVersion
    from service.alerts.offline import CameraRun


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model reference: name, name@v3 or name@production")
    parser.add_argument("--dataset", required=True, type=Path, help="dataset root; its test split is scored")
    parser.add_argument(
        "--split",
        help="a weak split YAML or a name under models/splits/ (e.g. ped2_weak): score only its test videos, "
        "for models trained on some of the dataset's test videos (gcl, vadclip)",
    )
    add_scoring_options(parser, "eval")
    add_calibration_options(parser, "train")
    parser.add_argument("--record", action="store_true", help="write the metrics into the model card")
    parser.add_argument(
        "--heatmaps",
        action="store_true",
        help="also measure pixel-level localisation of the heatmaps against the dataset's pixel_masks*.npz "
        "(pixel AUC, alert peaks inside the mask); methods with a localisation map only (see vigil methods)",
    )


def run(args: argparse.Namespace) -> int:

    from models.cpu_memory import keep_freed_memory_for
    from models.data.datasets import open_dataset
    from models.evaluate.protocols import evaluate
    from models.evaluate.report import plot_events, save_signals, write_eval
    from models.inference import resolve_device
    from models.io import load_model
    from models.store import ModelStore
    from service.settings import get_settings

    store = ModelStore(args.registry or get_settings().store.root)
    device = resolve_device(args.device)
    keep_freed_memory_for(device.type)  # the batches' activations are reused, not page-faulted in again
    method, card, version = load_model(store, args.model, device)
    if args.heatmaps and not method.localizes:
        print(f"error: {version.ref} ({card.method}) has no localisation map; --heatmaps needs ffp, dast or f2lm")
        return 2
    videos = open_dataset(args.dataset, "test")
    if args.split:
        videos = _split_test_videos(videos, args.split)
    masks = _pixel_masks(args.dataset, videos, method.input_spec.context) if args.heatmaps else None
    maps: list[np.ndarray] | None = [] if args.heatmaps else None
    signals = _score_test_set(method, videos, args.dataset, version.ref, args.batch_size, device, card.precision, maps)
    result, scores = evaluate(
        signals, method.input_spec.context, list(method.signal_names), card.calibration, version.ref, str(args.dataset)
    )
    out = args.out or Path("runs") / "eval" / f"{version.name}-{version.version}"
    stream, runs = None, dict[str, "CameraRun"]()
    if card.calibration is not None:
        result, runs = _camera_events(args, method, card, version.ref, signals, videos, result, device)
        stream = runs["stream"]
        scores["camera"] = [r.scores for r in stream.recordings]
    if masks is not None and maps is not None:
        result = result.model_copy(update={"heatmaps": _localization(method, videos, maps, masks, runs)})
    json_path, png_path = write_eval(result, scores, [s.labels for s in signals], [s.name for s in signals], out)
    npz_path = save_signals(signals, out / "signals.npz")
    _print_table(result)
    print(f"wrote {json_path}, {png_path} and {npz_path}")
    if stream is not None:
        events_png = plot_events(result, stream, [s.labels[method.input_spec.context :] for s in signals], out)
        print(f"wrote {events_png}")
    if args.record:
        _record(store, version, card, result, videos, args.dataset)
        print(f"recorded the metrics in the card of {version.ref}")
    return 0


def _camera_events(
    args: argparse.Namespace,
    method: AnomalyMethod,
    card: ModelCard,
    ref: str,
    signals: list[VideoSignals],
    videos: list[LabeledVideo],
    result: EvalResult,
    device: torch.device,
) -> tuple[EvalResult, dict[str, CameraRun]]:
    """The test videos through the service's camera calibration and alert machine, in both modes (-> the runs)."""
    import numpy as np

    from cli.calibration import calibration_params, footage_fps, learned_reference, recording_health
    from models.evaluate.events import Mode, event_metrics
    from models.evaluate.protocols import scored_labels, summarize
    from service.alerts.offline import Recording, run_camera
    from service.messages import AlertParams
    from service.settings import get_settings

    assert card.calibration is not None  # checked by the caller
    params = calibration_params(args)
    alerts = AlertParams.merge(get_settings().alerts, None)
    fps = footage_fps(args, card.calibration, videos[0])
    reference = learned_reference(args.learn_from, method, card.calibration, ref, params, args, device, args.dataset)
    context = method.input_spec.context
    healths = [recording_health(v, fps, context) for v in videos]  # as a camera playing them runs its checks
    recordings = [
        Recording(s.name, s.raw, (context + np.arange(len(s.raw))) / fps, *h.scored(context))
        for s, h in zip(signals, healths, strict=True)
    ]
    flagged = sum(int(np.count_nonzero(h.flags[context:])) for h in healths)
    raised = sum(1 for h in healths for _, _, c in h.events if c.kind == "raised")
    print(f"camera health: {raised} condition(s) raised, {flagged} scored frame(s) flagged (never alertable)")
    labels = [scored_labels(s, context) for s in signals]
    names = [s.name for s in signals]
    events, runs = {}, dict[str, "CameraRun"]()
    modes: tuple[Mode, ...] = ("stream", "per-video")
    for mode in modes:
        runs[mode] = run = run_camera(card.calibration, ref, recordings, params, alerts, mode, reference)
        events[mode] = event_metrics(labels, run.spans, fps, mode, names)
    camera = summarize("camera", names, labels, [r.scores for r in runs["stream"].recordings])
    first = next(iter(reference.profiles.values()), None) if reference is not None else None
    source = first.source if first is not None else f"the first {params.learn_s:g} s"
    return result.model_copy(
        update={
            "camera": camera,
            "events": events,
            "alert_params": alerts.model_dump(include=set(AlertParams.MACHINE_FIELDS)),
            "camera_calibration": source,
        }
    ), runs


def _split_test_videos(videos: list[LabeledVideo], split: str) -> list[LabeledVideo]:
    """The test videos a weak split evaluates on ("test/07" -> test video 07); the others were trained on."""
    from models.data.splits import load_split
    from models.errors import DatasetError

    wanted = {k.split("/", 1)[1] for k in load_split(split).test if k.startswith("test/")}
    kept = [v for v in videos if v.name in wanted]
    if len(kept) != len(wanted):
        missing = sorted(wanted - {v.name for v in kept})
        msg = f"split {split} tests on videos {missing} that this dataset's test split does not have"
        raise DatasetError(msg)
    return kept


def _score_test_set(
    method: AnomalyMethod,
    videos: list[LabeledVideo],
    dataset: Path,
    ref: str,
    batch_size: int,
    device: torch.device,
    precision: Precision,
    maps: list[np.ndarray] | None = None,
) -> list[VideoSignals]:
    """Raw signals of every labelled test video in the card's precision, with one progress bar over all frames;
    with `maps`, each video's coarse localisation maps (N - context, h, w) are appended to it."""
    import numpy as np
    from tqdm import tqdm

    from models.errors import DatasetError
    from models.evaluate.protocols import VideoSignals
    from models.inference import score_video

    labelled = [(v, v.labels) for v in videos if v.labels is not None]
    if len(labelled) < len(videos):
        missing = [v.name for v in videos if v.labels is None]
        msg = (
            f"{dataset} has no ground truth for test videos {', '.join(missing[:5])}; evaluation needs a "
            "*.mat, *.m or frame_labels_*.npy at the dataset root, or testing/test_frame_mask/"
        )
        raise DatasetError(msg)
    context = method.input_spec.context
    signals = []
    with tqdm(total=sum(max(v.num_frames - context, 0) for v in videos), unit="frame", desc=f"eval {ref}") as bar:
        for v, labels in labelled:
            chunks: list[np.ndarray] = []
            _, raw = score_video(
                method,
                v.reader,
                batch_size=batch_size,
                device=device,
                progress=bar.update,
                precision=precision,
                on_maps=chunks.append if maps is not None else None,
            )
            signals.append(VideoSignals(v.name, raw, labels))  # raw: (N - context, S)
            if maps is not None:
                maps.append(np.concatenate(chunks))  # (N - context, h, w)
    return signals


def _pixel_masks(dataset: Path, videos: list[LabeledVideo], context: int) -> list[np.ndarray]:
    """The pixel masks of the scored frames (context..N-1) of each test video, checked against its frames."""
    from models.errors import DatasetError
    from models.evaluate.localization import load_pixel_masks

    masks = load_pixel_masks(dataset)
    out = []
    for v in videos:
        m = masks.get(v.name)
        if m is None or len(m) != v.num_frames:
            have = "none" if m is None else f"{len(m)} frames"
            msg = f"pixel masks of test video {v.name}: {have}, but the video has {v.num_frames} frames"
            raise DatasetError(msg)
        out.append(m[context:])
    return out


def _localization(
    method: AnomalyMethod,
    videos: list[LabeledVideo],
    maps: list[np.ndarray],
    masks: list[np.ndarray],
    runs: dict[str, CameraRun],
) -> LocalizationResult:
    """Pixel AUC of the maps with chance floors, and the peak hits on every masked frame and on the alerts' peak
    frames of each camera run (stream, per-video)."""
    import numpy as np
    import torch

    from models.data.transforms import prepare
    from models.evaluate.localization import localization
    from models.heatmap import coarse_maps

    context, spec = method.input_spec.context, method.input_spec
    motion = []  # |frame t - frame t-1| of the prepared frames, made coarse like the maps: a model-free floor
    for v in videos:
        frames = prepare(np.stack([f for _, _, f in v.reader.iter_frames()]), spec).astype(np.float32) / 255.0
        diff = np.abs(frames[context:] - frames[context - 1 : -1]).mean(axis=-1)  # (N - context, H, W)
        motion.append(coarse_maps(torch.from_numpy(diff)).numpy())  # the maps' grid (same input size)
    peaks: dict[str, list[tuple[int, int]]] = {}
    for mode, run in runs.items():
        seen: set[str] = set()
        peaks[mode] = []
        for i, rec in enumerate(run.recordings):
            for alert in rec.alerts:
                # an alert spanning two recordings is listed in both; its peak is where its peak score is
                if alert.id in seen or rec.scores[alert.peak_frame] != alert.peak_score:
                    continue
                seen.add(alert.id)
                peaks[mode].append((i, alert.peak_frame))
    return localization(maps, masks, {"frame_difference": motion}, peaks)


def _record(
    store: ModelStore,
    version: ModelVersion,
    card: ModelCard,
    result: EvalResult,
    videos: list[LabeledVideo],
    dataset: Path,
) -> None:
    """Store the headline metrics under card.metrics['eval'] (the latest evaluation replaces the previous one)."""
    from models.data.datasets import dataset_fingerprint

    entry = {
        **result.summary(),
        "dataset": str(dataset),
        "videos": [v.name for v in videos],
        "dataset_fingerprint": dataset_fingerprint(videos),
        "num_videos": len(videos),
        "num_frames": result.paper.num_frames,
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    store.write_card(version, card.model_copy(update={"metrics": {**card.metrics, "eval": entry}}))


def _print_table(result: EvalResult) -> None:
    def fmt(value: Any) -> str:
        return "-" if value is None else f"{value:.4f}"

    online, camera = result.online, result.camera
    keys = (
        ("micro AUC", "micro_auc"),
        (f"macro AUC ({result.paper.macro_videos} videos with both classes)", "macro_auc"),
        ("  chance", "macro_chance"),
        ("macro AUC, AI-VAD padding (all videos)", "macro_auc_padded"),
        ("  chance", "macro_chance_padded"),
        ("EER", "eer"),
    )
    rows = [
        (name, *(getattr(r, key) if r is not None else None for r in (result.paper, online, camera)))
        for name, key in keys
    ]
    print(
        f"{result.model} on {result.dataset}: {result.paper.num_frames} scored frames, "
        f"{result.paper.num_anomalous} anomalous"
    )
    width = max(len(name) for name, _ in keys)
    print(f"{'':<{width}}  {'paper':>8}  {'online':>8}  {'camera':>8}")
    for name, paper, onl, cam in rows:
        print(f"{name:<{width}}  {fmt(paper):>8}  {fmt(onl):>8}  {fmt(cam):>8}")
    if online is None:
        print(f"online protocol skipped: {result.online_skipped}")
    if result.events:
        params = ", ".join(f"{k} {v:g}" for k, v in result.alert_params.items())  # the machine's four numbers
        print(f"alerts ({params}; camera reference from {result.camera_calibration}):")
    _print_heatmaps(result)
    for mode, e in result.events.items():
        per_hour = "-" if e.false_alerts_per_hour is None else f"{e.false_alerts_per_hour:.1f}"
        print(
            f"  {mode:<9} events {e.detected}/{e.events} (chance {fmt(e.chance_recall)}), alerts {e.alerts}, "
            f"false {e.false_alerts} ({per_hour}/h of normal footage), normal time in alerts "
            f"{fmt(e.normal_in_alerts)} (chance {fmt(e.chance_normal_in_alerts)}), "
            f"delay median {fmt(e.delay_median_s)} s p90 {fmt(e.delay_p90_s)} s"
        )


def _print_heatmaps(result: EvalResult) -> None:
    h = result.heatmaps
    if h is None:
        return

    def floors(chance: dict[str, float]) -> str:
        return ", ".join(f"{k} {v:.4f}" for k, v in chance.items())

    gh, gw = h.compare_grid
    print(f"heatmaps ({h.map_grid[0]}x{h.map_grid[1]} cells, compared on {gh}x{gw}):")
    auc, anomalous = h.pixel_auc, h.pixel_auc_anomalous_frames
    print(f"  pixel AUC {auc:.4f}, on the {h.anomalous_frames} anomalous frames {anomalous:.4f}")
    print(f"    floors: {floors(h.chance)}")
    for name, p in [("masked frames", h.peaks_masked_frames), *h.peaks_alerts.items()]:
        share = "-" if p.peak_in_mask is None else f"{p.peak_in_mask:.4f}"
        print(f"  peak inside the mask, {name}: {share} of {p.frames} ({floors(p.chance)})")
