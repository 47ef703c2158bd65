"""Pseudo-anomalies in held-out *normal* training videos: a label-free yardstick for choosing training recipes.

Recipes (model size, resolution, schedule, losses, signals) are compared on this, never on a test set: the
recipes are retrained on cameras whose footage is not here, so a choice tuned to one benchmark's test videos
would not carry over. Every held-out video is scored as it is (all frames normal) and again with one event
of each kind injected into `event_frames` consecutive frames (those frames labelled anomalous):

- ``fast``: a rectangle of the scene around the busiest motion plays `speed` (2) times faster than the rest, so
  the people inside it move about as fast as a cyclist or skater (the skip-frame pseudo-anomalies of Astrid et al.,
  "Learning Not to Reconstruct Anomalies", BMVC 2021, applied to a region instead of the whole frame).
- ``object``: a patch cut around the busiest motion of another frame of the same camera (a walker), blended in
  with soft edges, glides across the scene at 3-6 px per frame of the native footage without walking (the patch
  pseudo-anomalies of the same paper, moving).
- ``shape`` (opt-in, `kinds=ALL_KINDS`): the same walker's patch turned on its side and doubled in size, an object of
  the camera's own colours but of a shape and size no normal object has (like a cart or a car among walkers),
  gliding at walking pace (1-2 px per frame). The first two are made of the camera's normal appearance, so a model
  that reconstructs the frame it is given (DAST-Net) or scores appearance alone sees nothing in them; this one is an
  appearance anomaly. Astrid et al. paste intruders from another dataset (CIFAR-100); this one is made from the
  camera's own footage, so nothing is downloaded and any camera has it.

Everything is done on decoded native-resolution frames before `prepare`, so recipes with different input
sizes are scored on the same footage. Deterministic for a seed. `pseudo_raw` and `pseudo_auc` score a set with the
online protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from models.data.transforms import prepare
from models.evaluate.metrics import roc_auc
from models.evaluate.protocols import online_scores
from models.inference import score_frames

if TYPE_CHECKING:
    import torch

    from models.base import AnomalyMethod
    from models.card import Calibration

Kind = Literal["fast", "object", "shape"]
RESAMPLE_SEED = 0  # every model's resamples are drawn with it, so rows pair up
KINDS: tuple[Kind, ...] = ("fast", "object")  # the default set, which every recorded pseudo AUC so far used
ALL_KINDS: tuple[Kind, ...] = ("fast", "object", "shape")
REPEATS = 3  # events of each kind per held-out video by default, as every recorded pseudo AUC so far used


@dataclass(frozen=True)
class PseudoVideo:
    """One scored video of the pseudo set: uint8 frames (N, H, W[, C]) and labels (N,) (1 = injected)."""

    name: str
    frames: np.ndarray
    labels: np.ndarray


def _motion(frames: np.ndarray) -> np.ndarray:
    """(N, H, W[, C]) uint8 -> (H, W) summed absolute frame differences (where the scene moves)."""
    gray = frames.astype(np.float32)
    if gray.ndim == 4:
        gray = gray.mean(axis=3)
    return np.abs(np.diff(gray, axis=0)).sum(axis=0) if len(gray) > 1 else np.zeros(gray.shape[1:], np.float32)


def _busiest(energy: np.ndarray, box_h: int, box_w: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a box_h x box_w box among the 5 with the most motion energy (one drawn at random)."""
    h, w = energy.shape
    integral = np.pad(energy, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    sums = (
        integral[box_h:, box_w:] - integral[:-box_h, box_w:] - integral[box_h:, :-box_w] + integral[:-box_h, :-box_w]
    )  # (h - box_h + 1, w - box_w + 1)
    best = np.argsort(sums, axis=None)[::-1]
    picks, taken = [], np.zeros_like(sums, dtype=bool)
    for flat in best:
        y, x = divmod(int(flat), sums.shape[1])
        if not taken[y, x]:
            picks.append((y, x))
            taken[max(0, y - box_h // 2) : y + box_h // 2 + 1, max(0, x - box_w // 2) : x + box_w // 2 + 1] = True
        if len(picks) == 5:
            break
    y, x = picks[int(rng.integers(len(picks)))]
    return min(y, h - box_h), min(x, w - box_w)


def inject_fast(frames: np.ndarray, start: int, length: int, speed: int, rng: np.random.Generator) -> np.ndarray:
    """A copy of `frames` where a box around the busiest motion runs `speed` x faster for `length` frames."""
    n, h, w = frames.shape[:3]
    box_h, box_w = max(8, h // 3), max(8, w // 4)
    window = frames[start : min(n, start + speed * length)]
    y, x = _busiest(_motion(window), box_h, box_w, rng)
    out = frames.copy()
    for k in range(length):
        src = min(n - 1, start + speed * k)
        out[start + k, y : y + box_h, x : x + box_w] = frames[src, y : y + box_h, x : x + box_w]
    return out


def inject_object(
    frames: np.ndarray,
    donor: np.ndarray,
    start: int,
    length: int,
    rng: np.random.Generator,
    reshape: bool = False,
) -> np.ndarray:
    """A copy of `frames` with a patch of `donor` (a frame of the same camera) gliding across for `length` frames,
    blended in with soft edges (no hard seam to give it away). With `reshape` (the ``shape`` kind) the patch is
    turned on its side and doubled, and glides at walking pace instead of 3-6 px per frame."""
    n, h, w = frames.shape[:3]
    ph, pw = max(6, h // 6), max(4, w // 12)  # about one walker of Ped2 at 240x360
    # Where the donor differs most from the scene's median is where its walkers are.
    background = np.median(frames[:: max(1, n // 15)].astype(np.float32), axis=0)
    diff = np.abs(donor.astype(np.float32) - background)
    y0, x0 = _busiest(diff if diff.ndim == 2 else diff.mean(axis=2), ph, pw, rng)
    patch = donor[y0 : y0 + ph, x0 : x0 + pw].astype(np.float32)
    if reshape:
        patch = _turned_and_doubled(patch, h, w)
        ph, pw = patch.shape[:2]
    alpha = np.outer(np.hanning(ph + 2)[1:-1], np.hanning(pw + 2)[1:-1]) ** 0.5  # (ph, pw), 1 inside, 0 at the rim
    if patch.ndim == 3:
        alpha = alpha[:, :, None]
    speed = float(rng.uniform(1.0, 2.0) if reshape else rng.uniform(3.0, 6.0))
    angle = float(rng.uniform(0, 2 * np.pi))
    vy, vx = speed * np.sin(angle), speed * np.cos(angle)
    # Start so that the whole path stays inside the frame (clipped where the frame is too small for it).
    y_start = float(np.clip(h / 2 - vy * length / 2 - ph / 2, 0, h - ph))
    x_start = float(np.clip(w / 2 - vx * length / 2 - pw / 2, 0, w - pw))
    out = frames.copy()
    for k in range(length):
        y = round(float(np.clip(y_start + vy * k, 0, h - ph)))
        x = round(float(np.clip(x_start + vx * k, 0, w - pw)))
        region = out[start + k, y : y + ph, x : x + pw].astype(np.float32)
        out[start + k, y : y + ph, x : x + pw] = np.round(alpha * patch + (1 - alpha) * region).astype(np.uint8)
    return out


def _turned_and_doubled(patch: np.ndarray, h: int, w: int) -> np.ndarray:
    """The patch rotated by 90 degrees and scaled by 2 (bilinear), at most half the frame on each side."""
    import cv2  # opencv-python, a dependency of the ingester; imported here so the module stays light

    turned = np.ascontiguousarray(np.rot90(patch))
    out_h, out_w = min(2 * turned.shape[0], h // 2), min(2 * turned.shape[1], w // 2)
    return np.asarray(cv2.resize(turned, (out_w, out_h), interpolation=cv2.INTER_LINEAR), dtype=np.float32)


def pseudo_set(
    videos: list[tuple[str, np.ndarray]],
    repeats: int = REPEATS,
    event_frames: int = 30,
    speed: int = 2,
    seed: int = 0,
    kinds: tuple[Kind, ...] = KINDS,
) -> list[PseudoVideo]:
    """Each held-out normal video as it is, then `repeats` times per kind of `kinds` with one injected event.

    videos: (name, uint8 frames (N, H, W[, C])) at the footage's native resolution, all normal.
    A video too short for an event (speed * event_frames + 1 frames) is only scored clean.
    """
    rng = np.random.default_rng(seed)
    out: list[PseudoVideo] = []
    for i, (name, frames) in enumerate(videos):
        n = len(frames)
        out.append(PseudoVideo(f"{name}", frames, np.zeros(n, np.uint8)))
        if n < speed * event_frames + 1:
            continue
        other = videos[(i + 1) % len(videos)][1]
        for kind in [k for _ in range(repeats) for k in kinds]:
            start = int(rng.integers(0, n - speed * event_frames))
            if kind == "fast":
                injected = inject_fast(frames, start, event_frames, speed, rng)
            else:
                donor = other[int(rng.integers(len(other)))]
                if donor.shape != frames.shape[1:]:
                    donor = frames[int(rng.integers(n))]
                injected = inject_object(frames, donor, start, event_frames, rng, reshape=kind == "shape")
            labels = np.zeros(n, np.uint8)
            labels[start : start + event_frames] = 1
            out.append(
                PseudoVideo(f"{name}+{kind}{sum(v.name.startswith(f'{name}+{kind}') for v in out)}", injected, labels)
            )
    return out


def pseudo_raw(
    method: AnomalyMethod, videos: list[PseudoVideo], device: torch.device | str = "cpu"
) -> list[np.ndarray]:
    """Raw signals (N - context, S) of every video of a pseudo set."""
    return [score_frames(method, prepare(v.frames, method.input_spec), device=device) for v in videos]


def pseudo_online(
    raw: list[np.ndarray], videos: list[PseudoVideo], context: int, calibration: Calibration
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Per video of a pseudo set: the online protocol's scores (the card's calibration, EMA restarting at each
    video), the labels of the scored frames, and each scored frame's kind ("" for normal frames)."""
    scores, labels, kinds = [], [], []
    for signals, video in zip(raw, videos, strict=True):
        scores.append(online_scores(signals.astype(np.float64), calibration))
        labels.append(video.labels[context:])
        kind = video.name.split("+")[1].rstrip("0123456789") if "+" in video.name else ""
        kinds.append(np.where(video.labels[context:] > 0, kind, ""))
    return scores, labels, kinds


def pseudo_auc(
    raw: list[np.ndarray], videos: list[PseudoVideo], context: int, calibration: Calibration
) -> dict[str, float]:
    """Micro AUC of the online protocol (the card's calibration, EMA restarting at each video) on a pseudo set,
    over all of it and per kind (each kind's events against all normal frames). raw: `pseudo_raw`'s, with the
    calibration's signals as columns."""
    return online_aucs(*pseudo_online(raw, videos, context, calibration))


def online_aucs(scores: list[np.ndarray], labels: list[np.ndarray], kinds: list[np.ndarray]) -> dict[str, float]:
    """`pseudo_auc` of a set already through the online protocol (`pseudo_online`'s three lists)."""
    s, y, k = np.concatenate(scores), np.concatenate(labels), np.concatenate(kinds)
    out = {"online_micro_auc": roc_auc(y, s), "frames": float(len(y)), "anomalous": float(y.sum())}
    for kind in ALL_KINDS:
        keep = (y == 0) | (k == kind)
        if (k == kind).any():
            out[f"online_micro_auc_{kind}"] = roc_auc(y[keep], s[keep])
    return out


def resampled_auc(
    scores: list[np.ndarray], labels: list[np.ndarray], resamples: int, seed: int = RESAMPLE_SEED
) -> np.ndarray:
    """(resamples,) micro AUCs of the pseudo set drawn again with replacement, a whole video at a time (a video's
    frames are not independent: the event is one draw, its frames are not 30). The draws depend only on the number
    of videos and the seed, so two models scored on the same pseudo set get the same draws, and the difference of
    their arrays is a paired bootstrap of their AUC difference. A draw without both classes is drawn again."""
    rng = np.random.default_rng(seed)
    out = np.empty(resamples)
    n = len(scores)
    for b in range(resamples):
        while True:
            pick = rng.integers(0, n, n)
            y = np.concatenate([labels[i] for i in pick])
            if 0 < y.sum() < len(y):
                break
        out[b] = roc_auc(y, np.concatenate([scores[i] for i in pick]))
    return out
