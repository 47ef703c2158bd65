"""VideoSource on files and HTTP: pixels match FFmpeg's own conversion, frames and pts, clear errors."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import numpy as np
import pytest

from service.errors import EndOfStream, SourceConnectionError, SourceError
from service.ingest.source import SourceOptions, VideoFrame, VideoSource, scheme_of


def read_all(url: str, **options: object) -> list[VideoFrame]:
    frames: list[VideoFrame] = []
    with pytest.raises(EndOfStream, match="end of stream"), VideoSource(url, SourceOptions(**options)) as source:  # type: ignore[arg-type]
        frames.extend(source)
    return frames


@pytest.mark.parametrize("pixel_format", ["gray", "bgr24"])
def test_file_frames_match_ffmpeg_conversion(synthetic_video: tuple[Path, np.ndarray], pixel_format: str) -> None:
    path, _ = synthetic_video
    frames = read_all(str(path), realtime=False, pixel_format=pixel_format)
    with av.open(str(path)) as container:
        reference = [f.to_ndarray(format=pixel_format) for f in container.decode(video=0)]
    assert len(frames) == len(reference) == 64
    for ours, theirs in zip(frames, reference, strict=True):
        assert ours.image.shape == theirs.shape
        assert np.array_equal(ours.image, theirs)  # the luma fast path gives swscale's exact pixels
    assert [f.index for f in frames] == list(range(64))
    assert [f.pts for f in frames] == pytest.approx([i / 25 for i in range(64)])


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()
    server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_http_source(synthetic_video: tuple[Path, np.ndarray], http_root: tuple[str, Path]) -> None:
    base, root = http_root
    (root / "clip.mp4").write_bytes(synthetic_video[0].read_bytes())
    frames = read_all(f"{base}/clip.mp4", realtime=False)
    assert len(frames) == 64
    assert frames[0].image.shape == (64, 64)
    with pytest.raises(SourceConnectionError, match="404"), VideoSource(f"{base}/missing.mp4") as source:
        list(source)


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("rtsp://u:p@cam/x", "rtsp"),
        ("RTSPS://cam/x", "rtsp"),
        ("https://host/a.mp4", "http"),
        ("file:///data/a.mp4", "file"),
        ("/data/a.mp4", "file"),
    ],
)
def test_scheme_of(url: str, scheme: str) -> None:
    assert scheme_of(url) == scheme


def test_unsupported_scheme_is_refused_with_the_password_masked() -> None:
    with pytest.raises(SourceError, match=r"ftp://u:\*\*\*@host") as info:
        scheme_of("ftp://u:secret@host/x.mp4")
    assert "secret" not in str(info.value)


def test_file_url_and_missing_file(synthetic_video: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    assert len(read_all(f"file://{synthetic_video[0]}", realtime=False)) == 64
    with pytest.raises(SourceConnectionError, match="no such file"):
        VideoSource(str(tmp_path / "nope.mp4")).open()


def test_corrupt_packets_are_skipped_and_counted(synthetic_video: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    data = bytearray(synthetic_video[0].read_bytes())
    start = data.find(b"mdat") + 8 + 2000  # inside the frame data, past the first keyframe
    data[start : start + 10_000] = np.random.default_rng(1).integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    source = VideoSource(str(damaged), SourceOptions(realtime=False))
    frames = read_all(str(damaged), realtime=False)
    with pytest.raises(EndOfStream), source:  # the stream goes on to its end, it does not fail
        for _ in source:
            pass
    assert source.corrupt_packets > 0
    assert 0 < len(frames) < 64
