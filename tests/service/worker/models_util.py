"""Model helpers for worker tests: a tiny FFP trained for a few seconds on normal synthetic frames, calibrated
and registered in a store; windows cut like the ingester cuts them; offline raw signals to compare with."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch

from models.base import AnomalyMethod
from models.calibration import fit_calibration
from models.card import Calibration
from models.data.transforms import prepare, to_tensor
from models.io import build_card, save_model
from models.registry import create_method, get_method
from models.store import ModelStore
from service.messages import WindowMsg
from tests.synthetic import render_frames, write_video

MODEL = "tiny"
WINDOW = 8  # scored frames per window


@dataclass(frozen=True)
class TrainedModel:
    root: Path
    method: AnomalyMethod
    calibration: Calibration


def _raw_signals(method: AnomalyMethod, frames: np.ndarray) -> np.ndarray:
    """(T, h, w, C) uint8 -> (T - context, S) raw signals, scoring the whole clip as one window."""
    with torch.inference_mode():
        return method.score(to_tensor(frames)[None]).numpy()[0].astype(np.float64)


def _train(method: AnomalyMethod, clips: list[np.ndarray], steps: int) -> None:
    """A few dozen steps of the intensity loss: enough for the racing block to stand out (~2 s on CPU)."""
    ctx = method.input_spec.context
    data = torch.cat([to_tensor(c).unfold(0, ctx + 1, 1).permute(0, 4, 1, 2, 3) for c in clips])  # (M, ctx+1, C, H, W)
    opt = torch.optim.Adam(method.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    method.train()
    for _ in range(steps):
        batch = data[torch.randint(len(data), (16,), generator=gen)]
        pred = method.predict(batch[:, :ctx])  # type: ignore[operator]
        loss = torch.nn.functional.mse_loss(pred, batch[:, ctx] * 2 - 1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    method.eval()


def decode(path: Path) -> np.ndarray:
    """All frames of a video file as (T, H, W, 3) uint8 BGR, decoded with PyAV."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="bgr24") for f in container.decode(video=0)])


def _normal_footage(root: Path, seed: int) -> np.ndarray:
    """Normal synthetic frames after an H.264 round trip, so training and calibration see what cameras send."""
    path = write_video(root / f".normal-{seed}.mp4", render_frames(48, (64, 64), None, seed=seed)[0])
    try:
        return decode(path)
    finally:
        path.unlink()


def register_version(root: Path, seed: int, calibrated: bool = True, steps: int = 40) -> TrainedModel:
    torch.manual_seed(seed)
    method = create_method(get_method("ffp").make_config("tiny"))
    spec = method.input_spec
    normal = [prepare(_normal_footage(root, s), spec) for s in (seed + 1, seed + 2)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: more threads only fight over the 2 shared cores
    try:
        _train(method, normal, steps)
    finally:
        torch.set_num_threads(threads)
    held_out = [prepare(_normal_footage(root, s), spec) for s in (seed + 3, seed + 4)]
    raw = [_raw_signals(method, c) for c in held_out]
    cal = fit_calibration(np.concatenate(raw), list(method.signal_names), segments=[len(r) for r in raw])
    card = build_card(method, MODEL, calibration=cal if calibrated else None)
    save_model(ModelStore(root), method, card)
    return TrainedModel(root, method, cal)


def make_windows(camera: str, frames: np.ndarray, context: int, model: str = f"{MODEL}@production") -> list[WindowMsg]:
    """Windows as the ingester cuts them: `context` frames, then up to WINDOW scored frames, no overlap in scored."""
    now = time.time()
    out = []
    for first in range(context, len(frames), WINDOW):
        stop = min(first + WINDOW, len(frames))
        out.append(
            WindowMsg(
                camera=camera,
                model=model,
                context=context,
                first_frame=first,
                pts=[i / 25 for i in range(first, stop)],
                capture_ts=[now] * (stop - first),
                frames=frames[first - context : stop],
            )
        )
    return out


def offline_raw(method: AnomalyMethod, frames: np.ndarray) -> np.ndarray:
    """Raw signals of frames context.. with the same window cut as `make_windows`: (T - context, S)."""
    ctx = method.input_spec.context
    return np.concatenate([_raw_signals(method, w.frames) for w in make_windows("x", frames, ctx)])
