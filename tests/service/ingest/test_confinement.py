"""FFmpeg reads the one file it was given: playlists and lists under the footage root that name files outside it
are refused (file cameras here; jobs in tests/service/jobs/test_jobs_bad_input.py), and the footage policy is one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import redis

from models.data.video import NotSelfContainedError, VideoFile, open_local_container
from service.bus import topics
from service.footage import FootageNotFound, FootagePolicy, FootageRootMissing, OutsideFootageRoot, local_path
from service.ingest.source import CorruptSourceError, VideoSource
from service.messages import CameraConfig
from service.settings import Settings
from tests.service.ingest.conftest import MODEL, state_is, wait_for, windows
from tests.synthetic import render_frames, write_video


def write_escapes(root: Path, outside: Path) -> dict[str, Path]:
    """Files under `root` that make FFmpeg open `outside` (an HLS playlist, an ffconcat list), and `outside`."""
    frames, _ = render_frames(20, (32, 32), None)
    segment = write_video(outside / "secret.ts", frames, codec="mpeg2video")
    playlist = root / "escape.m3u8"
    playlist.write_text(
        f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXTINF:0.8,\n{segment}\n#EXT-X-ENDLIST\n"
    )
    concat = root / "escape.mp4"  # an ffconcat list under a video's name
    concat.write_text(f"ffconcat version 1.0\nfile '{segment}'\n")
    return {"hls": playlist, "concat": concat, "segment": segment}


@pytest.fixture
def escapes(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "footage").mkdir()
    (tmp_path / "outside").mkdir()
    return write_escapes(tmp_path / "footage", tmp_path / "outside")


def test_the_segment_itself_decodes(escapes: dict[str, Path]) -> None:
    # so the refusals below are about the playlist, not a broken segment
    assert VideoFile(escapes["segment"]).num_frames > 0


@pytest.mark.parametrize("kind", ["hls", "concat"])
def test_local_opens_refuse_files_that_open_other_files(escapes: dict[str, Path], kind: str) -> None:
    with pytest.raises(NotSelfContainedError, match="not a self-contained video file"):
        open_local_container(escapes[kind])
    with pytest.raises(CorruptSourceError, match="not a self-contained video file"):
        VideoSource(str(escapes[kind])).open()


def test_a_file_camera_on_a_playlist_is_refused_and_publishes_nothing(
    escapes: dict[str, Path],
    tmp_path: Path,
    settings: Settings,
    rclient: redis.Redis,
    start_ingester: Callable[..., object],
) -> None:
    start_ingester(settings.model_copy(update={"footage_root": tmp_path / "footage"}))
    for kind in ("hls", "concat"):
        camera = CameraConfig(id=kind, url=f"file://{escapes[kind]}", model=MODEL, kind="file", realtime=False)
        topics.put_camera(rclient, camera)
        refused = wait_for(state_is(rclient, kind, "error"), 20, f"the {kind} camera to be refused")
        assert "not a self-contained video file" in refused.reason
        assert windows(rclient, kind) == []


def test_one_footage_policy(tmp_path: Path) -> None:
    root = tmp_path / "footage"
    (root / "sub").mkdir(parents=True)
    clip = root / "sub" / "a.mp4"
    write_video(clip, np.zeros((2, 16, 16, 3), np.uint8))
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(clip.read_bytes())
    (root / "link.mp4").symlink_to(secret)
    (root / "inner.mp4").symlink_to(clip)
    policy = FootagePolicy(root, dev=False)
    assert policy.resolve("sub/a.mp4") == clip.resolve()
    assert policy.resolve(str(clip)) == clip.resolve()
    assert policy.resolve("inner.mp4") == clip.resolve()  # a link that stays inside: its target is opened
    for escape in ("link.mp4", "../secret.mp4", str(secret), "sub/../../secret.mp4", "a\x00b", ""):
        with pytest.raises(OutsideFootageRoot) as info:
            policy.resolve(escape)
        assert str(tmp_path) not in str(info.value).replace(repr(escape), "")  # no server path but the given one
    with pytest.raises(FootageNotFound, match=r"'nope\.mp4' does not exist under the footage root"):
        policy.resolve("nope.mp4")
    with pytest.raises(FootageRootMissing, match="VIGIL_FOOTAGE_ROOT"):
        FootagePolicy(None, dev=False).resolve(str(clip))
    assert FootagePolicy(None, dev=True).resolve(str(clip)) == clip.resolve()
    with pytest.raises(FootageRootMissing, match="relative"):
        FootagePolicy(None, dev=True).resolve("sub/a.mp4")


@pytest.mark.parametrize(
    ("url", "path"),
    [("/f/a.mp4", "/f/a.mp4"), ("file:///f/a%20b.mp4", "/f/a b.mp4"), ("FILE://localhost/f/a.mp4", "/f/a.mp4")],
)
def test_local_path(url: str, path: str) -> None:
    assert local_path(url) == path
