"""`train(config)`: data, objective, the step loop with progress and checkpoints, then calibration and registration."""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from models.base import AnomalyMethod
from models.data.clips import ClipDataset, load_frames
from models.data.datasets import dataset_fingerprint, open_dataset, split_validation
from models.errors import DatasetError, IncompatibleCheckpointError
from models.registry import create_method
from models.train.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    resolve_resume,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from models.train.config import TrainConfig
from models.train.finish import ValidationData, finish_run
from models.train.objectives import Objective, build_objective
from models.train.sampler import ResumableSampler

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    ref: str | None  # registered model reference (name@vN), None when registration is off
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Run:
    """Mutable state of the loop that a checkpoint must restore."""

    step: int = 0
    elapsed_s: float = 0.0  # training time summed over resumed sessions
    losses: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


def resolve_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        msg = "device=cuda but torch sees no CUDA device; use device=auto or device=cpu"
        raise RuntimeError(msg)
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def _uses_amp(cfg: TrainConfig, device: torch.device) -> bool:
    return cfg.amp and device.type == "cuda" and torch.cuda.is_bf16_supported()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _load_data(cfg: TrainConfig, method: AnomalyMethod) -> tuple[ClipDataset, ValidationData]:
    videos = open_dataset(cfg.data.root, "train")
    if not videos:
        msg = f"{cfg.data.root} has no training videos"
        raise DatasetError(msg)
    train_videos, val_videos = split_validation(videos, cfg.data.num_val)
    spec = method.input_spec
    log.info("decoding %d training + %d validation videos at %dx%d", len(train_videos), len(val_videos), *spec.size)
    clips = ClipDataset(load_frames(train_videos, spec), clip_len=spec.context + 1)
    val = ValidationData(
        names=[v.name for v in val_videos],
        frames=load_frames(val_videos, spec),
        fingerprint=dataset_fingerprint(videos),
        root=str(cfg.data.root),
        fps=cfg.data.fps or val_videos[0].reader.fps,
    )
    return clips, val


def _batches(cfg: TrainConfig, clips: ClipDataset, start_step: int, device: torch.device) -> Iterator[torch.Tensor]:
    sampler = ResumableSampler(len(clips), cfg.seed, start=start_step * cfg.batch_size)
    loader = DataLoader(
        clips,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=cfg.num_workers > 0,
    )
    return iter(loader)


def _restore(cfg: TrainConfig, objective: Objective, run: _Run) -> None:
    assert cfg.resume is not None
    folder = resolve_resume(cfg.resume, cfg.out_dir)
    state = load_checkpoint(folder)
    saved = state["config"]["method"]
    current = cfg.method.model_dump(mode="json")
    if saved != current:
        diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in diff)
        msg = f"checkpoint {folder} was trained with a different method config ({details}); resume with the same one"
        raise IncompatibleCheckpointError(msg)
    try:
        objective.load_state_dict(state["objective"])
    except (KeyError, RuntimeError, ValueError) as e:
        msg = f"checkpoint {folder} does not fit this objective: {e}"
        raise IncompatibleCheckpointError(msg) from e
    set_rng_state(state["rng"])
    run.step, run.elapsed_s = int(state["step"]), float(state["elapsed_s"])
    log.info("resumed from %s at step %d", folder, run.step)


def _save(cfg: TrainConfig, objective: Objective, run: _Run) -> None:
    state = {
        "step": run.step,
        "elapsed_s": run.elapsed_s,
        "samples_seen": run.step * cfg.batch_size,  # the sampler's position (ResumableSampler start)
        "config": cfg.model_dump(mode="json", by_alias=True),
        "objective": objective.state_dict(),
        "rng": rng_state(),
    }
    save_checkpoint(cfg.out_dir, run.step, state, keep=cfg.keep_checkpoints)


def _loop(cfg: TrainConfig, objective: Objective, batches: Iterator[torch.Tensor], run: _Run) -> None:
    bar = tqdm(total=cfg.steps, initial=run.step, desc="train", unit="step", mininterval=2.0, dynamic_ncols=True)
    started = time.monotonic() - run.elapsed_s
    try:
        while run.step < cfg.steps:
            logs = objective.step(next(batches))
            if not all(np.isfinite(v) for v in logs.values()):
                msg = f"training diverged at step {run.step}: losses {logs}; lower optim.lr_g / optim.lr_d"
                raise FloatingPointError(msg)
            run.step += 1
            for k, v in logs.items():
                run.losses[k] = [*run.losses[k][-(cfg.log_every - 1) :], v]
            bar.update(1)
            bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)
            run.elapsed_s = time.monotonic() - started
            if run.step % cfg.log_every == 0:
                means = " ".join(f"{k}={np.mean(v):.4f}" for k, v in run.losses.items())
                bar.write(f"step {run.step}/{cfg.steps} {means} ({run.step / max(run.elapsed_s, 1e-9):.2f} step/s)")
            out_of_time = cfg.max_minutes is not None and run.elapsed_s >= cfg.max_minutes * 60
            if run.step % cfg.checkpoint_every == 0 or run.step == cfg.steps or out_of_time:
                _save(cfg, objective, run)
            if out_of_time:
                bar.write(f"stopping at step {run.step}: max_minutes={cfg.max_minutes} reached")
                break
    finally:
        bar.close()


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or resume) a training run described by `cfg`; returns the registered reference and metrics."""
    device = resolve_device(cfg.device)
    if cfg.resume is None and (existing := list_checkpoints(cfg.out_dir)):
        msg = f"{cfg.out_dir} already holds checkpoints (newest {existing[-1].name}); pass resume=auto or a new out_dir"
        raise FileExistsError(msg)
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    seed_everything(cfg.seed)
    method = create_method(cfg.method).to(device)
    if cfg.data.split is not None:
        return _train_weak(cfg, method, device)
    clips, val = _load_data(cfg, method)
    objective = build_objective(method, cfg, device)
    run = _Run()
    if cfg.resume is not None:
        _restore(cfg, objective, run)
    log.info("training %s on %s: %d clips, steps %d -> %d", cfg.method.name, device, len(clips), run.step, cfg.steps)  # type: ignore[attr-defined]
    if run.step < cfg.steps:  # a resumed run that already reached `steps` only calibrates and registers
        _loop(cfg, objective, _batches(cfg, clips, run.step, device), run)
    train_metrics = {
        "losses": {k: float(np.mean(v)) for k, v in run.losses.items()},
        "steps": run.step,
        "batch_size": cfg.batch_size,
        "train_time_s": round(run.elapsed_s, 1),
        "steps_per_s": round(run.step / max(run.elapsed_s, 1e-9), 3),
        "device": str(device) + (" (bf16 autocast)" if _uses_amp(cfg, device) else ""),
    }
    ref, metrics = finish_run(cfg, method, val, train_metrics, device)
    return TrainResult(ref=ref, metrics=metrics)


def _train_weak(cfg: TrainConfig, method: AnomalyMethod, device: torch.device) -> TrainResult:
    """data.split: the feature-level methods train on a split's videos (vadclip with video labels, gcl without)."""
    from models.features.gcl_run import train_gcl_on_split
    from models.methods.gcl import Gcl
    from models.methods.vadclip import Vadclip
    from models.train.weak import train_weak

    if isinstance(method, Vadclip):
        ref, metrics = train_weak(cfg, method, device)
    elif isinstance(method, Gcl):
        ref, metrics = train_gcl_on_split(cfg)
    else:
        msg = f"data.split trains vadclip and gcl on snippet features; {cfg.method.name} trains on frame clips"  # type: ignore[attr-defined]
        raise ValueError(msg)
    return TrainResult(ref=ref, metrics=metrics)
