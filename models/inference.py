"""The one scoring loop: frames -> windows -> method -> per-frame raw signals (and calibrated scores).

Shared by trainer calibration, `vigil eval`, `vigil score` and the API's batch jobs, so every path
produces the same numbers for the same frames. `forward_windows` and `forward_histories` are the forward pass
itself, in the precision the model card names (the one its calibration was fitted in): the live worker calls
them too, so live and offline scores never differ by precision.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from models.base import AnomalyMethod, SnippetHistoryMethod
from models.calibration import calibrate
from models.card import ModelCard, Precision
from models.data.transforms import to_tensor
from models.data.video import VideoReader, open_video
from models.heatmap import MAP_SIDE, coarse_maps, coarse_size
from models.scored import ScoredVideo

log = logging.getLogger(__name__)

Progress = Callable[[int], object]  # called with the number of frames just scored (tqdm's `update` fits)


def iter_windows(num_frames: int, context: int, window: int) -> Iterator[tuple[int, int]]:
    """[start, stop) frame ranges: each carries `context` frames, then up to `window` frames it scores.

    Every frame index >= context is scored by exactly one window; frames < context are never scored.
    """
    if window < 1 or context < 0:
        msg = f"window must be >= 1 and context >= 0, got window={window}, context={context}"
        raise ValueError(msg)
    for first in range(context, num_frames, window):
        yield first - context, min(first + window, num_frames)


def video_windows(
    videos: Iterable[np.ndarray], context: int, window: int = 16, device: str | torch.device = "cpu"
) -> Iterator[torch.Tensor]:
    """Prepared uint8 videos (N_i, H, W, C) -> float32 windows (1, context + n, C, H, W) in [0, 1] on `device`, cut
    as `iter_windows` cuts them, one video after the other (lazily)."""
    for frames in videos:
        for start, stop in iter_windows(len(frames), context, window):
            yield to_tensor(frames[start:stop]).unsqueeze(0).to(device)


def resolve_device(device: str | torch.device | None, method: AnomalyMethod | None = None) -> torch.device:
    """None -> where the method's weights are; 'auto' -> CUDA when available, else CPU."""
    if device is None:
        param = next(iter(method.parameters()), None) if method is not None else None
        return param.device if param is not None else torch.device("cpu")
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        msg = "device 'cuda' was requested but torch sees no CUDA device; use --device cpu or auto"
        raise ValueError(msg)
    return resolved


_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager[object]:
    """The forward pass in `precision`. fp32 is plain fp32 on every device (TF32 off on CUDA, so a GPU computes
    what a CPU computes); bf16 and fp16 are torch autocast (on CUDA, or on the CPU)."""
    if precision == "fp32":
        return _exact_fp32() if device.type == "cuda" else contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[precision])


@contextlib.contextmanager
def _exact_fp32() -> Iterator[None]:
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.allow_tf32, matmul.allow_tf32
    cudnn.allow_tf32 = matmul.allow_tf32 = False  # both are process-wide: restored when the pass is done
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved


def forward_windows(method: AnomalyMethod, window: torch.Tensor, precision: Precision) -> torch.Tensor:
    """(B, T, C, H, W) float32 frames in [0, 1] -> float32 (B, N, S) raw signals, or (B, N, D) snippet features of
    a SnippetHistoryMethod. The forward pass of every scorer, offline and live."""
    with torch.inference_mode(), autocast(window.device, precision):
        if isinstance(method, SnippetHistoryMethod):  # noqa: SIM108 (mypy narrows only in a plain if)
            out = method.snippet_features(window)  # (B, N, D)
        else:
            out = method.score(window)  # (B, N, S)
    return out.float()


def forward_windows_maps(
    method: AnomalyMethod, window: torch.Tensor, precision: Precision, side: int = MAP_SIDE
) -> tuple[torch.Tensor, torch.Tensor]:
    """`forward_windows` of a method with `localizes`, plus its maps made coarse (models/heatmap.py) in the same
    pass: (B, T, C, H, W) -> float32 (B, N, S) raw signals and (B, N, h, w) maps."""
    with torch.inference_mode(), autocast(window.device, precision):
        raw, maps = method.score_with_maps(window)
        return raw.float(), coarse_maps(maps, side)


def forward_histories(
    method: SnippetHistoryMethod, sequences: Sequence[torch.Tensor], precision: Precision
) -> torch.Tensor:
    """(L_i, D) snippet-feature histories, oldest first -> float32 (M, S) raw signals of their newest frames."""
    device = sequences[0].device if sequences else torch.device("cpu")
    with torch.inference_mode(), autocast(device, precision):
        return method.score_history(list(sequences)).float()


def _score_batch(
    method: AnomalyMethod,
    frames: np.ndarray,
    ranges: list[tuple[int, int]],
    device: torch.device,
    precision: Precision,
    maps_side: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Windows of equal length -> (B * N, S) raw signals (or, for a SnippetHistoryMethod, (B * N, D) snippet
    features), in window order; with `maps_side`, also the (B * N, h, w) coarse maps of a method with `localizes`."""
    t = ranges[0][1] - ranges[0][0]
    clips = np.stack([frames[a:b] for a, b in ranges])  # (B, T, h, w, C) uint8
    b, _, h, w, c = clips.shape
    window = to_tensor(clips.reshape(b * t, h, w, c)).view(b, t, c, h, w).to(device, non_blocking=True)
    if maps_side is not None:
        out, maps = forward_windows_maps(method, window, precision, maps_side)
        return out.reshape(-1, out.shape[-1]).cpu().numpy(), maps.flatten(0, 1).cpu().numpy()
    out = forward_windows(method, window, precision)
    return out.reshape(-1, out.shape[-1]).cpu().numpy(), None


def _score_histories(
    method: SnippetHistoryMethod,
    features: np.ndarray,
    device: torch.device,
    first: int = 0,
    precision: Precision = "fp32",
) -> np.ndarray:
    """(M, D) snippet features of consecutive scored frames -> (M - first, S) raw signals of frames first..M-1,
    each from its whole history (frames t, t - stride, ... back to the first row, at most history_snippets):
    what the live worker computes with its Redis buffer, so offline and live scores agree however the video
    was cut into windows or chunks. Rows before `first` serve as history only."""
    stacked = torch.from_numpy(features).to(device)
    out = np.empty((len(features) - first, len(method.signal_names)), dtype=np.float32)
    chunk = 256  # sequences per forward pass
    for start in range(first, len(features), chunk):
        index = range(start, min(start + chunk, len(features)))
        sequences = [stacked[method.history_positions(j)] for j in index]
        out[start - first : index.stop - first] = forward_histories(method, sequences, precision).cpu().numpy()
    return out


def score_frames(
    method: AnomalyMethod,
    frames: np.ndarray,
    batch_size: int = 8,
    window: int = 16,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
    precision: Precision = "fp32",
) -> np.ndarray:
    """Prepared uint8 (N, h, w, C) frames -> raw signals float32 (N - context, S) for frames context..N-1,
    computed in `precision` (a card's `precision` when it is scored for its calibration)."""
    dev = resolve_device(device, method)
    out, _ = _window_outputs(method, frames, batch_size, window, dev, progress, precision)
    if isinstance(method, SnippetHistoryMethod):
        return _score_histories(method, out, dev, precision=precision)
    return out


def score_frames_with_maps(
    method: AnomalyMethod,
    frames: np.ndarray,
    batch_size: int = 8,
    window: int = 16,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
    precision: Precision = "fp32",
    side: int = MAP_SIDE,
) -> tuple[np.ndarray, np.ndarray]:
    """`score_frames` of a method with `localizes`, plus the coarse maps (N - context, h, w) float32 of the same
    frames (models/heatmap.py), from the same forward passes."""
    if not method.localizes:
        msg = f"{type(method).__name__} has no localisation map; only methods with localizes=True have heatmaps"
        raise ValueError(msg)
    dev = resolve_device(device, method)
    out, maps = _window_outputs(method, frames, batch_size, window, dev, progress, precision, side)
    assert maps is not None  # asked for with a side
    return out, maps


def _window_outputs(
    method: AnomalyMethod,
    frames: np.ndarray,
    batch_size: int,
    window: int,
    dev: torch.device,
    progress: Progress | None,
    precision: Precision = "fp32",
    maps_side: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Frames cut into windows -> (N - context, S) raw signals, or (N - context, D) snippet features of a
    SnippetHistoryMethod (scored from their histories by the caller); with `maps_side`, also the coarse maps
    (N - context, h, w) of a method with `localizes`."""
    spec = method.input_spec
    if frames.ndim != 4 or frames.shape[1:] != (spec.height, spec.width, spec.channels):
        msg = (
            f"frames must be prepared to (N, {spec.height}, {spec.width}, {spec.channels}) uint8 with "
            f"models.data.transforms.prepare, got {frames.shape}"
        )
        raise ValueError(msg)
    if batch_size < 1:
        msg = f"batch_size must be >= 1, got {batch_size}"
        raise ValueError(msg)
    num_signals = method.feature_dim if isinstance(method, SnippetHistoryMethod) else len(method.signal_names)
    ranges = list(iter_windows(len(frames), spec.context, window))
    grid = coarse_size(spec.height, spec.width, maps_side) if maps_side is not None else None
    maps = None if grid is None else np.empty((max(len(frames) - spec.context, 0), *grid), dtype=np.float32)
    if not ranges:
        return np.empty((0, num_signals), dtype=np.float32), maps
    # Group by window length so a batch stacks; only the last window can be shorter.
    groups: dict[int, list[tuple[int, int]]] = {}
    for r in ranges:
        groups.setdefault(r[1] - r[0], []).append(r)
    out = np.empty((len(frames) - spec.context, num_signals), dtype=np.float32)
    for group in groups.values():
        for i in range(0, len(group), batch_size):
            batch = group[i : i + batch_size]
            signals, batch_maps = _score_batch(method, frames, batch, dev, precision, maps_side)
            first = batch[0][0]  # windows in a group are consecutive, so their scored frames are too
            out[first : first + len(signals)] = signals
            if maps is not None and batch_maps is not None:
                maps[first : first + len(signals)] = batch_maps
            if progress is not None:
                progress(len(signals))
    return out, maps


def score_video(
    method: AnomalyMethod,
    reader: VideoReader,
    batch_size: int = 8,
    window: int = 16,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
    chunk_frames: int = 512,
    precision: Precision = "fp32",
    on_maps: Callable[[np.ndarray], object] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode, prepare and score a video in bounded memory -> (pts (N,), raw signals (N - context, S)).

    Frames are scored in chunks of about `chunk_frames`; each chunk carries the previous chunk's last
    `context` frames, so the result equals scoring the whole video at once. `on_maps` (methods with `localizes`)
    receives each chunk's coarse maps (M, h, w) in frame order, computed in the same forward passes.
    """
    spec = method.input_spec
    if spec.fps is not None and reader.fps > spec.fps * 1.05:
        # The live ingester decimates to spec.fps; offline scoring does not yet, so rates differ from live.
        log.warning(
            "%s: scoring every frame at %.1f fps; the method was trained at %.1f fps", reader.name, reader.fps, spec.fps
        )
    chunk_frames = max(chunk_frames, window) // window * window  # whole windows per chunk
    dev = resolve_device(device, method)
    history: np.ndarray | None = None  # a SnippetHistoryMethod's features of the previous chunks' last frames
    pts: list[float] = []
    buffer: list[np.ndarray] = []  # prepared frames not yet scored
    carry = np.empty((0, spec.height, spec.width, spec.channels), dtype=np.uint8)  # last `context` prepared frames
    parts: list[np.ndarray] = []

    def flush() -> None:
        nonlocal carry, buffer, history
        prepared = np.concatenate([carry, np.stack(buffer)])
        if isinstance(method, SnippetHistoryMethod):  # histories reach back across chunks, as live
            features, _ = _window_outputs(method, prepared, batch_size, window, dev, progress, precision)
            joined = features if history is None else np.concatenate([history, features])
            parts.append(_score_histories(method, joined, dev, len(joined) - len(features), precision))
            history = joined[max(0, len(joined) - (method.history_snippets - 1) * method.snippet_frames) :]
        elif on_maps is not None:
            raw, maps = score_frames_with_maps(method, prepared, batch_size, window, dev, progress, precision)
            parts.append(raw)
            on_maps(maps)
        else:
            parts.append(score_frames(method, prepared, batch_size, window, dev, progress, precision))
        carry = prepared[len(prepared) - spec.context :] if spec.context else prepared[:0]
        buffer = []

    for _, t, frame in reader.iter_frames(spec):  # prepared as the live ingester prepares them
        pts.append(t)
        buffer.append(frame)
        if len(buffer) + len(carry) >= chunk_frames + spec.context:
            flush()
    if buffer:
        flush()
    raw = np.concatenate(parts) if parts else np.empty((0, len(method.signal_names)), dtype=np.float32)
    return np.asarray(pts, dtype=np.float64), raw


def score_reader(
    method: AnomalyMethod,
    card: ModelCard,
    reader: VideoReader,
    batch_size: int = 8,
    window: int = 16,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> ScoredVideo:
    """One video -> per-frame raw signals and calibrated scores (online protocol, EMA from the video's start),
    in the card's precision."""
    pts, raw = score_video(method, reader, batch_size, window, device, progress, precision=card.precision)
    context = min(method.input_spec.context, len(pts))
    full_raw = np.full((len(pts), raw.shape[1]), np.nan, dtype=np.float32)
    full_raw[context:] = raw
    scores = None
    if card.calibration is not None:
        scores = np.full(len(pts), np.nan, dtype=np.float64)
        if len(raw):
            scores[context:], _ = calibrate(card.calibration, raw.astype(np.float64))
    return ScoredVideo(
        name=reader.name,
        fps=reader.fps,
        pts=pts,
        raw=full_raw,
        scores=scores,
        signal_names=tuple(method.signal_names),
        context=context,
    )


def score_file(
    method: AnomalyMethod,
    card: ModelCard,
    path: str | Path,
    batch_size: int = 8,
    window: int = 16,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> ScoredVideo:
    """A video file or frame folder -> `ScoredVideo` (what `vigil score` and the API's batch jobs return)."""
    return score_reader(method, card, open_video(path), batch_size, window, device, progress)
