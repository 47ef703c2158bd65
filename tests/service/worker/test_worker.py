"""The worker end to end, in-process, against a real redis-server and tiny trained models in a temporary store."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
import redis
import torch
from prometheus_client import REGISTRY

from models.io import build_card, load_model, save_model
from models.registry import create_method
from models.store import ModelStore
from service.bus import keys, topics
from service.errors import ModelUnavailableError
from service.heatmaps import alert_maps
from service.messages import CameraConfig, WindowMsg
from service.worker import main as worker_main
from service.worker.models import ModelCache
from tests.calibration_util import offline_scores, use_card_reference
from tests.conftest import ANOMALY_SPAN, free_port
from tests.service.worker.helpers import all_scores, running_worker, wait_for, worker_settings
from tests.service.worker.models_util import MODEL, make_windows, offline_raw, register_version


def _publish(r: redis.Redis, *streams: list[WindowMsg]) -> None:
    """Interleave the cameras' windows on the bus, as concurrent ingesters would."""
    for group in zip(*streams, strict=True):
        for window in group:
            topics.publish_window(r, window)


def test_two_cameras_scored_once_in_order_matching_offline_with_alert(redis_url, trained_store, clip_frames):
    r = redis.Redis.from_url(redis_url)
    ctx = trained_store.method.input_spec.context
    frames = {"cam-a": clip_frames, "cam-b": clip_frames[::-1].copy()}
    model = f"{MODEL}@v1"
    reference = use_card_reference(r, "cam-a", trained_store.calibration, model)  # cam-b is new: it learns
    _publish(r, *(make_windows(cam, f, ctx) for cam, f in frames.items()))
    expected_frames = list(range(ctx, len(clip_frames)))
    before = REGISTRY.get_sample_value("vigil_worker_frames_scored_total", {"camera": "cam-a"}) or 0.0

    port = free_port()
    settings = worker_settings(redis_url, trained_store.root, max_batch=8, metrics_port=port)
    with running_worker(settings, serve_metrics=True) as worker:
        wait_for(lambda: all(r.xlen(keys.score_stream_key(c)) >= len(expected_frames) for c in frames), 60, "scores")
        time.sleep(0.3)  # anything published twice would show up now
        heartbeats = topics.read_heartbeats(r, "worker")
        assert [h.id for h in heartbeats] == [worker.worker_id]
        exposition = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    for name in ("vigil_worker_batch_size_bucket", "vigil_e2e_latency_seconds_count", "vigil_camera_score{"):
        assert name in exposition

    for cam, f in frames.items():
        scores = all_scores(r, cam)
        assert [s.frame for s in scores] == expected_frames  # every frame exactly once, in order
        assert {s.model for s in scores} == {f"{MODEL}@v1"}
        known = reference if cam == "cam-a" else None
        offline = offline_scores(trained_store.calibration, model, offline_raw(trained_store.method, f), known)
        np.testing.assert_allclose([s.score for s in scores], offline.scores, atol=1e-4)
        assert [s.alertable for s in scores] == offline.alertable.tolist()
        assert {s.calibration.state for s in scores if s.calibration} == ({"ready"} if known else {"learning"})
        assert topics.latest_score(r, cam) == scores[-1]
    assert r.xpending(keys.windows_stream(0), keys.WINDOWS_GROUP)["pending"] == 0  # everything acknowledged
    after = REGISTRY.get_sample_value("vigil_worker_frames_scored_total", {"camera": "cam-a"})
    assert after - before == len(expected_frames)

    alerts = topics.list_alerts(r, camera="cam-a").alerts
    assert alerts, "no alert for the anomalous span"
    span = set(range(*ANOMALY_SPAN))
    best = max(alerts, key=lambda a: len(span & set(range(a.start_frame, (a.end_frame or 10**6) + 1))))
    assert best.state == "closed"
    assert len(span & set(range(best.start_frame, best.end_frame + 1))) >= len(span) // 2
    assert best.start_frame <= best.peak_frame <= best.end_frame
    # Heatmaps: every frame's coarse map stays a while; the alert holds the maps of all its frames, and the peak
    # frame's map is hottest on the anomalous block (tests/synthetic.py: 8x8 px at 64x64, 4x4 cells at 32x32).
    assert 0 < r.ttl(keys.frame_map_key("cam-b", expected_frames[-1])) <= keys.FRAME_MAP_TTL_S
    maps = alert_maps(r, best.id)
    assert [m.frame for m in maps] == list(range(best.start_frame, best.end_frame + 1))
    assert {m.map.shape for m in maps} == {(32, 32)}
    peak = next(m.map for m in maps if m.frame == best.peak_frame)
    k = best.peak_frame - ANOMALY_SPAN[0]
    top, left = (k * 5) % 56, (k * 7) % 56  # the block's corner at the peak frame, in frame pixels
    row, col = np.unravel_index(np.argmax(peak), peak.shape)
    assert top // 2 - 1 <= row <= (top + 8) // 2
    assert left // 2 - 1 <= col <= (left + 8) // 2


def test_camera_alert_overrides_apply(redis_url, trained_store, clip_frames):
    """A camera's own alert parameters (stored with the camera) win over Settings.alerts."""
    r = redis.Redis.from_url(redis_url)
    strict = {"min_duration_frames": 30}  # longer than the anomalous run
    topics.put_camera(r, CameraConfig(id="strict", url="rtsp://u:p@cam/1", model=f"{MODEL}@production", alerts=strict))
    use_card_reference(r, "strict", trained_store.calibration, f"{MODEL}@v1")
    _publish(r, make_windows("strict", clip_frames, trained_store.method.input_spec.context))
    with running_worker(worker_settings(redis_url, trained_store.root)):
        wait_for(lambda: r.xlen(keys.score_stream_key("strict")) >= len(clip_frames) - 4, 60, "scores")
    assert topics.list_alerts(r, camera="strict").alerts == []


def test_cpu_threads_setting_sets_the_forward_threads(redis_url, trained_store, clip_frames):
    r = redis.Redis.from_url(redis_url)
    use_card_reference(r, "cam", trained_store.calibration, f"{MODEL}@v1")
    _publish(r, make_windows("cam", clip_frames, trained_store.method.input_spec.context)[:2])
    before = torch.get_num_threads()
    try:
        with running_worker(worker_settings(redis_url, trained_store.root, cpu_threads=1)):
            wait_for(lambda: r.xlen(keys.score_stream_key("cam")) >= 16, 30, "scores")
            assert torch.get_num_threads() == 1  # process-wide: the worker runs in this test's process
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("keep", [True, False])
def test_a_cpu_worker_keeps_freed_memory_unless_told_not_to(redis_url, trained_store, monkeypatch, keep):
    calls: list[bool] = []
    monkeypatch.setattr(worker_main, "keep_freed_memory_for", lambda device: calls.append(device == "cpu") or True)
    with running_worker(worker_settings(redis_url, trained_store.root, keep_freed_memory=keep)) as worker:
        wait_for(lambda: worker.activity != "starting", 10, "the worker's setup")
    assert calls == ([True] if keep else [])


def test_alias_promotion_reloads_model(redis_url, tmp_path, clip_frames):
    store = ModelStore(tmp_path)
    first = register_version(tmp_path, seed=200, steps=5)  # the two versions only need to differ
    register_version(tmp_path, seed=300, steps=5)
    store.promote(f"{MODEL}@v1")
    r = redis.Redis.from_url(redis_url)
    windows = make_windows("cam", clip_frames, first.method.input_spec.context)
    with running_worker(worker_settings(redis_url, tmp_path, alias_refresh_s=0.2)):
        _publish(r, windows[:3])
        wait_for(lambda: r.xlen(keys.score_stream_key("cam")) >= 24, 30, "scores of v1")
        store.promote(f"{MODEL}@v2")
        time.sleep(0.5)  # longer than alias_refresh_s
        _publish(r, windows[3:])
        wait_for(lambda: r.xlen(keys.score_stream_key("cam")) >= 60, 30, "scores of v2")
    models = [s.model for s in all_scores(r, "cam")]
    assert models == [f"{MODEL}@v1"] * 24 + [f"{MODEL}@v2"] * 36


def test_model_without_calibration_is_refused(redis_url, tmp_path, clip_frames):
    register_version(tmp_path, seed=400, calibrated=False, steps=0)
    cache = ModelCache(ModelStore(tmp_path), device=torch.device("cpu"), alias_refresh_s=1)
    with pytest.raises(ModelUnavailableError, match="no calibration in its card"):
        cache.get(MODEL)
    # Through the bus: nothing is published, the windows are acknowledged and the camera's seq moves on.
    r = redis.Redis.from_url(redis_url)
    _publish(r, make_windows("cam", clip_frames, 4, model=MODEL))
    with running_worker(worker_settings(redis_url, tmp_path)):
        wait_for(lambda: topics.load_scoring_state(r, "cam").next_seq == 9, 30, "windows passed over")
    assert r.xlen(keys.score_stream_key("cam")) == 0
    assert r.xpending(keys.windows_stream(0), keys.WINDOWS_GROUP)["pending"] == 0


def test_malformed_and_mismatched_windows_do_not_stop_the_worker(redis_url, trained_store, clip_frames):
    r = redis.Redis.from_url(redis_url)
    topics.ensure_window_group(r)
    r.xadd(keys.windows_stream(0), {"v": b"1", "seq": b"1", "h": b"{not json", "f": b""})
    wrong_size = make_windows("wrong", np.zeros((12, 16, 16, 1), np.uint8), 4)
    _publish(r, wrong_size)
    _publish(r, make_windows("good", clip_frames, 4))
    before = REGISTRY.get_sample_value("vigil_worker_malformed_windows_total") or 0.0
    with running_worker(worker_settings(redis_url, trained_store.root)):
        wait_for(lambda: r.xlen(keys.score_stream_key("good")) >= 60, 30, "scores of the good camera")
        wait_for(lambda: topics.load_scoring_state(r, "wrong").next_seq == 2, 10, "bad window passed over")
    assert REGISTRY.get_sample_value("vigil_worker_malformed_windows_total") == before + 1
    assert r.xlen(keys.score_stream_key("wrong")) == 0


def test_diverged_model_windows_are_passed_over_not_retried_forever(redis_url, tmp_path, trained_store, clip_frames):
    """NaN weights (a diverged training run): each window fails alone and is acknowledged, none loops."""
    method = trained_store.method
    broken = create_method(method.config)
    broken.load_state_dict({k: torch.full_like(v, float("nan")) for k, v in method.state_dict().items()})
    save_model(ModelStore(tmp_path), broken, build_card(broken, MODEL, calibration=trained_store.calibration))
    r = redis.Redis.from_url(redis_url)
    _publish(r, make_windows("cam", clip_frames, 4, model=MODEL))
    before = REGISTRY.get_sample_value("vigil_errors_total", {"component": "worker", "kind": "inference"}) or 0.0
    with running_worker(worker_settings(redis_url, tmp_path, max_batch=4)):
        wait_for(lambda: topics.load_scoring_state(r, "cam").next_seq == 9, 30, "windows passed over")
    assert r.xlen(keys.score_stream_key("cam")) == 0
    assert r.xpending(keys.windows_stream(0), keys.WINDOWS_GROUP)["pending"] == 0
    after = REGISTRY.get_sample_value("vigil_errors_total", {"component": "worker", "kind": "inference"})
    assert after == before + 8  # one per window, after the batch failed as a whole


@pytest.mark.gpu
def test_cuda_worker_matches_cpu_scores(redis_url, trained_store, clip_frames):
    """On a CUDA host: the worker on the GPU publishes every frame, and in the card's precision (fp32, TF32 off) the
    scores match CPU's."""
    r = redis.Redis.from_url(redis_url)
    _publish(r, make_windows("gpu", clip_frames, trained_store.method.input_spec.context))
    with running_worker(worker_settings(redis_url, trained_store.root, device="cuda", max_batch=8)) as worker:
        wait_for(lambda: r.xlen(keys.score_stream_key("gpu")) >= 60, 60, "scores")
        assert worker.device.type == "cuda"
    scores = all_scores(r, "gpu")
    assert [s.frame for s in scores] == list(range(4, 64))
    offline = offline_scores(trained_store.calibration, f"{MODEL}@v1", offline_raw(trained_store.method, clip_frames))
    np.testing.assert_allclose([s.score for s in scores], offline.scores, atol=1e-3)
    assert REGISTRY.get_sample_value("vigil_worker_gpu_memory_bytes", {"kind": "allocated"}) is not None


def test_a_flowmem_camera_keeps_the_maps_its_method_computes(redis_url, tmp_path, synthetic_dataset, synthetic_video):
    """flowmem's maps (per-cell distances, context 1) go through the live path as the pixel-error methods' do: the
    worker stores, for every scored frame, the coarse map `vigil eval --heatmaps` computes offline."""
    from pathlib import Path

    from models.data.transforms import prepare
    from models.heatmap import dequantize, quantize
    from models.inference import score_frames_with_maps
    from models.train.config import load_train_config
    from models.train.loop import train
    from service.heatmaps.store import decode_map
    from tests.service.worker.models_util import decode

    config = Path(__file__).resolve().parents[3] / "models" / "configs" / "flowmem_tiny.yaml"
    overrides = [f"data.root={synthetic_dataset}", f"out_dir={tmp_path / 'run'}", f"register.registry={tmp_path}"]
    model = train(load_train_config(config, overrides)).ref
    assert model == "flowmem-tiny@v1"
    method = load_model(ModelStore(tmp_path), model)[0]
    frames = prepare(decode(synthetic_video[0]), method.input_spec)  # (64, 32, 48, 3)
    r = redis.Redis.from_url(redis_url)
    _publish(r, make_windows("cam", frames, 1, model=model))
    with running_worker(worker_settings(redis_url, tmp_path)):
        wait_for(lambda: r.xlen(keys.score_stream_key("cam")) >= len(frames) - 1, 60, "scores")
    _, offline = score_frames_with_maps(method, frames, window=8)  # (63, 21, 32): the worker's cut, windows of 8
    q, scales = quantize(offline)
    for frame in range(1, len(frames)):
        live = decode_map(frame, r.get(keys.frame_map_key("cam", frame)))
        assert live.map.shape == (21, 32)
        np.testing.assert_allclose(live.map, dequantize(q[frame - 1], scales[frame - 1]), rtol=1e-5, atol=1e-6)
