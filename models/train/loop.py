"""`train(config)`: the one training loop of every method.

method -> objective (its losses and optimisers) -> data source (frame clips, cached snippet features or weak
video batches) -> steps with progress, checkpoints, snapshots and budgets -> calibration and registration
(`models.train.finish`). Everything a run can be refused for (a config that does not fit the method, a
checkpoint of another method or config, a feature cache of another backbone) is checked before any decoding.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm import tqdm

from models.base import AnomalyMethod, MethodConfig
from models.errors import IncompatibleCheckpointError
from models.io import load_state
from models.registry import create_method
from models.train.checkpoint import (
    SNAPSHOT_WEIGHTS,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint_config,
    resolve_resume,
    rng_state,
    save_checkpoint,
    save_snapshot,
    set_rng_state,
)
from models.train.config import TrainConfig
from models.train.finish import finish_run
from models.train.objectives import Objective, build_objective
from models.train.sources import DataSource, open_source

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    ref: str | None  # registered model reference (name@vN), None when registration is off
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Run:
    """Mutable state of the loop that a checkpoint must restore."""

    step: int = 0
    elapsed_s: float = 0.0  # wall-clock training time summed over resumed sessions
    cpu_s: float = 0.0  # CPU time of the training steps (this process, all threads) summed over sessions
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


def _check_resume(cfg: TrainConfig) -> None:
    """Refuse, from state.json alone, a checkpoint of another method or method config."""
    assert cfg.resume is not None
    folder = resolve_resume(cfg.resume, cfg.out_dir)
    saved = read_checkpoint_config(folder)["method"]
    current = cfg.method.model_dump(mode="json")
    if saved.get("name") != current["name"]:
        msg = (
            f"checkpoint {folder} is from a {saved.get('name')} run and this config trains {current['name']}: "
            f"resume from a {current['name']} run's checkpoint (or set out_dir to a new directory without resume)"
        )
        raise IncompatibleCheckpointError(msg)
    if saved != current:
        diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in diff)
        msg = f"checkpoint {folder} was trained with a different method config ({details}); resume with the same one"
        raise IncompatibleCheckpointError(msg)


def _restore(cfg: TrainConfig, objective: Objective, run: _Run) -> None:
    assert cfg.resume is not None
    folder = resolve_resume(cfg.resume, cfg.out_dir)
    state = load_checkpoint(folder)
    try:
        objective.load_state_dict(state["objective"])
    except (KeyError, RuntimeError, ValueError) as e:
        msg = f"checkpoint {folder} does not fit this objective: {e}"
        raise IncompatibleCheckpointError(msg) from e
    set_rng_state(state["rng"])
    run.step, run.elapsed_s = int(state["step"]), float(state["elapsed_s"])
    run.cpu_s = float(state.get("cpu_s", state["elapsed_s"]))  # checkpoints before cpu_s: wall time
    log.info("resumed from %s at step %d", folder, run.step)


def _save(cfg: TrainConfig, objective: Objective, run: _Run) -> None:
    state = {
        "step": run.step,
        "elapsed_s": run.elapsed_s,
        "cpu_s": run.cpu_s,
        "samples_seen": run.step * cfg.batch_size,  # the sampler's position (ResumableSampler start)
        "config": cfg.model_dump(mode="json", by_alias=True),
        "objective": objective.state_dict(),
        "rng": rng_state(),
    }
    save_checkpoint(cfg.out_dir, run.step, state, keep=cfg.keep_checkpoints)


def _out_of_budget(cfg: TrainConfig, run: _Run) -> str | None:
    if cfg.max_minutes is not None and run.elapsed_s >= cfg.max_minutes * 60:
        return f"max_minutes={cfg.max_minutes:g}"
    if cfg.max_cpu_minutes is not None and run.cpu_s >= cfg.max_cpu_minutes * 60:
        return f"max_cpu_minutes={cfg.max_cpu_minutes:g}"
    return None


def _loop(cfg: TrainConfig, method: AnomalyMethod, objective: Objective, batches: Iterator[Any], run: _Run) -> None:
    bar = tqdm(total=cfg.steps, initial=run.step, desc="train", unit="step", mininterval=2.0, dynamic_ncols=True)
    started, cpu_started = time.monotonic() - run.elapsed_s, time.process_time() - run.cpu_s
    marks = [m for m in sorted(cfg.snapshot_cpu_minutes) if m * 60 > run.cpu_s]
    try:
        while run.step < cfg.steps:
            logs = objective.step(next(batches))
            if not all(np.isfinite(v) for v in logs.values()):
                msg = f"training diverged at step {run.step}: losses {logs}; lower the learning rates in optim"
                raise FloatingPointError(msg)
            run.step += 1
            for k, v in logs.items():
                run.losses[k] = [*run.losses[k][-(cfg.log_every - 1) :], v]
            bar.update(1)
            bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)
            run.elapsed_s, run.cpu_s = time.monotonic() - started, time.process_time() - cpu_started
            if run.step % cfg.log_every == 0:
                means = " ".join(f"{k}={np.mean(v):.4f}" for k, v in run.losses.items())
                rate = run.step / max(run.elapsed_s, 1e-9)
                bar.write(f"step {run.step}/{cfg.steps} {means} ({rate:.2f} step/s, {run.cpu_s / 60:.1f} CPU-min)")
            while marks and run.cpu_s >= marks[0] * 60:
                save_snapshot(cfg.out_dir, method, marks.pop(0), run.step, run.cpu_s, run.elapsed_s, cfg)
            stop = _out_of_budget(cfg, run)
            if run.step % cfg.checkpoint_every == 0 or run.step == cfg.steps or stop:
                _save(cfg, objective, run)
            if stop:
                bar.write(f"stopping at step {run.step}: {stop} reached")
                break
    finally:
        bar.close()


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or resume) a training run described by `cfg`; returns the registered reference and metrics."""
    device = resolve_device(cfg.device)
    if cfg.resume is None and (existing := list_checkpoints(cfg.out_dir)):
        msg = f"{cfg.out_dir} already holds checkpoints (newest {existing[-1].name}); pass resume=auto or a new out_dir"
        raise FileExistsError(msg)
    if cfg.resume is not None:
        _check_resume(cfg)
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    seed_everything(cfg.seed)
    method = create_method(cfg.method).to(device)
    method.load_pretrained()
    if cfg.epochs is None:
        objective = build_objective(method, cfg, device)  # before decoding: its errors come first
        source = open_source(cfg, method, device)  # decodes the training videos (or reads their features)
    else:  # the step count depends on how much footage there is
        source = open_source(cfg, method, device)
        cfg = cfg.model_copy(update={"steps": math.ceil(cfg.epochs * source.size / cfg.batch_size)})
        objective = build_objective(method, cfg, device)
    run = _Run()
    if cfg.resume is not None:
        _restore(cfg, objective, run)
    log.info("training %s on %s (%s): steps %d -> %d", cfg.method_name, device, source.kind, run.step, cfg.steps)
    stopped = _out_of_budget(cfg, run)
    if run.step < cfg.steps and stopped is None:  # a resumed run that is done only calibrates and registers
        _loop(cfg, method, objective, source.batches(run.step), run)
    train_metrics = {
        "losses": {k: float(np.mean(v)) for k, v in run.losses.items()},
        **_train_metrics(cfg, source, run.step, run.elapsed_s, run.cpu_s),
        "steps_per_s": round(run.step / max(run.elapsed_s, 1e-9), 3),
        "device": str(device) + (" (bf16 autocast)" if _uses_amp(cfg, device) else ""),
    }
    objective.finish()
    ref, metrics = finish_run(cfg, method, source, train_metrics, device)
    return TrainResult(ref=ref, metrics=metrics)


def _train_metrics(cfg: TrainConfig, source: DataSource, steps: int, elapsed_s: float, cpu_s: float) -> dict[str, Any]:
    """What a model card records of the training behind its weights, whether a run ended or a snapshot is registered."""
    return {
        "steps": steps,
        "batch_size": cfg.batch_size,
        "train_time_s": round(elapsed_s, 1),
        "train_cpu_s": round(cpu_s, 1),
        "data": source.kind,
        **source.summary(),
    }


def snapshot_method(config: MethodConfig, folder: Path, device: torch.device) -> AnomalyMethod:
    """The method `config` builds, holding the weights of the snapshot in `folder` (they must load into it)."""
    method = create_method(config).to(device)
    method.load_pretrained()
    weights = folder / SNAPSHOT_WEIGHTS
    load_state(method, load_file(str(weights), device=str(device)), source=str(weights))
    return method


def register_snapshot(cfg: TrainConfig, folder: Path, meta: dict[str, Any]) -> TrainResult:
    """Calibrate and register the weights of a snapshot (`load_snapshot_config` reads `cfg` and `meta`) exactly as
    the end of a run does, without training: a point of an accuracy-vs-minutes curve, or the run scored with other
    signals, becomes a model the service can serve. The weights must load into the method `cfg` builds."""
    device = resolve_device(cfg.device)
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    method = snapshot_method(cfg.method, folder, device)
    source = open_source(cfg, method, device)
    train_metrics = {
        **_train_metrics(cfg, source, meta["step"], meta["elapsed_s"], meta["cpu_s"]),
        "snapshot": str(folder),
        "device": str(device),
    }
    ref, metrics = finish_run(cfg, method, source, train_metrics, device)
    return TrainResult(ref=ref, metrics=metrics)
