"""The camera-health fault suite: faults injected into real footage, detected how fast, and what they cost in alerts.

Carriers: pairs of Ped2 training clips back to back (normal footage, 360x240 grey, encoded to H.264 at Ped2's 10
fps) and a generated 720p H.264 colour stream at 25 fps. Into each, every fault of tests/faults.py is injected from 6 s
to 10 s into the decoded frames (then re-encoded, as the camera would send them), and decoder errors into the
bitstream (3 packets damaged at 6 s). Each stream goes through the offline path, which equals the live one
(`check_recording`, the camera calibration and the alert machine at the service's defaults, service/alerts/offline.py):
the model (default `ffp-small`) scores it on the camera's reference learned from the clean carrier (a camera that
learned its own normal). Per fault type: detection recall (its condition raised within `--within-s` of the fault's
start), delay, other conditions raised, and the anomaly alerts the fault caused: alerts overlapping the fault (to 2 s
after it) that no alert of the clean carrier overlaps, with the health checks and, for comparison, without them (the
same calibration with its scene profiles, no frame flagged). Then the clean footage: every Ped2 test video (frame
folders, as `vigil eval` reads them, and as H.264 at 10 fps), the demo clips and the 720p stream: health conditions
raised and frames flagged (the goal is none).

    .venv/bin/python bench/health_faults.py --ped2 ../shared/datasets/ucsd_ped2 --registry runs/registry \
        --json runs/bench/health_faults.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import cv2
import numpy as np

from models.calibration.camera import CalibrationParams, CameraReference, fit_from_footage, profile_of
from models.data.video import FrameFolder, VideoFile
from models.health import HealthParams
from models.health.recording import RecordingHealth, check_recording
from models.inference import score_video
from models.io import load_model
from models.store import ModelStore
from service.alerts.offline import Recording, run_camera
from service.messages import AlertParams
from service.settings import AlertSettings
from tests import faults
from tests.synthetic import render_scene, write_stream

FAULT_S = (6.0, 10.0)  # every fault from 6 s to 10 s (the reference view is learned in the first 4 s)
AFTER_S = 2.0  # alerts up to this long after a fault still count as caused by it
FAULTS = [*faults.FRAME_FAULTS, "decode_error"]
PED2_CARRIERS = (("03", "04"), ("05", "06"), ("13", "14"))  # 330 frames each: 33 s at 10 fps


@dataclass
class Carrier:
    name: str
    fps: float
    frames: Callable[[], Iterator[np.ndarray]]  # the clean frames, BGR
    gop: int
    colour: bool


def ped2_frames(root: Path, split: str, *clips: str) -> Callable[[], Iterator[np.ndarray]]:
    paths = [p for clip in clips for p in sorted((root / split / "frames" / clip).glob("*.jpg"))]
    return lambda: (np.asarray(cv2.imread(str(p))) for p in paths)


def to_colour(frame: np.ndarray, _k: int, _first: np.ndarray) -> np.ndarray:
    """Ped2 is grey: its 'IR switch' is the other way, colour appearing (luma kept)."""
    ycrcb = cv2.cvtColor(frame, cv2.COLOR_BGR2YCrCb)
    ycrcb[..., 1], ycrcb[..., 2] = 150, 110
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2BGR)


class Suite:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.method, card, self.version = load_model(ModelStore(args.registry), args.model, "cpu")
        assert card.calibration is not None, f"{args.model} has no calibration"
        self.card, self.precision = card.calibration, card.precision
        self.context = self.method.input_spec.context
        self.params = HealthParams()
        self.calib = CalibrationParams()
        self.bounds = (self.calib.mono_below, self.calib.colour_above)
        self.alerts = AlertParams.merge(AlertSettings(), None)

    def score(self, reader: VideoFile | FrameFolder) -> np.ndarray:
        _, raw = score_video(self.method, reader, batch_size=8, device="cpu", precision=self.precision)
        return raw.astype(np.float64)

    def health(self, reader: VideoFile | FrameFolder, fps: float) -> RecordingHealth:
        return check_recording(reader, self.params, self.bounds, self.context, fps)

    def reference(self, clean: Path, fps: float, what: str) -> tuple[CameraReference, np.ndarray, RecordingHealth]:
        """The camera's reference learned from its clean stream, in the scene profile its chroma says; and the clean
        stream's raw signals and health."""
        h = self.health(VideoFile(clean), fps)
        chroma, usable = h.scored(self.context)
        raw = self.score(VideoFile(clean))
        profile = profile_of(float(np.nanmedian(chroma)), None, self.calib)
        ref = fit_from_footage(self.card, [raw[usable]], fps, self.calib, what)
        return CameraReference(model=self.version.ref, version=1, profiles={profile: ref}), raw, h

    def alerts_of(
        self, raw: np.ndarray, fps: float, ref: CameraReference, h: RecordingHealth, checks: bool = True
    ) -> list[Any]:
        """The anomaly alerts of a stream; `checks=False`: no frame flagged (the chroma still picks the profile)."""
        times = (self.context + np.arange(len(raw))) / fps
        chroma, usable = h.scored(self.context)
        rec = Recording("clip", raw, times, chroma, usable if checks else None)
        run = run_camera(self.card, self.version.ref, [rec], self.calib, self.alerts, "stream", ref)
        return run.recordings[0].alerts

    def faulted(self, carrier: Carrier, fault: str) -> Path:
        start, stop = (round(s * carrier.fps) for s in FAULT_S)
        out = self.work / f"{carrier.name}-{fault}.mp4"
        if fault == "decode_error":
            clean = self.work / f"{carrier.name}-clean.mp4"
            return faults.corrupt_packets(clean, out, start, 3)
        inject = to_colour if fault == "ir_switch" and not carrier.colour else faults.FRAME_FAULTS[fault]
        frames = faults.inject(carrier.frames(), inject, start, stop)
        return write_stream(out, frames, fps=round(carrier.fps), gop=carrier.gop)

    def run_fault(
        self, carrier: Carrier, fault: str, ref: CameraReference, clean: tuple[np.ndarray, RecordingHealth]
    ) -> dict[str, Any]:
        path = self.faulted(carrier, fault)
        raw = self.score(VideoFile(path))
        h = self.health(VideoFile(path), carrier.fps)
        start_s, stop_s = FAULT_S
        clean_args = (clean[0], carrier.fps, ref, clean[1])
        raised = [(t, c.condition) for _, t, c in h.events if c.kind == "raised"]
        own = [t for t, c in raised if c == fault and t >= start_s - 1e-6]
        delay = own[0] - start_s if own else None
        window = (round(start_s * carrier.fps) - self.context, round((stop_s + AFTER_S) * carrier.fps) - self.context)

        def overlaps(a: Any, lo: int, hi: int) -> bool:
            return bool(a.start_frame < hi and (a.end_frame if a.end_frame is not None else 10**9) >= lo)

        def caused(alerts: list[Any], baseline: list[Any]) -> int:
            """Alerts in the fault's window that no alert of the clean carrier overlaps."""
            spans = [(b.start_frame, b.end_frame if b.end_frame is not None else 10**9) for b in baseline]
            return sum(
                1 for a in alerts if overlaps(a, *window) and not any(overlaps(a, lo, hi + 1) for lo, hi in spans)
            )

        return {
            "carrier": carrier.name,
            "fault": fault,
            "detected": delay is not None and delay <= self.args.within_s,
            "delay_s": delay,
            "also_raised": sorted({c for t, c in raised if c != fault}),
            "raised_before_fault": sorted({c for t, c in raised if t < start_s - 1e-6}),
            "alerts_with_health": caused(self.alerts_of(raw, carrier.fps, ref, h), self.alerts_of(*clean_args)),
            "alerts_without_health": caused(
                self.alerts_of(raw, carrier.fps, ref, h, checks=False), self.alerts_of(*clean_args, checks=False)
            ),
        }

    def clean(self, name: str, reader: VideoFile | FrameFolder, fps: float) -> dict[str, Any]:
        h = self.health(reader, fps)
        raised = [(round(t, 2), c.condition) for _, t, c in h.events if c.kind == "raised"]
        return {"footage": name, "frames": len(h.flags), "raised": raised, "flagged": int(np.count_nonzero(h.flags))}


def carriers(args: argparse.Namespace, work: Path) -> list[Carrier]:
    out = [
        Carrier(f"ped2-train{a}+{b}", 10.0, ped2_frames(args.ped2, "training", a, b), 20, False)
        for a, b in PED2_CARRIERS
    ]
    out.append(Carrier("720p", 25.0, lambda: render_scene(400, (720, 1280), seed=11), 50, True))
    for c in out:
        write_stream(work / f"{c.name}-clean.mp4", c.frames(), fps=round(c.fps), gop=c.gop)
    return out


def summarize(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| fault | detected (within 2 s) | delay (s), per carrier | other conditions raised | anomaly alerts caused: "
        "with health / without |",
        "|---|---|---|---|---|",
    ]
    for fault in FAULTS:
        got = [r for r in rows if r["fault"] == fault]
        delays = ", ".join("-" if r["delay_s"] is None else f"{r['delay_s']:.2f}" for r in got)
        others = ", ".join(sorted({c for r in got for c in r["also_raised"]})) or "none"
        with_h, without = sum(r["alerts_with_health"] for r in got), sum(r["alerts_without_health"] for r in got)
        lines.append(
            f"| {fault} | {sum(r['detected'] for r in got)}/{len(got)} | {delays} | {others} | {with_h} / {without} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ped2", type=Path, required=True, help="ucsd_ped2 root (training/frames, testing/frames)")
    parser.add_argument("--registry", type=Path, default=Path("runs/registry"))
    parser.add_argument("--model", default="ffp-small")
    parser.add_argument("--within-s", type=float, default=2.0, help="a fault counts as detected within this time")
    parser.add_argument("--json", type=Path, help="also write every row here")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        suite = Suite(args, work)
        rows = []
        for carrier in carriers(args, work):
            ref, raw, health = suite.reference(work / f"{carrier.name}-clean.mp4", carrier.fps, carrier.name)
            for fault in FAULTS:
                row = suite.run_fault(carrier, fault, ref, (raw, health))
                rows.append(row)
                print(json.dumps(row), flush=True)
        clean = [suite.clean(f"ped2 test {c} (frames)", FrameFolder(args.ped2 / "testing" / "frames" / c, 10.0), 10.0)
                 for c in sorted(p.name for p in (args.ped2 / "testing" / "frames").iterdir())]  # fmt: skip
        for c in sorted(p.name for p in (args.ped2 / "testing" / "frames").iterdir()):
            path = write_stream(work / f"test{c}.mp4", ped2_frames(args.ped2, "testing", c)(), fps=10, gop=20)
            clean.append(suite.clean(f"ped2 test {c} (H.264)", VideoFile(path), 10.0))
        from cli.demo import demo_clip

        demo, _ = demo_clip(work / "demo", None)
        clean.append(suite.clean("demo clip", VideoFile(demo), 25.0))
        ped2_demo, _ = demo_clip(work / "demo-ped2", args.ped2)
        clean.append(suite.clean("demo clip (Ped2)", VideoFile(ped2_demo), 25.0))
        clean.append(suite.clean("720p stream", VideoFile(work / "720p-clean.mp4"), 25.0))
        for row in clean:
            print(json.dumps(row), flush=True)
    print(f"\n{args.model}, faults {FAULT_S[0]:g}-{FAULT_S[1]:g} s, alerts counted to {AFTER_S:g} s after")
    print("\n".join(summarize(rows)))
    events = sum(len(r["raised"]) for r in clean)
    flagged = sum(r["flagged"] for r in clean)
    frames = sum(r["frames"] for r in clean)
    print(f"\nclean footage: {len(clean)} recordings, {frames} frames: {events} health conditions raised, "
          f"{flagged} frames flagged")  # fmt: skip
    print(f"took {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"faults": rows, "clean": clean}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
