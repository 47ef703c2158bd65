"""Benchmark: what alert clips cost. (1) CPU seconds to write one typical clip (20 s: 5 s pre-roll, 10 s alert, 5 s
post-roll) at 640 px from a 720p camera stream, from the live packet buffer and from a recording; (2) the ingester's
frame rate with and without clips, side by side in one run.

The source is a 720p H.264 stream as an IP camera sends it (ffmpeg testsrc2, a key frame every 2 s, no B-frames).
(1) runs the clip writer of service/clips (decode the source packets, scale to 640 px, x264 `veryfast` crf 26 on one
thread) several times and takes the median, and times the packet buffer itself per packet. (2) alternates rounds of
the ingester's read path (VideoSource + WindowSampler: decode, scale to 128x128 gray as CameraRunner does, windows;
as fast as it decodes, one decoding thread) without clips, with the packet buffer only (what every live camera pays
while no alert is open), and with clips: the buffer plus a clip writer thread writing 20 s clips back to back the
whole time (the worst case: one alert after another on this camera). Prints medians and the ratios to the run
without clips.

    OMP_NUM_THREADS=1 .venv/bin/python bench/clips.py
    OMP_NUM_THREADS=1 .venv/bin/python bench/clips.py --seconds 40 --rounds 3 --json runs/bench/clips.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import av

from models.types import InputSpec
from service.clips.buffer import Packet, PacketBuffer, StreamInfo
from service.clips.decode import decode_file, decode_packets
from service.clips.encode import EncodeOptions, write_clip
from service.errors import EndOfStream
from service.ingest.sampler import WindowSampler
from service.ingest.source import SourceOptions, VideoSource

CLIP_S = 20.0  # 5 s pre-roll + 10 s alert + 5 s post-roll
SPEC = InputSpec(height=128, width=128, channels=1, context=4)  # ffp-small's input


def make_stream(out: Path, seconds: int) -> Path:
    """1280x720 at 25 fps, H.264, a key frame every 50 frames, no B-frames, ~2.5 Mbit/s (a typical IP camera)."""
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=25:duration={seconds}"]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-g", "50", "-bf", "0", "-b:v", "2500k", "-pix_fmt", "yuv420p"]
    subprocess.run([*cmd, str(out)], check=True)
    return out


def read_packets(path: Path) -> tuple[StreamInfo, list[Packet]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        info, packets, last = StreamInfo.of(stream), [], 0.0
        for p in container.demux(stream):
            if p.size:
                packets.append(Packet.of(p, last))
                last = packets[-1].seconds
    return info, packets


def clip_cost(source: Path, info: StreamInfo, packets: list[Packet], out: Path, rounds: int) -> dict[str, Any]:
    """Median CPU and wall seconds of one 20 s clip, from buffered packets and from the recording."""
    span = [p for p in packets if p.seconds < CLIP_S + 0.5]
    options = EncodeOptions()
    result: dict[str, Any] = {}
    for kind in ("buffer", "file"):
        cpu, wall, size = [], [], 0
        for _ in range(rounds):
            c0, w0 = time.process_time(), time.perf_counter()
            frames = decode_packets(info, span) if kind == "buffer" else decode_file(source, 0.0, CLIP_S)
            clip = write_clip(frames, 0.0, CLIP_S, out / f"{kind}.mp4", options)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
            assert clip is not None
            size = clip.bytes
        result[kind] = {"cpu_s": statistics.median(cpu), "wall_s": statistics.median(wall), "bytes": size}
    return result


def buffer_cost(source: Path, info: StreamInfo, rounds: int) -> float:
    """Microseconds per packet the reader spends on the packet buffer (copy the packet, add, trim), median."""
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        raw = [p for p in container.demux(stream) if p.size]
        per_packet = []
        for _ in range(rounds):
            buffer, last = PacketBuffer(15.0, 32 * 1024**2), 0.0
            buffer.reset(info)
            start = time.perf_counter()
            for p in raw:
                kept = Packet.of(p, last)
                last = kept.seconds
                buffer.add(kept)
            per_packet.append((time.perf_counter() - start) / len(raw) * 1e6)
    return statistics.median(per_packet)


def ingest_fps(source: Path, buffer: PacketBuffer | None) -> tuple[float, int]:
    """(frames per second, frames) of the ingester's read path over the whole file, one decoding thread."""
    options = SourceOptions(realtime=False, pixel_format="gray", decode_threads=1, spec=SPEC)  # as CameraRunner
    sampler = WindowSampler(SPEC, 8, None)
    frames = 0
    start = time.perf_counter()
    src = VideoSource(str(source), options)
    src.packet_buffer = buffer
    try:
        with src:
            sampler.set_source_fps(src.fps)
            for frame in src:
                sampler.push(frame)
                frames += 1
    except EndOfStream:
        pass
    return frames / (time.perf_counter() - start), frames


def with_clips(source: Path, info: StreamInfo, packets: list[Packet], out: Path) -> tuple[float, int]:
    """Ingester fps while a clip writer writes 20 s clips back to back; (fps, clips written meanwhile)."""
    span = [p for p in packets if p.seconds < CLIP_S + 0.5]
    stop, written = threading.Event(), [0]

    def writer() -> None:
        while not stop.is_set():
            write_clip(decode_packets(info, span), 0.0, CLIP_S, out / "loop.mp4", EncodeOptions())
            written[0] += 1

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    fps, _ = ingest_fps(source, PacketBuffer(15.0, 32 * 1024**2))
    stop.set()
    thread.join()
    return fps, written[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=40, help="length of the 720p source (>= 21)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        source = make_stream(out / "camera720p.mp4", max(args.seconds, 21))
        info, packets = read_packets(source)
        bitrate = sum(len(p.data) for p in packets) * 8 / packets[-1].seconds / 1e6
        cost = clip_cost(source, info, packets, out, args.rounds)
        buffer_us = buffer_cost(source, info, args.rounds)
        off, buffered, on, clips = [], [], [], []
        for _ in range(args.rounds):  # alternated, so drift in the machine's load hits all alike
            off.append(ingest_fps(source, None)[0])
            buffered.append(ingest_fps(source, PacketBuffer(15.0, 32 * 1024**2))[0])
            fps, n = with_clips(source, info, packets, out)
            on.append(fps)
            clips.append(n)
    report = {
        "source": f"1280x720 H.264 25 fps, {bitrate:.2f} Mbit/s, {len(packets)} frames",
        "clip": {"seconds": CLIP_S, "width": 640, **cost},
        "buffer_us_per_packet": buffer_us,
        "ingest_fps_without_clips": statistics.median(off),
        "ingest_fps_buffer_only": statistics.median(buffered),
        "ingest_fps_with_clips": statistics.median(on),
        "ratio_buffer_only": statistics.median(buffered) / statistics.median(off),
        "ratio": statistics.median(on) / statistics.median(off),
        "clips_written_during_with_rounds": clips,
        "rounds": {"without": off, "buffer_only": buffered, "with": on},
    }
    for kind in ("buffer", "file"):
        c = cost[kind]
        print(f"one {CLIP_S:.0f} s clip at 640 px from the {kind:6s}: {c['cpu_s']:.2f} s CPU, "
              f"{c['wall_s']:.2f} s wall, {c['bytes'] / 1024:.0f} KiB")  # fmt: skip
    print(f"packet buffer: {buffer_us:.1f} us per packet (one packet per frame)")
    print(
        f"ingester fps without clips: {report['ingest_fps_without_clips']:.1f}; with the packet buffer only: "
        f"{report['ingest_fps_buffer_only']:.1f} (ratio {report['ratio_buffer_only']:.2f}); with clips written back "
        f"to back: {report['ingest_fps_with_clips']:.1f} (ratio {report['ratio']:.2f}; clips per round {clips})"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
