"""Alert heatmaps on real Redis: per-frame maps with a TTL from the worker's path, the copy to an alert (bounded),
reading them back, and the overlay a clip writer calls for each frame."""

from __future__ import annotations

import numpy as np
import redis

from models.heatmap import quantize
from service.bus import keys
from service.heatmaps import alert_maps, blend, decode_map, encode_map, keep_alert_maps, overlay_for_alert
from service.heatmaps.store import spread
from service.messages import Alert, AlertEvent, WindowMsg
from service.worker.thumbnails import alert_event_handler, store_maps

GRID = (8, 12)


def _hot_map(row: int, col: int, value: float = 1.0) -> np.ndarray:
    """(8, 12) map: 1e-4 everywhere, `value` in one 2x3 block."""
    m = np.full(GRID, 1e-4, np.float32)
    m[row : row + 2, col : col + 3] = value
    return m


def _window(camera: str, first_frame: int, n: int, source: str = "live") -> WindowMsg:
    return WindowMsg(
        camera=camera, seq=first_frame, model="m", context=1, first_frame=first_frame,
        pts=[(first_frame + i) / 10 for i in range(n)], capture_ts=[0.0] * n, source=source,  # type: ignore[arg-type]
        frames=np.zeros((1 + n, 16, 24, 1), np.uint8),
    )  # fmt: skip


def _alert(start: int, peak: int, end: int | None, camera: str = "cam") -> Alert:
    return Alert(
        id=f"{camera}-{start}-abc", camera=camera, model="m@v1", state="open" if end is None else "closed",
        start_frame=start, start_ts=0.0, end_frame=end, peak_score=0.9, peak_frame=peak, opened_frame=start + 2,
    )  # fmt: skip


def test_a_map_round_trips_with_its_pts() -> None:
    q, scale = quantize(_hot_map(2, 3, 0.5)[None])
    back = decode_map(7, encode_map(q[0], float(scale[0]), 1.25))
    assert (back.frame, back.pts) == (7, 1.25)
    amplitude = np.sqrt(back.map / 0.5)  # what is quantised: within half a step of 1/255
    np.testing.assert_allclose(amplitude, np.sqrt(_hot_map(2, 3, 0.5) / 0.5), atol=0.5 / 255 + 1e-6)
    assert decode_map(7, encode_map(q[0], float(scale[0]), None)).pts is None


def test_worker_keeps_frame_maps_with_a_ttl_and_alert_events_copy_them(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    windows = [_window("cam", 10, 4), _window("cam", 14, 4)]
    maps = {("cam", 10): np.stack([_hot_map(0, 0, 0.1 * (i + 1)) for i in range(4)]), ("cam", 14): np.stack(
        [_hot_map(4, 6)] * 4)}  # fmt: skip
    store_maps(r, windows, maps)
    assert 0 < r.ttl(keys.frame_map_key("cam", 13)) <= keys.FRAME_MAP_TTL_S
    assert r.get(keys.frame_map_key("cam", 18)) is None
    handler = alert_event_handler(r, retention_s=3600, then=None)
    handler(AlertEvent(kind="opened", alert=_alert(11, peak=12, end=None)))  # known so far: frames 11..13
    assert [m.frame for m in alert_maps(r, "cam-11-abc")] == [11, 12, 13]
    handler(AlertEvent(kind="closed", alert=_alert(11, peak=15, end=16)))
    got = alert_maps(r, "cam-11-abc")
    assert [m.frame for m in got] == [11, 12, 13, 14, 15, 16]
    assert [m.pts for m in got][:2] == [1.1, 1.2]
    assert np.unravel_index(np.argmax(got[-1].map), GRID) == (4, 6)  # the hot block of the second window
    assert 3500 < r.ttl(keys.alert_maps_key("cam-11-abc")) <= 3600  # the alert's retention
    assert alert_maps(r, "nope") == []


def test_job_windows_and_models_without_maps_leave_nothing(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    store_maps(r, [_window("job-x", 0, 2, "job"), _window("cam", 0, 2)], {})  # no maps: nothing computed for them
    assert not r.keys(f"{keys.PREFIX}:cam:*:heat:*")
    assert keep_alert_maps(r, _alert(0, 1, 1), 3600) == 0
    assert not r.exists(keys.alert_maps_key("cam-0-abc"))


def test_a_long_alert_keeps_an_even_spread_of_maps_with_its_peak(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    store_maps(r, [_window("cam", 0, 100)], {("cam", 0): np.stack([_hot_map(0, 0, 1.0 + i) for i in range(100)])})
    assert 8 <= keep_alert_maps(r, _alert(0, peak=37, end=None), 3600, limit=10) <= 10  # frames 0..37 known
    assert 8 <= keep_alert_maps(r, _alert(0, peak=37, end=99), 3600, limit=10) <= 10  # grew: thinned again
    frames = [m.frame for m in alert_maps(r, "cam-0-abc")]
    assert 8 <= len(frames) <= 10
    assert 37 in frames
    assert frames[0] == 0
    assert frames[-1] == 99
    assert spread(range(5), 2, 10) == [0, 1, 2, 3, 4]
    assert spread(range(100), 50, 3) == [0, 50, 99]


def test_blend_tints_hot_cells_and_leaves_cold_ones_untouched() -> None:
    frame = np.full((240, 360, 3), 100, np.uint8)  # a full-resolution BGR frame; the map is 8x12 cells
    out = blend(frame, _hot_map(0, 0), vmax=1.0)
    assert out.shape == frame.shape
    assert out.dtype == np.uint8
    hot, cold = out[:40, :60], out[120:, 180:]  # inside the hot block (top-left 2x3 cells) / far from it
    assert np.abs(hot.astype(int) - 100).mean() > 30
    assert (cold == 100).all()
    gray = blend(np.full((240, 360, 1), 100, np.uint8), _hot_map(0, 0), vmax=1.0)  # gray frames come out BGR
    np.testing.assert_array_equal(gray, out)


def test_overlay_for_alert_draws_the_nearest_frame_map(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    maps = np.stack([_hot_map(0, 0), _hot_map(6, 9)])  # frame 20: top-left hot; frame 21: bottom-right hot
    store_maps(r, [_window("cam", 20, 2)], {("cam", 20): maps})
    keep_alert_maps(r, _alert(20, peak=21, end=21), 3600)
    overlay = overlay_for_alert(r, "cam-20-abc")
    assert overlay is not None
    frame = np.full((480, 640, 3), 90, np.uint8)

    def hot_corner(drawn: np.ndarray) -> str:
        tl, br = drawn[:60, :80], drawn[-60:, -80:]
        return "tl" if np.abs(tl.astype(int) - 90).mean() > np.abs(br.astype(int) - 90).mean() else "br"

    assert hot_corner(overlay(frame, 20, None)) == "tl"
    assert hot_corner(overlay(frame, 99, None)) == "br"  # nearest frame number
    assert hot_corner(overlay(frame, None, 2.01)) == "tl"  # no frame number (a clip): nearest pts, frame 20 at 2.0 s
    assert hot_corner(overlay(frame, None, 2.12)) == "br"
    assert (frame == 90).all()  # the caller's frame is not drawn on
    assert overlay_for_alert(r, "unknown") is None
