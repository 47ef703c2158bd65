"""FrameScaler: a decoded frame straight to a model's input, as `prepare` made it from the full-size frame (the
luma plane in full range for gray models, as the ingester took it before)."""

from __future__ import annotations

import av
import numpy as np
import pytest

from models.data.scaling import FrameScaler
from models.data.transforms import prepare
from models.types import InputSpec
from service.ingest.source import _gray
from tests.synthetic import render_scene, write_video


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> list[av.VideoFrame]:
    frames = np.stack(list(render_scene(3, (180, 320))))
    path = write_video(tmp_path_factory.mktemp("scaling") / "scene.mp4", frames)
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


@pytest.mark.parametrize(("height", "width"), [(64, 64), (90, 160), (240, 400)])  # shrink, exact half, grow
def test_gray_matches_prepare_to_one_grey_level(scene: list[av.VideoFrame], height: int, width: int) -> None:
    spec = InputSpec(height=height, width=width, channels=1, context=0)
    scaler = FrameScaler(spec)
    for frame in scene:
        got = scaler(frame)
        want = prepare(_gray(frame)[None], spec)[0]
        assert got.shape == (height, width, 1)
        assert got.dtype == np.uint8
        diff = np.abs(got.astype(int) - want.astype(int))
        assert diff.max() <= 1
        assert diff.mean() < 0.3  # rounding: 0.02 on a test pattern, about 0.2 on fine texture


def test_full_range_frames_keep_their_range(scene: list[av.VideoFrame]) -> None:
    """A yuv420p frame tagged full range (what some cameras send) is not expanded a second time."""
    spec = InputSpec(height=90, width=160, channels=1, context=0)
    frame = scene[0]
    tagged = av.VideoFrame.from_ndarray(frame.to_ndarray(), format="yuv420p")
    tagged.color_range = 2  # JPEG / full
    want = prepare(_gray(tagged)[None], spec)[0]  # the luma plane as it is
    assert np.abs(FrameScaler(spec)(tagged).astype(int) - want.astype(int)).max() <= 1
    assert np.abs(FrameScaler(spec)(frame).astype(int) - want.astype(int)).max() > 5  # limited range: expanded


def test_colour_models_get_prepare_exactly(scene: list[av.VideoFrame]) -> None:
    spec = InputSpec(height=64, width=96, channels=3, context=0)
    frame = scene[1]
    np.testing.assert_array_equal(FrameScaler(spec)(frame), prepare(frame.to_ndarray(format="bgr24")[None], spec)[0])
