"""What broken cameras send, injected into real footage: faults in decoded frames, and corrupt packets in the bitstream.

Each frame fault maps a healthy BGR frame (and its position in the fault) to what a camera with that fault would
send; `inject` applies one to a span of a frame sequence. `corrupt_packets` damages encoded packets of a video file
the way a lossy link does (the decoder conceals or drops them). Shared by the health tests and
bench/health_faults.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import av
import cv2
import numpy as np

FrameFault = Callable[[np.ndarray, int, np.ndarray], np.ndarray]  # (frame, index in the fault, first frame) -> frame


def frozen(frame: np.ndarray, k: int, first: np.ndarray) -> np.ndarray:
    """The camera repeats the frame it had when it froze."""
    return first


def black(frame: np.ndarray, k: int, first: np.ndarray) -> np.ndarray:
    """Black frames: night without IR, a dead sensor (a faint noise floor, as real black frames have)."""
    rng = np.random.default_rng(k)
    return np.clip(rng.normal(12, 1.0, frame.shape), 0, 255).astype(np.uint8)


def covered(frame: np.ndarray, k: int, first: np.ndarray) -> np.ndarray:
    """A hand or tape over the lens: dark, a little light leaking in at one side, no detail."""
    _h, w = frame.shape[:2]
    leak = np.linspace(10, 45, w, dtype=np.float32)[None, :, None]
    glow = cv2.GaussianBlur(frame, (0, 0), w / 8).astype(np.float32) * 0.1
    rng = np.random.default_rng(k)
    return np.clip(leak + glow + rng.normal(0, 1.0, frame.shape), 0, 255).astype(np.uint8)


def blurred(frame: np.ndarray, k: int, first: np.ndarray) -> np.ndarray:
    """Severe defocus (or a smeared lens): a Gaussian blur of 1.5% of the frame width."""
    return cv2.GaussianBlur(frame, (0, 0), frame.shape[1] * 0.015)


def moved(frame: np.ndarray, k: int, first: np.ndarray) -> np.ndarray:
    """The camera was turned: the view slides a third of the frame sideways and a tenth down (a PTZ preset move)."""
    h, w = frame.shape[:2]
    return np.roll(np.roll(frame, w // 3, axis=1), h // 10, axis=0)


def ir_switch(frame: np.ndarray, k: int, first: np.ndarray) -> np.ndarray:
    """Day to night mode: the IR-cut filter lifts, colour is gone, IR light makes the scene brighter and flatter."""
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32) * 0.8 + 40
    return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


def lights_on(frame: np.ndarray, k: int, first: np.ndarray) -> np.ndarray:
    """The lights are switched on: the whole scene is much brighter."""
    return np.clip(frame.astype(np.float32) * 1.5 + 35, 0, 255).astype(np.uint8)


FRAME_FAULTS: dict[str, FrameFault] = {
    "frozen": frozen,
    "blank": black,
    "covered": covered,
    "blur": blurred,
    "moved": moved,
    "ir_switch": ir_switch,
    "illumination": lights_on,
}


def inject(frames: Iterable[np.ndarray], fault: FrameFault, start: int, stop: int | None) -> Iterator[np.ndarray]:
    """`frames` with `fault` applied to frames [start, stop) (stop None: to the end, a lasting change)."""
    first: np.ndarray | None = None
    for i, frame in enumerate(frames):
        if i >= start and (stop is None or i < stop):
            if first is None:
                first = frame
            yield fault(frame, i - start, first)
        else:
            yield frame


def corrupt_packets(src: Path, dst: Path, start: int, count: int, seed: int = 0) -> Path:
    """Copy a video file, damaging `count` packets from packet `start` on: the back half of each is overwritten with
    random bytes, as a lossy network link or a failing recorder leaves them."""
    rng = np.random.default_rng(seed)
    with av.open(str(src)) as source, av.open(str(dst), "w") as out:
        video = source.streams.video[0]
        stream = out.add_stream_from_template(video)
        for i, packet in enumerate(p for p in source.demux(video) if p.size):
            data = bytearray(bytes(packet))
            if start <= i < start + count:
                half = len(data) // 2
                data[half:] = rng.integers(0, 256, len(data) - half, dtype=np.uint8).tobytes()
            damaged = av.Packet(bytes(data))
            damaged.pts, damaged.dts, damaged.time_base = packet.pts, packet.dts, packet.time_base
            damaged.is_keyframe = packet.is_keyframe
            damaged.stream = stream
            out.mux(damaged)
    return dst
