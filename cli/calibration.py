"""How `vigil eval` and `vigil score` calibrate a camera offline: the options and the learned reference.

The service learns each camera's reference from its own normal footage (models/calibration/camera.py). Offline,
the footage an operator would have is named with `--learn-from`: a dataset's training videos (`train`), a video
file or folder marked normal, the model card's held-out frames (`card`), or `first`: the first `--learn-s`
seconds of the scored stream itself, alerts held back meanwhile, as a new live camera does. Test labels are never
read here.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from models.base import AnomalyMethod
    from models.calibration.camera import CalibrationParams, CameraReference
    from models.card import Calibration
    from models.data.datasets import LabeledVideo
    from models.health.recording import RecordingHealth
    from service.alerts.offline import Recording

LEARN_CHOICES = "train (the dataset's training videos), card, first, or a video file/folder of normal footage"


def add_calibration_options(parser: argparse.ArgumentParser, default_learn: str) -> None:
    parser.add_argument(
        "--learn-from",
        default=default_learn,
        metavar="SOURCE",
        help=f"footage the camera learns its normal reference from: {LEARN_CHOICES} (default: {default_learn})",
    )
    parser.add_argument(
        "--learn-s", type=float, help="seconds of footage a camera learns from (default: VIGIL_CALIBRATION__LEARN_S)"
    )
    parser.add_argument(
        "--fps",
        type=float,
        help="frame rate of the footage (frame folders carry none; default: the rate recorded in the model card for "
        "frame folders, else the video's own)",
    )


def calibration_params(args: argparse.Namespace) -> CalibrationParams:
    """The service's calibration settings (VIGIL_CALIBRATION__*), with --learn-s applied."""
    from models.calibration.camera import CalibrationParams
    from service.settings import get_settings

    params = CalibrationParams.model_validate(
        get_settings().calibration.model_dump(include=set(CalibrationParams.model_fields))
    )
    return params if args.learn_s is None else params.model_copy(update={"learn_s": args.learn_s})


def footage_fps(args: argparse.Namespace, card: Calibration | None, video: LabeledVideo) -> float:
    """--fps, else the card's footage rate for frame folders (they carry none), else the video's own rate."""
    from models.data.video import FrameFolder

    if args.fps is not None:
        return float(args.fps)
    if isinstance(video.reader, FrameFolder) and card is not None and card.normal_fps:
        return float(card.normal_fps)
    return float(video.reader.fps)


def recording_health(video: LabeledVideo, fps: float, context: int) -> RecordingHealth:
    """The camera health checks over one video at the service's settings (VIGIL_HEALTH__*), as a new camera playing
    it would run them (times: frame index / fps, as the calibration's)."""
    from models.health.recording import check_recording
    from service.settings import get_settings

    settings = get_settings()
    bounds = (settings.calibration.mono_below, settings.calibration.colour_above)
    return check_recording(video.reader, settings.health, bounds, context, fps)


def recording(
    method: AnomalyMethod, video: LabeledVideo, fps: float, batch_size: int, device: torch.device
) -> Recording:
    """Score one video -> its scored frames' raw signals, stream times (frame index / fps, as the reader counts) and
    health (chroma for the scene profile; frames a health check flags are never learned from)."""
    import numpy as np

    from models.inference import score_video
    from service.alerts.offline import Recording

    _, raw = score_video(method, video.reader, batch_size=batch_size, device=device)
    context = method.input_spec.context
    chroma, usable = recording_health(video, fps, context).scored(context)
    return Recording(video.name, raw, (context + np.arange(len(raw))) / fps, chroma, usable)


def footage_profile(recordings: list[Recording], params: CalibrationParams) -> str:
    """The scene profile footage belongs to: the one its median chroma argues for (Ped2 is grey: mono)."""
    import numpy as np

    from models.calibration.camera import profile_of

    chroma = np.concatenate([r.chroma for r in recordings if r.chroma is not None] or [np.empty(0)])
    chroma = chroma[np.isfinite(chroma)]
    return profile_of(float(np.median(chroma)) if len(chroma) else None, None, params)


def learned_reference(
    source: str,
    method: AnomalyMethod,
    card: Calibration,
    model: str,
    params: CalibrationParams,
    args: argparse.Namespace,
    device: torch.device,
    dataset: Path | None = None,
) -> CameraReference | None:
    """The reference `--learn-from` names, learned the way the service learns it (None for `first`)."""
    from models.calibration.camera import CameraReference, card_reference, fit_from_footage
    from models.data.datasets import open_dataset

    if source == "first":
        return None
    if source == "card":  # the card's frames stand for every scene profile, as the API's `card` source installs them
        ref = card_reference(card, params)
        return CameraReference(model=model, version=1, profiles={"colour": ref, "mono": ref})
    if source == "train":
        if dataset is None:
            msg = "--learn-from train needs a dataset (vigil eval --dataset); give a video file or folder instead"
            raise ValueError(msg)
        videos, what = open_dataset(dataset, "train"), f"training videos of {dataset}"
    else:
        path = Path(source)
        if not path.exists():
            msg = f"--learn-from {source}: no such file or folder; use {LEARN_CHOICES}"
            raise ValueError(msg)
        videos, what = open_dataset(path, "test"), f"normal footage {path.name}"
    fps = footage_fps(args, card, videos[0])
    recordings = [recording(method, v, fps, args.batch_size, device) for v in videos]
    segments = [r.raw if r.usable is None else r.raw[r.usable] for r in recordings]  # flagged frames: never learned
    profile = fit_from_footage(card, segments, fps, params, f"{len(videos)} {what}")
    name = footage_profile(recordings, params)
    print(f"learned the camera's {name} reference from {profile.frames} frames of {len(videos)} {what} at {fps:g} fps")
    return CameraReference(model=model, version=1, profiles={name: profile})
