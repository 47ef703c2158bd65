"""Score a batch with a `SnippetHistoryMethod` (VadCLIP): each frame's history reaches back beyond its window.

Frame t is scored from the snippet features of t - k * stride, k = L-1 .. 0 (oldest first, L = history_snippets).
Features of this batch's windows are used directly; earlier ones come from the camera's buffer in Redis (one MGET
per window), and this batch's features go there for later windows (TTL `worker.history_ttl_s`). Going back, the
history stops at the first missing element, so its spacing stays uniform. A later window of a camera in the same
batch reads an earlier one's features from the batch itself, so the result does not depend on how windows are
batched.
"""

from __future__ import annotations

import time

import numpy as np
import redis
import torch

from models.base import SnippetHistoryMethod
from models.inference import forward_histories, forward_windows
from service.bus import topics
from service.messages import WindowMsg
from service.worker.inference import finish_batch, window_tensor
from service.worker.models import LoadedModel

Features = dict[tuple[str, str, int], np.ndarray]  # (camera, stream, frame) -> (D,) float32 snippet feature


def score_with_history(
    r: redis.Redis,
    model: LoadedModel,
    windows: list[WindowMsg],
    frames: list[np.ndarray],
    device: torch.device,
    ttl_s: int,
) -> np.ndarray:
    """Windows and their fitted (T, H, W, C) uint8 frames -> (B, N, S) float64 raw signals, like `score_frames`."""
    method = model.method
    if not isinstance(method, SnippetHistoryMethod):
        msg = f"{model.ref} is a {type(method).__name__}, not a SnippetHistoryMethod"
        raise TypeError(msg)
    started = time.perf_counter()
    features = forward_windows(method, window_tensor(frames, device), model.card.precision).cpu().numpy()  # (B, N, D)
    known: Features = {
        (w.camera, w.stream, w.first_frame + i): row
        for w, f in zip(windows, features, strict=True)
        for i, row in enumerate(f)
    }
    for w in windows:  # what this batch does not hold, from Redis (before writing, so nothing is read back)
        wanted = sorted({f for t in _scored(w) for f in _history(method, t) if (w.camera, w.stream, f) not in known})
        stored = topics.read_snippet_features(r, w.camera, w.stream, model.ref, wanted, features.shape[-1])
        known.update(((w.camera, w.stream, f), v) for f, v in stored.items())
    for w, f in zip(windows, features, strict=True):
        topics.write_snippet_features(r, w.camera, w.stream, model.ref, w.first_frame, f, ttl_s)
    sequences = [_sequence(method, known, w, t) for w in windows for t in _scored(w)]
    stacked = torch.from_numpy(np.concatenate(sequences)).to(device)  # one copy to the device, then views
    raw = forward_histories(method, torch.split(stacked, [len(s) for s in sequences]), model.card.precision)  # (B*N, S)
    return finish_batch(model, raw.reshape(features.shape[0], features.shape[1], -1), started)


def _scored(window: WindowMsg) -> range:
    return range(window.first_frame, window.first_frame + window.num_scored)


def _history(method: SnippetHistoryMethod, t: int) -> list[int]:
    """Frames of t's history before t itself, newest first: t - stride, t - 2 * stride, ... (none below 0)."""
    step = method.snippet_frames
    return list(range(t - step, max(t - method.history_snippets * step, -1), -step))


def _sequence(method: SnippetHistoryMethod, known: Features, window: WindowMsg, t: int) -> np.ndarray:
    """(L, D) features of t's history, oldest first, stopping going back at the first missing element."""
    newest_first = [known[(window.camera, window.stream, t)]]
    for f in _history(method, t):
        feature = known.get((window.camera, window.stream, f))
        if feature is None:
            break
        newest_first.append(feature)
    return np.stack(newest_first[::-1])
