"""Browser-test fixtures: the integration stack fixtures, keys, and a longer synthetic clip with an anomalous span."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import make_stack, model_root  # noqa: F401  (fixtures)
from tests.service.mqtt.conftest import make_broker, run_bridge, subscribers  # noqa: F401  (fixtures)
from tests.synthetic import render_frames, write_video

VIEWER_KEY = "viewer-key-for-the-live-page-test"
ADMIN_KEY = "admin-key-for-the-live-page-test"
CLIP_FRAMES = 200  # 8 s at 25 fps: time for the page to show a chart before and after the span
CLIP_SPAN = (120, 140)  # anomalous frames [start, end)


@pytest.fixture(scope="session")
def footage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder (the footage root) holding clip.mp4: 64x64 H.264 at 25 fps, anomalous on CLIP_SPAN."""
    root = tmp_path_factory.mktemp("footage")
    frames, _ = render_frames(CLIP_FRAMES, (64, 64), CLIP_SPAN)
    write_video(root / "clip.mp4", frames)
    return root
