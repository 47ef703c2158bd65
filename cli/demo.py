"""`python -m cli.demo` (`make demo`): train a small model if needed, bring vigil up, stream a clip with an anomaly
through it, print live scores from the WebSocket and the alerts from GET /alerts, then stop everything.

The camera is new to vigil, so it first learns its own normal reference from its first LEARN_S seconds (scores flow,
alerts are held back), then scores every frame on that reference; the clip's anomaly comes after that.
Needs no dataset and no GPU: footage is synthetic unless VIGIL_PED2 points at UCSD Ped2 (then the model trains on
its training split and the camera streams training clips 01-02, to learn from, then test clip 02). A few minutes on
2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("vigil.demo")

DEMO_MODEL = "ffp-demo"
CAMERA = "demo"
FPS = 25
SIZE = (64, 64)
CLIP_FRAMES = 750  # 30 s
ANOMALY = (500, 525)  # [start, end) frames of the demo clip where a bright block races across the scene
LEARN_S = 10  # the demo camera learns from its first 10 s (the service default is VIGIL_CALIBRATION__LEARN_S, 180 s)
LINE_FRAMES = 25  # one timeline line per second of footage
BARS = " ▁▂▃▄▅▆▇█"


def render_frames(num_frames: int, anomaly: tuple[int, int] | None, seed: int = 0) -> np.ndarray:
    """Synthetic footage (T, 64, 64, 3) uint8 BGR: a grey block walks right; in `anomaly` a bright one races."""
    import cv2

    h, w = SIZE
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.integers(60, 120, (h, w), dtype=np.uint8), (5, 5), 0)
    frames = np.empty((num_frames, h, w, 3), dtype=np.uint8)
    block = h // 8
    for t in range(num_frames):
        img = background.copy()
        x = (t * 2) % (w - block)
        img[h // 2 : h // 2 + block, x : x + block] = 160
        if anomaly is not None and anomaly[0] <= t < anomaly[1]:
            k = t - anomaly[0]
            ax, ay = (k * 7) % (w - block), (k * 5) % (h - block)
            img[ay : ay + block, ax : ax + block] = 250
        frames[t] = np.repeat(img[:, :, None], 3, axis=2)
    return frames


def write_video(path: Path, frames: np.ndarray) -> Path:
    """H.264 mp4 through PyAV (near-lossless, so what the model sees is what was drawn)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10", "preset": "ultrafast"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        container.mux(stream.encode())
    return path


def write_training_set(root: Path) -> Path:
    """Normal synthetic videos in the Ped2 frame-folder layout (`training/frames/NN/NNN.jpg`) for the trainer."""
    import cv2

    for i in range(1, 5):
        folder = root / "training" / "frames" / f"{i:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(render_frames(120, None, seed=i)):
            cv2.imwrite(str(folder / f"{t:03d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return root


def train_demo_model(store_root: Path, data_root: Path, work: Path, steps: int) -> str:
    """Train FFP `tiny` with the project's trainer, calibrate on held-out normal video, register; returns the ref."""
    from models.train.config import TrainConfig
    from models.train.loop import train

    cfg = TrainConfig.model_validate(
        {
            "method": {"name": "ffp", "preset": "tiny"},
            "data": {"root": data_root, "num_val": 1},
            "optim": {"generator_lr": 1e-3, "discriminator_lr": 1e-4, "lr_drop_step": None},
            "steps": steps,
            "max_minutes": 3,
            "batch_size": 8,
            "num_threads": 2,
            "log_every": max(steps // 5, 1),
            "checkpoint_every": steps,
            "out_dir": work / "run",
            "register": {"name": DEMO_MODEL, "registry": store_root},
        }
    )
    result = train(cfg)
    if result.ref is None:
        msg = "training finished but registered nothing"
        raise RuntimeError(msg)
    return str(result.ref)


def ensure_model(store_root: Path, work: Path, ped2: Path | None, steps: int) -> str:
    """The demo model's ref: reuse `ffp-demo` when the registry has it, else train it (a few minutes on CPU)."""
    from models.store import ModelStore

    store = ModelStore(store_root)
    if DEMO_MODEL in store.names() and store.versions(DEMO_MODEL):
        version = store.resolve(DEMO_MODEL)
        print(f"using {version.ref} from {store_root}")
        return version.ref
    data = ped2 if ped2 is not None else write_training_set(work / "normal")
    print(f"no {DEMO_MODEL} in {store_root}: training FFP tiny for up to {steps} steps on {data} (CPU, a few minutes)")
    return train_demo_model(store_root, data, work, steps)


def demo_clip(work: Path, ped2: Path | None) -> tuple[Path, tuple[int, int] | None]:
    """The clip the camera streams and its anomalous span (None when unknown)."""
    footage = work / "footage"
    footage.mkdir(parents=True, exist_ok=True)
    if ped2 is not None:  # training clips 01-02 (270 normal frames), then test clip 02: a cyclist from its frame 95 on
        import cv2

        folders = [
            ped2 / "training" / "frames" / "01",
            ped2 / "training" / "frames" / "02",
            ped2 / "testing" / "frames" / "02",
        ]
        paths = [p for folder in folders for p in sorted(folder.glob("*.jpg"))]
        frames = np.stack([np.asarray(cv2.imread(str(p)), dtype=np.uint8) for p in paths])
        return write_video(footage / "ped2_train01-02_test02.mp4", frames), (270 + 94, 270 + 180)
    return write_video(footage / "demo.mp4", render_frames(CLIP_FRAMES, ANOMALY, seed=7)), ANOMALY


def timeline_line(scores: list[dict[str, Any]], span: tuple[int, int] | None, threshold: float) -> str:
    """One compact line per second: frame range, a bar per frame, the max score, and markers."""
    first, last = scores[0]["frame"], scores[-1]["frame"]
    bars = "".join(BARS[min(int(s["score"] * (len(BARS) - 1) + 0.5), len(BARS) - 1)] for s in scores)
    peak = max(s["score"] for s in scores)
    learning = any((s.get("calibration") or {}).get("state") == "learning" for s in scores)
    truth = " <- anomaly in the clip" if span and first < span[1] and last >= span[0] else ""
    flag = " learning (alerts held back)" if learning else " ALERT-LEVEL" if peak >= threshold else ""
    return f"frames {first:4d}-{last:4d} |{bars:<{LINE_FRAMES}}| max {peak:.3f}{flag}{truth}"


def stream_scores(api_url: str, headers: dict[str, str], expected: int, timeout_s: float) -> Iterator[dict[str, Any]]:
    """Scores of the demo camera from /ws/scores as they arrive, until `expected` frames or the camera stops."""
    import httpx
    from websockets.sync.client import connect

    url = api_url.replace("http", "ws", 1) + f"/ws/scores?camera={CAMERA}"
    deadline, received, quiet_since = time.monotonic() + timeout_s, 0, time.monotonic()
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        yield {}  # connected: the caller adds the camera now, so no score can be missed
        while received < expected and time.monotonic() < deadline:
            try:
                message = json.loads(ws.recv(timeout=1.0))
            except TimeoutError:
                # A file camera that ended (or failed) sends nothing more: stop after a few quiet seconds.
                state = httpx.get(f"{api_url}/cameras/{CAMERA}/status", headers=headers, timeout=5).json()["state"]
                if state in ("stopped", "error") and time.monotonic() - quiet_since > 3:
                    return
                continue
            received, quiet_since = received + 1, time.monotonic()
            yield message


def add_camera(api_url: str, headers: dict[str, str], clip: Path, model: str) -> None:
    import httpx

    body = {"id": CAMERA, "url": str(clip), "model": model, "kind": "file", "realtime": True}
    httpx.delete(f"{api_url}/cameras/{CAMERA}", headers=headers, timeout=10)  # left over from an earlier run
    r = httpx.post(f"{api_url}/cameras", json=body, headers=headers, timeout=10)
    if r.status_code != 201:
        msg = f"POST /cameras answered {r.status_code}: {r.text}"
        raise RuntimeError(msg)
    print(f"added camera {CAMERA!r}: {r.json()['url']} scored by {model}")


def print_calibration(api_url: str, headers: dict[str, str]) -> None:
    """What the camera learned (GET /cameras/demo/calibration)."""
    import httpx

    view = httpx.get(f"{api_url}/cameras/{CAMERA}/calibration", headers=headers, timeout=10).json()
    for name, profile in view.get("profiles", {}).items():
        print(
            f"\ncamera {CAMERA!r}: reference v{view['version']} ({name} profile) learned from {profile['source']}; "
            f"threshold {view['threshold']:g} = levels its normal footage reaches about "
            f"{view['threshold_rises_per_hour']:g} time(s) an hour"
        )
    if not view.get("profiles"):
        print(f"\ncamera {CAMERA!r}: still {view.get('state')} (the clip ended before it had learned)")


def print_alerts(api_url: str, headers: dict[str, str], span: tuple[int, int] | None, since_ts: float) -> int:
    """Poll GET /alerts (cursor paging) and print this run's alerts of the camera; returns how many there were."""
    import httpx

    alerts: dict[str, dict[str, Any]] = {}
    cursor, deadline = 0, time.monotonic() + 8
    while time.monotonic() < deadline:  # an alert still open when the clip ends closes after min duration/cooldown
        page = httpx.get(f"{api_url}/alerts", params={"since": cursor, "camera": CAMERA}, headers=headers, timeout=10)
        body = page.json()
        alerts.update({a["id"]: a for a in body["alerts"] if a["start_ts"] >= since_ts})  # not an earlier run's
        cursor = body["next_cursor"]
        if alerts and all(a["state"] == "closed" for a in alerts.values()):
            break
        time.sleep(0.5)
    truth = f"; anomaly in the clip: frames {span[0]}-{span[1] - 1}" if span else ""
    print(f"\nGET /alerts?camera={CAMERA}: {len(alerts)} alert(s){truth}")
    for a in alerts.values():
        end = a["end_frame"] if a["end_frame"] is not None else "..."
        peak = f"peak {a['peak_score']:.3f} at frame {a['peak_frame']}"
        print(f"  {a['id']}  frames {a['start_frame']}-{end}  {peak}  {a['state']}")
    return len(alerts)


def run_demo(args: argparse.Namespace) -> int:
    from cli.up import Stack, free_port
    from service.settings import get_settings

    ped2_text = os.environ.pop("VIGIL_PED2", "")  # not a setting: keep it from the children's strict settings
    ped2 = Path(ped2_text) if ped2_text else None
    if ped2 is not None and not (ped2 / "training" / "frames").is_dir():
        print(f"VIGIL_PED2={ped2} has no training/frames folder; point it at the Ped2 root (see its README)")
        return 2
    settings = get_settings()
    store_root = (args.registry or settings.store.root).resolve()
    work = Path(tempfile.mkdtemp(prefix="vigil-demo-"))
    model = args.model or ensure_model(store_root, work, ped2, args.steps)
    clip, span = demo_clip(work, ped2)
    headers = {"X-API-Key": settings.api.admin_keys[0].get_secret_value()} if settings.api.admin_keys else {}
    env = {
        **os.environ,
        "VIGIL_STORE__ROOT": str(store_root),
        "VIGIL_FOOTAGE_ROOT": str(clip.parent),
        "VIGIL_CALIBRATION__LEARN_S": str(LEARN_S),
    }
    log_path = work / "services.log"
    # A private redis-server when one is installed, so the demo never touches the cameras of a running deployment.
    private = shutil.which("redis-server") is not None
    redis_url = f"redis://127.0.0.1:{free_port()}/0" if private else settings.redis.url.get_secret_value()
    stack = Stack(redis_url=redis_url, api_port=args.port or free_port(), env=env, log_path=log_path)
    print(f"starting {'a private redis-server, ' if private else ''}ingest, worker and api; logs in {log_path}")
    with stack:
        stack.wait_ready(120)
        print(f"API up at {stack.api_url} (OpenAPI docs at {stack.api_url}/docs)")
        feed = stream_scores(stack.api_url, headers, expected=args.frames, timeout_s=args.timeout)
        next(feed)  # WebSocket open before the camera exists
        started = time.time()
        add_camera(stack.api_url, headers, clip, model)
        print(
            f"live scores (one line per {LINE_FRAMES} frames = 1 s; bars = score 0..1, alert threshold "
            f"{settings.alerts.threshold}; the camera learns its reference from its first {LEARN_S} s):"
        )
        window: list[dict[str, Any]] = []
        for score in feed:
            window.append(score)
            if len(window) == LINE_FRAMES:
                print(timeline_line(window, span, settings.alerts.threshold), flush=True)
                window = []
        if window:
            print(timeline_line(window, span, settings.alerts.threshold))
        print_calibration(stack.api_url, headers)
        found = print_alerts(stack.api_url, headers, span, started)
        print("\nstopping: api, worker, ingest, then redis (if the demo started it)")
    print("done." if found else "no alert was raised; see the services log above for why.")
    return 0 if found else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.demo", description=__doc__)
    parser.add_argument("--registry", type=Path, help="model registry (default VIGIL_STORE__ROOT, ./registry)")
    parser.add_argument("--model", help=f"score with this model ref instead of {DEMO_MODEL} (trained if missing)")
    parser.add_argument("--steps", type=int, default=150, help="training steps when the demo model is missing")
    parser.add_argument("--frames", type=int, default=CLIP_FRAMES - 4, help="stop after this many scored frames")
    parser.add_argument("--timeout", type=float, default=240, help="stop streaming after this many seconds")
    parser.add_argument("--port", type=int, help="API port (default: a free one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_demo(args)


if __name__ == "__main__":
    sys.exit(main())
