"""The shared scoring loop: window coverage, windowed == one big window, streaming == in-memory, score_file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import models
from models.base import AnomalyMethod, MethodConfig
from models.calibration import calibrate, fit_calibration
from models.data.transforms import prepare
from models.data.video import open_video
from models.inference import iter_windows, score_file, score_frames, score_video
from models.io import build_card
from models.types import InputSpec


class _DiffConfig(MethodConfig):
    name: str = "diff"


class DiffMethod(AnomalyMethod):
    """A tiny deterministic method (not registered): per-frame error of a conv prediction from the previous frames."""

    def __init__(self, context: int = 2, size: int = 32) -> None:
        super().__init__()
        self.config = _DiffConfig()
        self.input_spec = InputSpec(height=size, width=size, channels=1, context=context)
        self.signal_names = ("err", "mean")
        torch.manual_seed(0)
        self.conv = nn.Conv2d(context, 1, 3, padding=1)

    def score(self, window: torch.Tensor) -> torch.Tensor:
        n = self.check_window(window)
        c = self.input_spec.context
        x = window[:, :, 0]  # (B, T, H, W)
        out = []
        for t in range(c, c + n):
            pred = self.conv(x[:, t - c : t])[:, 0]  # (B, H, W)
            err = (pred - x[:, t]).pow(2).mean(dim=(1, 2))
            out.append(torch.stack([err, x[:, t].mean(dim=(1, 2))], dim=-1))
        return torch.stack(out, dim=1)  # (B, N, S)


@pytest.mark.parametrize(
    ("num_frames", "context", "window"), [(10, 4, 3), (4, 4, 2), (9, 0, 4), (20, 1, 16), (3, 5, 2)]
)
def test_windows_cover_every_scorable_frame_once(num_frames: int, context: int, window: int) -> None:
    scored: list[int] = []
    for start, stop in iter_windows(num_frames, context, window):
        assert start >= 0
        assert stop <= num_frames
        assert 0 < stop - start - context <= window
        scored.extend(range(start + context, stop))
    assert scored == list(range(context, num_frames))


def _methods() -> list[AnomalyMethod]:
    found: list[AnomalyMethod] = [DiffMethod()]
    for name in models.list_methods():  # every registered method, at its smallest preset
        spec = models.get_method(name)
        preset = "tiny" if "tiny" in getattr(spec.config_cls, "PRESETS", ()) else None
        found.append(models.create_method(spec.make_config(preset)))
    return found


@pytest.mark.parametrize("method", _methods(), ids=lambda m: str(m.config.name))
def test_windowed_scoring_equals_one_big_window(
    method: AnomalyMethod, synthetic_video: tuple[Path, np.ndarray]
) -> None:
    method.eval()
    spec = method.input_spec
    n = spec.context + 8  # windows of 3, 3 and 2 scored frames: a full batch of two, then a short window
    frames = prepare(open_video(synthetic_video[0]).read_all()[:n], spec)
    with torch.inference_mode():
        whole = method.score(torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)[None])[0].numpy()
    seen: list[int] = []
    windowed = score_frames(method, frames, batch_size=2, window=3, progress=seen.append)
    assert windowed.shape == (8, len(method.signal_names))
    assert seen == [6, 2]
    np.testing.assert_allclose(windowed, whole, rtol=1e-4, atol=1e-5)


def test_streaming_video_equals_in_memory(synthetic_video: tuple[Path, np.ndarray]) -> None:
    method = DiffMethod(context=3).eval()
    reader = open_video(synthetic_video[0])
    pts, raw = score_video(method, reader, batch_size=3, window=4, chunk_frames=8)  # many chunks
    prepared = np.stack([frame for _, _, frame in reader.iter_frames(method.input_spec)])
    expected = score_frames(method, prepared, window=16)
    assert len(pts) == 64
    assert raw.shape == (61, 2)
    np.testing.assert_allclose(raw, expected, rtol=1e-5, atol=1e-6)


def test_bad_frames_are_rejected() -> None:
    method = DiffMethod()
    with pytest.raises(ValueError, match=r"prepared to \(N, 32, 32, 1\)"):
        score_frames(method, np.zeros((5, 16, 16, 1), np.uint8))
    assert score_frames(method, np.zeros((2, 32, 32, 1), np.uint8)).shape == (0, 2)


def test_score_file_calibrates_scored_frames(synthetic_video: tuple[Path, np.ndarray]) -> None:
    method = DiffMethod().eval()
    path, labels = synthetic_video
    raw_normal = score_video(method, open_video(path))[1][:30]
    card = build_card(method, "diff", calibration=fit_calibration(raw_normal.astype(np.float64), ["err", "mean"]))
    out = score_file(method, card, path)
    assert out.name == "clip"
    assert out.num_frames == len(labels)
    assert out.context == 2
    assert out.scores is not None
    assert np.isnan(out.scores[:2]).all()
    assert np.isnan(out.raw[:2]).all()
    assert ((out.scores[2:] >= 0) & (out.scores[2:] <= 1)).all()
    assert card.calibration is not None
    np.testing.assert_allclose(out.scores[2:], calibrate(card.calibration, out.raw[2:].astype(np.float64))[0])
    uncalibrated = score_file(method, card.model_copy(update={"calibration": None}), path)
    assert uncalibrated.scores is None
    np.testing.assert_allclose(uncalibrated.raw[2:], out.raw[2:])


@pytest.mark.gpu
def test_cuda_scores_in_the_precision_asked_for(synthetic_video: tuple[Path, np.ndarray]) -> None:
    method = DiffMethod().eval()
    frames = prepare(open_video(synthetic_video[0]).read_all()[:40], method.input_spec)
    cpu = score_frames(method, frames, device="cpu")
    fp32 = score_frames(method.to("cuda"), frames, device="cuda")  # the default: plain fp32, TF32 off
    bf16 = score_frames(method, frames, device="cuda", precision="bf16")
    assert fp32.dtype == bf16.dtype == np.float32
    np.testing.assert_allclose(fp32, cpu, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bf16, cpu, rtol=5e-2, atol=5e-3)
    assert not np.array_equal(bf16, fp32)


def test_cpu_scores_in_the_precision_asked_for(synthetic_video: tuple[Path, np.ndarray]) -> None:
    """bf16 autocast on the CPU too: a card calibrated in bf16 is scored in bf16 wherever it runs."""
    method = DiffMethod().eval()
    frames = prepare(open_video(synthetic_video[0]).read_all()[:40], method.input_spec)
    fp32 = score_frames(method, frames, device="cpu")
    bf16 = score_frames(method, frames, device="cpu", precision="bf16")
    np.testing.assert_allclose(bf16, fp32, rtol=5e-2, atol=5e-3)
    assert not np.array_equal(bf16, fp32)
