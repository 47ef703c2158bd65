"""Snippet history of SnippetHistoryMethod models (VadCLIP): the Redis buffer, streamed scoring, a live worker."""

from __future__ import annotations

import logging
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
import redis
import torch

from models.base import SnippetHistoryMethod
from models.calibration import fit_calibration
from models.card import Calibration
from models.data.transforms import prepare, to_tensor
from models.io import build_card, save_model
from models.methods.vadclip import Vadclip, VadclipConfig
from models.store import ModelStore
from service.bus import keys, topics
from service.messages import WindowMsg
from service.worker.history import score_with_history
from service.worker.models import LoadedModel
from tests.calibration_util import offline_scores
from tests.service.worker.helpers import all_scores, running_worker, wait_for, worker_settings
from tests.service.worker.models_util import make_windows
from tests.synthetic import render_frames

NAME = "history"


def _method() -> SnippetHistoryMethod:
    """VadCLIP tiny (random vigil-tiny CLIP, 64x64 BGR, context 15, stride 16, history of 8 snippets)."""
    return Vadclip(VadclipConfig.tiny())


def _raw(method: SnippetHistoryMethod, frames: np.ndarray) -> np.ndarray:
    """(T, h, w, C) uint8 -> (T - context, S) float64: the whole clip scored as one window (`method.score`)."""
    with torch.inference_mode():
        return method.score(to_tensor(frames)[None])[0].numpy().astype(np.float64)


def _clip(
    method: SnippetHistoryMethod, num_frames: int, seed: int, anomaly: tuple[int, int] | None = None
) -> np.ndarray:
    return prepare(render_frames(num_frames, (64, 64), anomaly, seed=seed)[0], method.input_spec)


def _calibrated(method: SnippetHistoryMethod) -> Calibration:
    """A calibration fitted on raw signals of synthetic normal clips (never on the clips the tests score)."""
    raw = [_raw(method, _clip(method, 96, seed)) for seed in (1, 2)]
    flat = np.concatenate(raw)
    names = list(method.signal_names)
    return fit_calibration(flat, names, weights=method.calibration_weights(flat), segments=[len(r) for r in raw])


@pytest.fixture(scope="module")
def history_model() -> LoadedModel:
    torch.manual_seed(0)
    method = _method().eval()
    cal = _calibrated(method)
    return LoadedModel(ref=f"{NAME}@v1", method=method, card=build_card(method, NAME, calibration=cal), calibration=cal)


def _stream(model: LoadedModel, frames: np.ndarray, camera: str) -> list[WindowMsg]:
    """The clip cut like the ingester cuts it: context frames, then 8 scored frames per window."""
    return make_windows(camera, frames, model.method.input_spec.context, model=model.ref)


def _score(r: redis.Redis, model: LoadedModel, windows: list[WindowMsg]) -> np.ndarray:
    frames = [w.frames for w in windows]
    return score_with_history(r, model, windows, frames, torch.device("cpu"), ttl_s=600)


# --- the Redis buffer -------------------------------------------------------------------------------------


def test_snippet_features_round_trip_with_ttl(redis_url, caplog):
    r = redis.Redis.from_url(redis_url)
    features = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    topics.write_snippet_features(r, "cam", "", "m@v1", 100, features, ttl_s=30)

    got = topics.read_snippet_features(r, "cam", "", "m@v1", [99, 100, 102, 103, 104], dim=6)
    assert sorted(got) == [100, 102, 103]  # 99 and 104 were never written
    for frame, feature in got.items():
        assert feature.dtype == np.float32
        np.testing.assert_array_equal(feature, features[frame - 100])
    assert 0 < r.ttl(keys.snippet_feature_key("cam", "", "m@v1", 101)) <= 30
    assert topics.read_snippet_features(r, "cam", "", "m@v2", [100], dim=6) == {}  # another version: its own keys
    assert topics.read_snippet_features(r, "cam", "b3c4", "m@v1", [100], dim=6) == {}  # another numbering: its own
    assert topics.read_snippet_features(r, "cam", "", "m@v1", [], dim=6) == {}

    r.set(keys.snippet_feature_key("cam", "", "m@v1", 101), b"\0" * 8)  # 2 floats, not 6
    with caplog.at_level(logging.ERROR):
        got = topics.read_snippet_features(r, "cam", "", "m@v1", [100, 101], dim=6)
    assert sorted(got) == [100]
    assert "frame 101" in caplog.text


# --- scoring with history -----------------------------------------------------------------------------------


def test_streamed_windows_score_like_the_whole_clip_in_any_batching(redis_url, history_model):
    """Consecutive windows reach back through Redis: every frame scores exactly as in one window holding the whole
    clip, and one window at a time hands `score_history` exactly the same sequences as one batch."""
    method = history_model.method
    assert isinstance(method, SnippetHistoryMethod)
    reach = (method.history_snippets - 1) * method.snippet_frames  # frames a full history spans before t
    clip = _clip(method, method.input_spec.context + reach + 24, seed=7, anomaly=(40, 60))
    whole = _raw(method, clip)
    r = redis.Redis.from_url(redis_url)

    windows = _stream(history_model, clip, "batched")
    assert len(windows) > method.history_snippets  # a history crosses several windows
    with patch.object(method, "score_history", wraps=method.score_history) as spy:
        batched = _score(r, history_model, windows).reshape(-1, whole.shape[1])
        batched_sequences = spy.call_args.args[0]
        spy.reset_mock()
        one_by_one = np.concatenate([_score(r, history_model, [w])[0] for w in _stream(history_model, clip, "single")])
        single_sequences = [seq for call in spy.call_args_list for seq in call.args[0]]

    full = slice(reach, None)  # frames whose whole history lies in the clip
    assert len(whole[full]) == 24
    assert {len(seq) for seq in batched_sequences[full]} == {method.history_snippets}
    np.testing.assert_array_equal(batched[full], whole[full])
    np.testing.assert_array_equal(batched, whole)  # shorter histories too: both stop at the clip's start
    assert len(single_sequences) == len(batched_sequences)
    assert all(torch.equal(a, b) for a, b in zip(single_sequences, batched_sequences, strict=True))
    # Same sequences; VadCLIP scores a sequence alone or among others up to float32 rounding (1 ulp seen on CPU).
    np.testing.assert_allclose(one_by_one, batched, rtol=1e-6, atol=0)
    key = keys.snippet_feature_key("batched", "", history_model.ref, windows[-1].first_frame)
    assert 0 < r.ttl(key) <= 600


def test_history_stops_at_the_first_missing_snippet(redis_url, history_model):
    """A window whose predecessors are gone (expired, or never scored) is scored from the unbroken newest part of
    its history, never from a history with a hole in it."""
    method = history_model.method
    assert isinstance(method, SnippetHistoryMethod)
    stride = method.snippet_frames
    windows = _stream(history_model, _clip(method, method.input_spec.context + 4 * stride, seed=8), "cam")
    r = redis.Redis.from_url(redis_url)
    _score(r, history_model, windows[:-1])
    t = windows[-1].first_frame
    r.delete(keys.snippet_feature_key("cam", "", history_model.ref, t - 2 * stride))
    with patch.object(method, "score_history", wraps=method.score_history) as spy:
        _score(r, history_model, windows[-1:])
    sequences = spy.call_args.args[0]

    value = r.get(keys.snippet_feature_key("cam", "", history_model.ref, t))
    assert isinstance(value, bytes)
    stored = topics.read_snippet_features(r, "cam", "", history_model.ref, [t - stride, t], len(value) // 4)
    assert torch.equal(sequences[0], torch.from_numpy(np.stack([stored[t - stride], stored[t]])))  # t: 2 of them
    assert all(len(seq) > 2 for seq in sequences[1:])  # t + 1 ...: t + 1 - 2 * stride is still there


# --- a live worker ------------------------------------------------------------------------------------------


def _register(root: Path, model: LoadedModel) -> None:
    save_model(ModelStore(root), model.method, model.card)


def test_live_worker_scores_every_frame_of_a_history_model(redis_url, tmp_path, history_model):
    """Two cameras' windows interleaved on the bus, batched together by a real worker: each camera's frames score
    as its whole clip would, so histories reach across batches through Redis and never mix cameras."""
    _register(tmp_path, history_model)
    method = history_model.method
    ctx = method.input_spec.context
    clips = {"cam-a": _clip(method, ctx + 64, seed=9, anomaly=(40, 52))}
    clips["cam-b"] = clips["cam-a"][::-1].copy()
    r = redis.Redis.from_url(redis_url)
    for group in zip(*(make_windows(cam, clip, ctx, model=NAME) for cam, clip in clips.items()), strict=True):
        for window in group:
            topics.publish_window(r, window)

    with running_worker(worker_settings(redis_url, tmp_path)):  # max_batch 4: both cameras in each batch
        wait_for(lambda: all(r.xlen(keys.score_stream_key(c)) >= 64 for c in clips), 120, "scores")

    for cam, clip in clips.items():
        scores = all_scores(r, cam)
        assert [s.frame for s in scores] == list(range(ctx, len(clip)))
        assert {s.model for s in scores} == {history_model.ref}
        expected = offline_scores(history_model.calibration, history_model.ref, _raw(method, clip)).scores
        np.testing.assert_allclose([s.score for s in scores], expected, atol=1e-5)
        assert r.exists(keys.snippet_feature_key(cam, "", history_model.ref, len(clip) - 1))
    assert r.xpending(keys.windows_stream(0), keys.WINDOWS_GROUP)["pending"] == 0
