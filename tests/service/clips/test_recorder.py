"""Alert clips from real footage: cut from a recording (file cameras, jobs) and from a live camera's packet buffer,
driven by alert events through the recorder on a real Redis; the overlay hook; the buffer's bounds."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import av
import numpy as np
import pytest
import redis

from service.bus import topics
from service.clips.buffer import Packet, PacketBuffer, StreamInfo
from service.clips.recorder import BufferSource, ClipRecorder, FileSource
from service.heatmaps import overlay_for_alert
from service.heatmaps.store import keep_alert_maps, put_frame_maps
from service.messages import Alert, AlertClip, AlertEvent
from service.settings import Settings
from tests.service.clips.conftest import FPS, decoded, frame_number

PRE, POST = 2.0, 1.6


def _settings(tmp_path: Path, **clips: object) -> Settings:
    return Settings(clips={"dir": tmp_path / "clips", "pre_roll_s": PRE, "post_roll_s": POST, **clips})


def _alert(state: str, start_s: float, end_s: float | None) -> Alert:
    return Alert(
        id="door-100-abc", camera="door", model="m@v1", state=state, start_frame=int(start_s * FPS),
        start_ts=1000.0 + start_s, start_pts=start_s, end_pts=end_s, peak_score=0.9,
        peak_frame=int(start_s * FPS) + 3, end_frame=None if end_s is None else int(end_s * FPS),
    )  # fmt: skip


def _check_covers(path: Path, frames: np.ndarray, start_s: float, stop_s: float) -> None:
    """The clip's frames are the source's from start_s to stop_s, one for one, timed from 0."""
    times, images, _ = decoded(path)
    n = round((stop_s - start_s) * FPS) + 1
    assert len(times) == n
    assert times[0] == pytest.approx(0.0)
    assert times[-1] == pytest.approx(stop_s - start_s, abs=1e-3)
    assert [frame_number(i) for i in images] == list(range(round(start_s * FPS), round(stop_s * FPS) + 1))


def test_a_file_alert_gets_a_partial_clip_then_one_covering_pre_and_post_roll(
    recording: tuple[Path, np.ndarray], rclient: redis.Redis, tmp_path: Path
) -> None:
    path, frames = recording
    position = {"s": 5.0}  # the file camera's reader is at 5 s when the alert opens
    rec = ClipRecorder(_settings(tmp_path), rclient, lambda cam: FileSource(path, lambda: position["s"]))
    rec.on_event(AlertEvent(kind="opened", alert=_alert("open", 4.0, None)))
    rec.tick(now=0.0)
    clip = tmp_path / "clips" / "door" / "door-100-abc.mp4"
    _check_covers(clip, frames, 4.0 - PRE, 5.0)  # partial: pre-roll up to where the reader is
    assert topics.get_alert_clips(rclient, ["door-100-abc"])["door-100-abc"].state == "partial"
    rec.on_event(AlertEvent(kind="closed", alert=_alert("closed", 4.0, 7.0)))
    rec.tick(now=1.0)
    _check_covers(clip, frames, 4.0 - PRE, 7.0 + POST)
    record = topics.get_alert_clips(rclient, ["door-100-abc"])["door-100-abc"]
    assert (record.state, record.source, record.truncated) == ("final", "file", False)
    assert (record.start_pts, record.end_pts) == (pytest.approx(2.0), pytest.approx(8.6))
    assert decoded(clip)[2] == (160, 120)  # narrower than clips.width: the source's width
    assert not rec.open


def test_a_live_alert_is_cut_from_the_packet_buffer(
    recording: tuple[Path, np.ndarray], rclient: redis.Redis, tmp_path: Path
) -> None:
    """Packets arrive as from a camera; the alert opens 2 s after its start (scoring delay) and closes later; the
    final clip waits for the post-roll's packets. 96 px wide: the clip is scaled (aspect kept, even sizes)."""
    path, frames = recording
    buffer = PacketBuffer(keep_s=PRE + 3.0, max_bytes=10 * 1024**2)
    rec = ClipRecorder(_settings(tmp_path, width=96), rclient, lambda cam: BufferSource(buffer))
    clip = tmp_path / "clips" / "door" / "door-100-abc.mp4"
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        buffer.reset(StreamInfo.of(stream))
        last = 0.0
        for packet in container.demux(stream):
            if not packet.size:
                continue
            kept = Packet.of(packet, last)
            last = kept.seconds
            buffer.add(kept)
            assert buffer.bytes <= 10 * 1024**2
            if last == pytest.approx(6.0):
                rec.on_event(AlertEvent(kind="opened", alert=_alert("open", 4.0, None)))
                rec.tick(now=0.0)
                assert clip.exists()  # the partial clip: from the pre-roll to now
            if last == pytest.approx(8.0):
                rec.on_event(AlertEvent(kind="closed", alert=_alert("closed", 4.0, 7.0)))
                rec.tick(now=1.0)
                assert rec.open  # the post-roll is not in yet
    rec.tick(now=2.0)
    assert not rec.open
    _check_covers_scaled(clip, frames, 4.0 - PRE, 7.0 + POST)
    record = topics.get_alert_clips(rclient, ["door-100-abc"])["door-100-abc"]
    assert (record.state, record.source) == ("final", "buffer")


def _check_covers_scaled(path: Path, frames: np.ndarray, start_s: float, stop_s: float) -> None:
    times, images, size = decoded(path)
    assert size == (96, 72)
    assert len(times) == round((stop_s - start_s) * FPS) + 1
    assert times[-1] == pytest.approx(stop_s - start_s, abs=1e-3)
    assert [frame_number(i) for i in images] == list(range(round(start_s * FPS), round(stop_s * FPS) + 1))


def test_the_buffer_holds_its_seconds_from_a_key_frame_and_respects_its_byte_cap(
    recording: tuple[Path, np.ndarray],
) -> None:
    path, _ = recording
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        info = StreamInfo.of(stream)
        packets, last = [], 0.0
        for p in container.demux(stream):
            if p.size:
                packets.append(Packet.of(p, last))
                last = packets[-1].seconds
    roomy, tight = PacketBuffer(3.0, 10 * 1024**2), PacketBuffer(3.0, 60_000)
    for buffer in (roomy, tight):
        buffer.reset(info)
        for p in packets:
            buffer.add(p)
    held = roomy.record(0.0, 10**9)
    assert held is not None
    assert held.packets[0].key
    assert 3.0 <= last - held.packets[0].seconds < 4.0  # 3 s back, from the key frame before that
    cut = tight.record(0.0, 10**9)
    assert cut is not None
    assert cut.packets[0].key
    assert tight.bytes <= 60_000 or len({p.key for p in cut.packets}) == 1  # only the newest group may exceed it
    roomy.reset(None)
    assert held.done  # a new stream ends the recordings fed from the old one


def test_the_overlay_hook_draws_on_every_frame(
    recording: tuple[Path, np.ndarray], rclient: redis.Redis, tmp_path: Path
) -> None:
    """clips.heatmap_overlay with a drawer: its overlay gets each frame (BGR at the clip's size) and its pts."""
    path, _ = recording
    seen: list[float | None] = []

    def box(frame_bgr: np.ndarray, frame: int | None, pts: float | None) -> np.ndarray:
        seen.append(pts)
        out = frame_bgr.copy()
        out[15:40, 10:50] = (0, 0, 255)  # a red box
        return out

    settings = _settings(tmp_path, heatmap_overlay=True)
    rec = ClipRecorder(settings, rclient, lambda cam: FileSource(path, lambda: None), heatmaps=lambda alert: box)
    rec.on_event(AlertEvent(kind="closed", alert=_alert("closed", 4.0, 5.0)))
    rec.tick(now=0.0)
    _, images, _ = decoded(tmp_path / "clips" / "door" / "door-100-abc.mp4")
    inside = images[:, 20:35, 15:45].reshape(-1, 3).mean(axis=0)
    assert inside[2] > 200 > 60 > inside[0]  # red in every frame: B low, R high
    assert seen[0] == pytest.approx(2.0)
    assert seen[-1] == pytest.approx(6.6)
    off = ClipRecorder(_settings(tmp_path), rclient, lambda cam: None, heatmaps=lambda alert: box)
    assert off.overlay_for(_alert("open", 4.0, None)) is None  # the setting is off by default


def test_the_alerts_stored_heatmaps_are_drawn_over_its_clip(
    recording: tuple[Path, np.ndarray], rclient: redis.Redis, tmp_path: Path
) -> None:
    """The drawer the ingester passes (service.heatmaps.overlay_for_alert): the maps the worker kept for the alert's
    frames, matched to the clip's frames by pts, coloured where the map is hot and nowhere else."""
    path, _ = recording
    hot = np.zeros((1, 12, 16), dtype=np.uint8)
    hot[0, :6, :8] = 255  # the top-left quarter of the frame
    for frame in range(100, 116):  # the alert's frames 4.0-5.0 s at FPS
        put_frame_maps(rclient, "door", frame, [frame / FPS], hot, np.array([1.0]))
    alert = _alert("closed", 4.0, 5.0)
    assert keep_alert_maps(rclient, alert, retention_s=60) == 16
    settings = _settings(tmp_path, heatmap_overlay=True)
    drawer = functools.partial(overlay_for_alert, rclient)
    rec = ClipRecorder(settings, rclient, lambda cam: FileSource(path, lambda: None), heatmaps=drawer)
    rec.on_event(AlertEvent(kind="closed", alert=alert))
    rec.tick(now=0.0)
    _, with_maps, _ = decoded(tmp_path / "clips" / "door" / "door-100-abc.mp4")
    plain = ClipRecorder(_settings(tmp_path / "plain"), rclient, lambda cam: FileSource(path, lambda: None))
    plain.on_event(AlertEvent(kind="closed", alert=alert))
    plain.tick(now=0.0)
    _, without, _ = decoded(tmp_path / "plain" / "clips" / "door" / "door-100-abc.mp4")
    change = np.abs(with_maps.astype(int) - without.astype(int)).mean(axis=(0, 3))  # (h, w) over frames and channels
    h, w = change.shape
    hot_change, cold_change = change[: h // 2 - 8, : w // 2 - 8].mean(), change[h // 2 + 8 :, w // 2 + 8 :].mean()
    assert hot_change > 20  # the hot quarter is coloured
    assert cold_change < hot_change / 5  # the cold part differs only by the encoder's noise (about 3 levels)


def test_the_recorder_thread_follows_the_alert_event_stream(
    recording: tuple[Path, np.ndarray], rclient: redis.Redis, tmp_path: Path
) -> None:
    """Events saved back to back (as a worker saves them) while the recorder is busy writing are all read: the
    closed event after the opened one gets the final clip; another camera's alerts are left alone."""
    path, _ = recording
    mine = {"door": FileSource(path, lambda: 5.0)}
    rec = ClipRecorder(_settings(tmp_path), rclient, mine.get).start()
    try:
        time.sleep(0.3)  # the recorder reads from "now"
        other = _alert("open", 4.0, None).model_copy(update={"id": "yard-1-x", "camera": "yard"})
        events = [("opened", _alert("open", 4.0, None)), ("opened", other), ("closed", _alert("closed", 4.0, 7.0))]
        for kind, alert in events:
            topics.save_alert_event(rclient, AlertEvent(kind=kind, alert=alert), 600)
        deadline = time.monotonic() + 20
        while (c := clip_of(rclient, "door-100-abc")) is None or c.state != "final":
            assert time.monotonic() < deadline, "no final clip"
            time.sleep(0.05)
    finally:
        rec.stop()
    assert (c.start_pts, c.end_pts) == (pytest.approx(2.0), pytest.approx(8.6))
    assert not topics.get_alert_clips(rclient, ["yard-1-x"])
    assert not (tmp_path / "clips" / "yard").exists()


def clip_of(r: redis.Redis, alert_id: str) -> AlertClip | None:
    return topics.get_alert_clips(r, [alert_id]).get(alert_id)
