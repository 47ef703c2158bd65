"""WindowSampler and FpsDecimator: window layout, context warm-up, reset after reconnect, decimation tables."""

from __future__ import annotations

import numpy as np
import pytest

from models.types import InputSpec
from service.ingest.sampler import FpsDecimator, WindowSampler
from service.ingest.source import VideoFrame


def frame(i: int, fps: float = 25.0, size: tuple[int, int] = (48, 64), pts: bool = True) -> VideoFrame:
    """A gray frame whose every pixel is the frame index (mod 256), so windows show which frames they hold."""
    image = np.full(size, i % 256, dtype=np.uint8)
    return VideoFrame(image=image, index=i, pts=i / fps if pts else None, capture_ts=1000.0 + i)


def run(sampler: WindowSampler, indices: range | list[int]) -> list:
    return [w for i in indices if (w := sampler.push(frame(i))) is not None]


@pytest.mark.parametrize(
    ("context", "window", "frames", "expected_first_frames"),
    [
        (0, 4, 12, [0, 4, 8]),
        (2, 4, 12, [2, 6]),  # first window: 2 warm-up frames + 4 scored; next: 4 new frames after 6
        (4, 1, 7, [4, 5, 6]),
        (3, 8, 10, []),  # not enough frames for the first window yet
        (1, 3, 13, [1, 4, 7, 10]),
    ],
)
def test_window_layout(context: int, window: int, frames: int, expected_first_frames: list[int]) -> None:
    spec = InputSpec(height=16, width=24, channels=1, context=context)
    windows = run(WindowSampler(spec, window), range(frames))
    assert [w.first_frame for w in windows] == expected_first_frames
    for w in windows:
        assert w.frames.shape == (context + window, 16, 24, 1)
        assert w.frames.dtype == np.uint8
        assert w.context == context
        assert w.num_scored == window
        # frame k of the window is source frame first_frame - context + k (pixel value = index)
        expected = np.arange(w.first_frame - context, w.first_frame + window)
        assert w.frames[:, 0, 0, 0].tolist() == expected.tolist()
        assert w.pts == pytest.approx(tuple(expected[context:] / 25.0))
        assert w.capture_ts == tuple(1000.0 + expected[context:])


def test_prepare_to_the_input_spec_bgr() -> None:
    spec = InputSpec(height=8, width=8, channels=3, context=0)
    sampler = WindowSampler(spec, 1)
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    image[..., 2] = 200  # red in BGR order
    w = sampler.push(VideoFrame(image=image, index=0, pts=0.0, capture_ts=1.0))
    assert w is not None
    assert w.frames.shape == (1, 8, 8, 3)
    assert w.frames[0, 4, 4].tolist() == [0, 0, 200]


def test_reset_restarts_the_context_but_not_the_frame_numbers() -> None:
    spec = InputSpec(height=8, width=8, channels=1, context=2)
    sampler = WindowSampler(spec, 3)
    first = run(sampler, range(5))  # frames 0..4: one window scoring frames 2..4
    assert [w.first_frame for w in first] == [2]
    sampler.push(frame(5))  # a frame in flight when the connection drops: discarded by reset
    sampler.reset()
    after = run(sampler, range(100, 105))  # reconnect: pixel values 100..104, numbered 6..10
    assert len(after) == 1
    w = after[0]
    assert w.frames[:, 0, 0, 0].tolist() == [100, 101, 102, 103, 104]  # no frame from before the reset
    assert w.first_frame == 8  # frames 6, 7 are warm-up (no score), 8..10 scored
    # One numbering across the reconnect (same stream id); a new sampler starts a new numbering at 0.
    assert w.stream == first[0].stream
    restarted = run(WindowSampler(spec, 3), range(5))
    assert restarted[0].first_frame == 2
    assert restarted[0].stream != w.stream


@pytest.mark.parametrize(
    ("source_fps", "target_fps", "frames", "kept"),
    [
        (25, None, 50, 50),
        (25, 25, 50, 50),
        (25, 50, 50, 50),  # cannot up-sample: keeps everything
        (25, 5, 50, 10),
        (25, 10, 50, 20),
        (30, 7.5, 60, 15),
        (25, 1, 100, 4),
    ],
)
def test_decimation_rate(source_fps: float, target_fps: float | None, frames: int, kept: int) -> None:
    d = FpsDecimator(target_fps, source_fps)
    assert sum(d.keep(i, i / source_fps) for i in range(frames)) == kept


def test_decimation_keeps_an_even_pattern_and_survives_jumps() -> None:
    d = FpsDecimator(10, 25)
    pattern = [d.keep(i, i / 25) for i in range(10)]
    assert pattern == [True, False, False, True, False, True, False, False, True, False]
    assert d.keep(0, 100.0)  # a jump forward (reconnect) re-anchors instead of bursting
    assert not d.keep(0, 100.04)
    no_time = FpsDecimator(5, None)
    assert all(no_time.keep(i, None) for i in range(5))  # no timestamps and no rate: nothing to decimate by


def test_decimation_by_index_without_pts() -> None:
    d = FpsDecimator(5, 25)
    assert sum(d.keep(i, None) for i in range(50)) == 10


def test_sampler_decimates_to_the_model_fps() -> None:
    spec = InputSpec(height=8, width=8, channels=1, context=0, fps=12.5)
    sampler = WindowSampler(spec, 2)
    windows = run(sampler, range(8))  # 25 fps source -> every other frame
    assert [w.frames[:, 0, 0, 0].tolist() for w in windows] == [[0, 2], [4, 6]]
    assert [w.first_frame for w in windows] == [0, 2]  # frame numbers count kept frames
    assert sampler.frames_skipped == 4


@pytest.mark.parametrize(("bad", "match"), [({"target_fps": 0}, "target_fps"), ({"window_frames": 0}, "window")])
def test_bad_arguments_say_what_is_wrong(bad: dict, match: str) -> None:
    spec = InputSpec(height=8, width=8, channels=1, context=0)
    kwargs = {"window_frames": 4, **bad}
    with pytest.raises(ValueError, match=match):
        WindowSampler(spec, **kwargs)


@pytest.mark.parametrize(
    ("context", "window", "frames", "last"),
    [(2, 4, 9, (6, 3)), (2, 4, 10, None), (2, 4, 2, None), (2, 4, 3, (2, 1)), (0, 3, 4, (3, 1))],
)
def test_flush_scores_the_tail_of_a_file(context: int, window: int, frames: int, last: tuple | None) -> None:
    spec = InputSpec(height=8, width=8, channels=1, context=context)
    sampler = WindowSampler(spec, window)
    run(sampler, range(frames))
    tail = sampler.flush()
    if last is None:
        assert tail is None
    else:
        assert tail is not None
        assert (tail.first_frame, tail.num_scored) == last
        assert tail.frames[:, 0, 0, 0].tolist() == list(range(last[0] - context, frames))
