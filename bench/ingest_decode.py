"""Benchmark: the ingester's decode + resize + gray rate (VideoSource + WindowSampler) vs the ffmpeg CLI.

Both read the same file; ffmpeg runs `ffmpeg -i FILE -vf scale=W:H,format=gray -f null -`. The two are
timed alternately, several rounds, in one run, and the ratios of median frame rates and of frames per CPU-second
are printed (target >= 0.9 on both). Inputs: generated 720p and 1080p H.264 clips (default) and/or a Ped2 test clip
encoded to H.264 and looped to 60 s, so that ffmpeg's start-up does not dominate.

    .venv/bin/python bench/ingest_decode.py                      # 720p and 1080p synthetic, 256x256 gray
    .venv/bin/python bench/ingest_decode.py --ped2 ../shared/datasets/ucsd_ped2 --rounds 5
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from models.types import InputSpec
from service.errors import EndOfStream
from service.ingest.sampler import WindowSampler
from service.ingest.source import SourceOptions, VideoSource


def make_pattern(out: Path, size: str, seconds: int) -> Path:
    """A moving test pattern of `size` (1280x720) at 25 fps, H.264 (what a typical IP camera sends)."""
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}"]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(out)]
    subprocess.run(cmd, check=True)
    return out


def encode_ped2(dataset: Path, clip: str, out: Path, seconds: int = 60) -> Path:
    """Ped2 test clip `clip` (JPEG frames, 360x240) -> H.264 mp4 at 10 fps (the Ped2 capture rate), looped to
    `seconds`."""
    frames = dataset / "testing" / "frames" / clip
    if not frames.is_dir():
        sys.exit(f"no Ped2 clip at {frames}; pass --ped2 pointing at ucsd_ped2 (it has testing/frames/NN/)")
    cmd = ["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-framerate", "10", "-pattern_type", "glob"]
    cmd += ["-i", str(frames / "*.jpg"), "-t", str(seconds)]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(out)]
    subprocess.run(cmd, check=True)
    return out


def count_frames(path: Path) -> int:
    cmd = ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0"]
    cmd += ["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(path)]
    return int(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip())


Stage = Literal["decode", "scale", "measure"]


def run_ingester(path: Path, spec: InputSpec, stage: Stage = "scale") -> tuple[int, float, float]:
    """(frames, wall seconds, CPU seconds of all threads) through the ingester's source and sampler.

    "scale": each frame scaled to the model's input and windowed, as a live camera does (models.data.scaling);
    "decode": the source's demux + decode loop alone (`VideoSource.decoded_frames`), no conversion, as ffmpeg's
    `-f null` decodes; "measure": "scale" plus the camera-health measurements a live camera takes of every frame
    (models.health.measure).
    """
    sampler = WindowSampler(spec, window_frames=8)
    cpu = time.process_time()
    start = time.perf_counter()
    frames = 0
    options = SourceOptions(realtime=False, pixel_format="gray", spec=spec, measure=stage == "measure")
    with VideoSource(str(path), options) as source:
        if stage == "decode":
            frames = sum(1 for _ in source.decoded_frames())
        else:
            try:
                for frame in source:
                    sampler.push(frame)
                    frames += 1
            except EndOfStream:  # how a source says it is done
                pass
    return frames, time.perf_counter() - start, time.process_time() - cpu


def run_ffmpeg(path: Path, spec: InputSpec, scale: bool = True) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the ffmpeg CLI doing the same decode + scale + gray (or decode only)."""
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path)]
    if scale:
        cmd += ["-vf", f"scale={spec.width}:{spec.height},format=gray"]
    cmd += ["-f", "null", "-"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench(name: str, path: Path, spec: InputSpec, rounds: int, breakdown: bool) -> float:
    """Alternate the two `rounds` times; print frame rates per wall second and per CPU second; return the wall ratio."""
    expected = count_frames(path)
    print(f"{name}: {expected} frames -> {spec.width}x{spec.height} gray, {rounds} rounds, medians")
    # (label, the ingester's stage); ffmpeg decodes (+ scales, for every stage but "decode") in each
    stages: list[tuple[str, Stage]] = [("decode+resize+gray", "scale")]
    if breakdown:
        stages += [("decode only (breakdown)", "decode"), ("+ health measurements, as a live camera", "measure")]
    ratio = 0.0
    for label, stage in stages:
        ours, theirs, ours_cpu, theirs_cpu = [], [], [], []
        for _ in range(rounds):  # alternate, so load from other processes hits both alike
            frames, wall, cpu = run_ingester(path, spec, stage)
            if frames != expected:
                sys.exit(f"{name}: the ingester decoded {frames} frames, ffprobe counts {expected}")
            ours.append(frames / wall)
            ours_cpu.append(frames / cpu)
            wall, cpu = run_ffmpeg(path, spec, scale=stage != "decode")
            theirs.append(expected / wall)
            theirs_cpu.append(expected / cpu)
        wall_ratio = statistics.median(ours) / statistics.median(theirs)
        cpu_ratio = statistics.median(ours_cpu) / statistics.median(theirs_cpu)
        ratio = ratio or wall_ratio
        print(f"  {label}")
        print(f"    frames/s      ingester {_fmt(ours)} | ffmpeg {_fmt(theirs)} | ratio {wall_ratio:.2f}")
        print(f"    frames/CPU-s  ingester {_fmt(ours_cpu)} | ffmpeg {_fmt(theirs_cpu)} | ratio {cpu_ratio:.2f}")
    print(f"  => decode+resize+gray ratio {ratio:.2f} (target >= 0.9)")
    return ratio


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values):7.1f} (runs {', '.join(f'{v:.0f}' for v in values)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256x256", help="model input WxH (default 256x256)")
    parser.add_argument("--seconds", type=int, default=20, help="length of the generated 720p and 1080p clips")
    parser.add_argument("--ped2", type=Path, default=None, help="ucsd_ped2 folder: also bench a Ped2 test clip")
    parser.add_argument("--clip", default="01", help="Ped2 test clip (default 01)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-synthetic", action="store_true", help="skip the generated 720p and 1080p clips")
    parser.add_argument("--breakdown", action="store_true", help="also time decoding alone on both sides")
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg is not installed (Debian: apt-get install ffmpeg)")
    width, height = (int(v) for v in args.size.lower().split("x"))
    spec = InputSpec(height=height, width=width, channels=1, context=0)
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_synthetic:
            for size, name in (("1280x720", "720p"), ("1920x1080", "1080p")):
                clip = make_pattern(Path(tmp) / f"{name}.mp4", size, args.seconds)
                ratios.append(bench(f"{name} synthetic", clip, spec, args.rounds, args.breakdown))
        if args.ped2 is not None:
            clip = encode_ped2(args.ped2, args.clip, Path(tmp) / "ped2.mp4")
            ratios.append(bench(f"ped2 test {args.clip}, looped to 60 s", clip, spec, args.rounds, args.breakdown))
    return 0 if ratios and min(ratios) >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
