"""A snippet-history model (VadCLIP tiny) through the real stack: a file camera -> ingest -> worker (history in
Redis) -> API, every frame's score equal to `vigil score`'s for the same file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
import torch

from cli.up import Stack
from models.calibration import fit_calibration
from models.data.transforms import prepare
from models.inference import score_file, score_frames
from models.io import build_card, load_model, save_model
from models.methods.vadclip import Vadclip, VadclipConfig
from models.store import ModelStore
from service.bus import keys
from tests.calibration_util import offline_scores
from tests.integration.conftest import collect, ws_connect
from tests.synthetic import render_frames

MODEL = "vadclip-tiny"


def _register(root: Path) -> None:
    """An untrained VadCLIP tiny calibrated on normal synthetic footage (scores depend on weights, not on training)."""
    torch.manual_seed(0)
    method = Vadclip(VadclipConfig.tiny()).eval()
    normal = [prepare(render_frames(96, (64, 64), None, seed=s)[0], method.input_spec) for s in (41, 42)]
    raw = [score_frames(method, clip) for clip in normal]
    cal = fit_calibration(np.concatenate(raw).astype(np.float64), list(method.signal_names), [len(r) for r in raw])
    save_model(ModelStore(root), method, build_card(method, MODEL, calibration=cal))


@pytest.mark.integration
def test_file_camera_scores_a_history_model_like_vigil_score(
    synthetic_video: tuple[Path, np.ndarray], make_stack: Callable[..., Stack], redis_url: str, tmp_path: Path
) -> None:
    path, _ = synthetic_video  # 64 frames: 15 of context, then 49 scored
    root = tmp_path / "registry"
    _register(root)
    stack = make_stack(redis_url, VIGIL_STORE__ROOT=str(root), VIGIL_FOOTAGE_ROOT=str(path.parent))
    camera = {"id": "hall", "url": str(path), "model": MODEL, "kind": "file", "realtime": False}
    with ws_connect(stack, "/ws/scores?camera=hall") as ws:
        r = httpx.post(f"{stack.api_url}/cameras", json=camera, timeout=10)
        assert r.status_code == 201, r.text
        scores = collect(ws, lambda got: len(got) >= 49, timeout_s=90)
    assert [s["frame"] for s in scores] == list(range(15, 64))
    method, card, version = load_model(ModelStore(root), MODEL)
    offline = score_file(method, card, path)
    assert card.calibration is not None
    # A new camera learns: its scores so far come from the card's normal frames, as the offline camera path's do.
    expected = offline_scores(card.calibration, version.ref, offline.raw[15:].astype(np.float64)).scores
    np.testing.assert_allclose([s["score"] for s in scores], expected, atol=1e-5)
    assert {s["calibration"]["state"] for s in scores} == {"learning"}
    # The history lives in Redis under the ingester's stream id, one key per scored frame.
    pattern = keys.snippet_feature_key("hall", "*", "*", 0).removesuffix(":0") + "*"
    found = list(redis.Redis.from_url(redis_url).scan_iter(match=pattern, count=1000))
    assert len(found) == 49
    stream = found[0].decode().split(":snippet:")[1].split(":")[0]
    assert stream
    assert keys.snippet_feature_key("hall", stream, f"{MODEL}@v1", 63).encode() in found
