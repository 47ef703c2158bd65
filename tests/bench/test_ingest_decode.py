"""The ingest benchmark's stages time what they say: each decodes every frame ffprobe counts, "decode" hands back
undecoded-to-pixels frames (the source's loop alone), and the script's ratios come out of one short run."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import ingest_decode
from models.types import InputSpec
from service.ingest.source import SourceOptions, VideoSource

SPEC = InputSpec(height=32, width=48, channels=1, context=0)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ingest_decode.make_pattern(tmp_path_factory.mktemp("clip") / "p.mp4", "320x240", 2)


@pytest.mark.parametrize("stage", ["decode", "scale", "measure"])
def test_every_stage_decodes_every_frame(clip: Path, stage: ingest_decode.Stage) -> None:
    frames, wall, cpu = ingest_decode.run_ingester(clip, SPEC, stage)
    assert frames == ingest_decode.count_frames(clip) == 50
    assert wall > 0
    assert cpu > 0


def test_decode_stage_converts_nothing(clip: Path) -> None:
    with VideoSource(str(clip), SourceOptions(realtime=False, pixel_format="gray", spec=SPEC)) as source:
        first = next(iter(source.decoded_frames()))
    assert (first.width, first.height, first.format.name) == (320, 240, "yuv420p")  # the decoder's own frame


def test_bench_prints_each_stage_against_ffmpeg(clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ratio = ingest_decode.bench("pattern", clip, SPEC, rounds=1, breakdown=True)
    out = capsys.readouterr().out
    assert ratio > 0
    for label in ("decode+resize+gray", "decode only (breakdown)", "+ health measurements, as a live camera"):
        assert label in out
    assert out.count("ratio") == 7  # wall and CPU ratios of 3 stages, and the summary line
