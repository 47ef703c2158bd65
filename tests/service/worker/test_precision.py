"""One precision per model version: the worker and offline scoring (`vigil score`/`eval`, calibration) run the same
forward pass (models.inference.forward_windows) in the precision the card names. On CPU for bf16 autocast, and
on a GPU (`-m gpu`) for fp32 and bf16, where offline scoring used to autocast while the worker ran fp32."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.card import Precision
from models.inference import score_frames as score_offline
from models.io import load_model
from models.store import ModelStore
from service.worker.inference import score_frames as score_live
from service.worker.models import LoadedModel
from tests.service.worker.models_util import MODEL, WINDOW, TrainedModel, make_windows


def _loaded(store: TrainedModel, device: str, precision: Precision) -> LoadedModel:
    method, card, version = load_model(ModelStore(store.root), f"{MODEL}@v1", device)
    card = card.model_copy(update={"precision": precision})
    assert card.calibration is not None
    return LoadedModel(ref=version.ref, method=method, card=card, calibration=card.calibration)


def _live_and_offline(model: LoadedModel, clip: np.ndarray, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw signals of frames context.. as the worker computes them (windows of WINDOW frames, one batch) and as
    offline scoring does (the same window length) in the card's precision: (T - context, S) each."""
    windows = make_windows("cam", clip, model.method.input_spec.context)
    full = [w.frames for w in windows if w.num_scored == WINDOW]
    live = score_live(model, full, torch.device(device)).reshape(-1, len(model.method.signal_names))
    offline = score_offline(model.method, clip, WINDOW, WINDOW, device, precision=model.card.precision)
    return live, offline[: len(live)]


def test_the_card_records_the_precision_its_calibration_was_computed_in(trained_store):
    version = ModelStore(trained_store.root).resolve(f"{MODEL}@v1")
    assert json.loads((version.path / "card.json").read_text())["precision"] == "fp32"


def test_worker_scores_a_bf16_card_as_offline_scoring_does_on_cpu(trained_store, clip_frames):
    bf16 = _loaded(trained_store, "cpu", "bf16")
    live, offline = _live_and_offline(bf16, clip_frames, "cpu")
    np.testing.assert_allclose(live, offline, rtol=1e-6, atol=1e-7)
    fp32_live, _ = _live_and_offline(_loaded(trained_store, "cpu", "fp32"), clip_frames, "cpu")
    assert not np.allclose(live, fp32_live, rtol=1e-6, atol=1e-7)  # the card's precision is what ran


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_worker_and_offline_scoring_agree_on_a_gpu(trained_store, clip_frames, precision):
    model = _loaded(trained_store, "cuda", precision)
    live, offline = _live_and_offline(model, clip_frames, "cuda")
    np.testing.assert_allclose(live, offline, rtol=1e-5, atol=1e-6)
    cpu_live, _ = _live_and_offline(_loaded(trained_store, "cpu", precision), clip_frames, "cpu")
    tolerance = {"fp32": (1e-4, 1e-5), "bf16": (5e-2, 5e-3)}[precision]  # fp32 on the GPU: TF32 is off
    np.testing.assert_allclose(live, cpu_live, rtol=tolerance[0], atol=tolerance[1])
