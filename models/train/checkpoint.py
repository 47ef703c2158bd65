"""Resumable checkpoints without pickle: tensors in safetensors, everything else in JSON; and snapshots.

A checkpoint is a directory `<out_dir>/checkpoints/step_NNNNNNN/` holding `tensors.safetensors` and
`state.json`; `state.json` is written last, so a directory without it is an interrupted save and is ignored.
A snapshot (`<out_dir>/snapshots/cpu_NNNNN.NNmin/`) is the method's weights alone (`method.safetensors`) and
`snapshot.json` (step, CPU and wall seconds, the run's config), kept when checkpoints rotate: curves of
accuracy against training time are drawn from them (scripts/curve.py).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from models.errors import IncompatibleCheckpointError

if TYPE_CHECKING:
    from pydantic import BaseModel

log = logging.getLogger(__name__)

TENSORS_FILE = "tensors.safetensors"
STATE_FILE = "state.json"
SNAPSHOT_WEIGHTS = "method.safetensors"
SNAPSHOT_FILE = "snapshot.json"
_PREFIX = "step_"


def encode(obj: Any, tensors: dict[str, torch.Tensor], path: str = "t") -> Any:
    """Nested state (dicts, lists, tuples, scalars, tensors) -> JSON tree; tensors go to `tensors` by path."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().contiguous()
        return {"__tensor__": path}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: encode(v, tensors, f"{path}.{k}") for k, v in obj.items()}
        # Optimizer states key params by int: keep the key types with a list of pairs.
        return {"__pairs__": [[k, encode(v, tensors, f"{path}.{i}")] for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    msg = f"cannot store {type(obj).__name__} at {path} in a checkpoint; only tensors, containers and scalars"
    raise TypeError(msg)


def decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `encode`."""
    if isinstance(obj, list):
        return [decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__pairs__" in obj:
        return {k: decode(v, tensors) for k, v in obj["__pairs__"]}
    if "__tuple__" in obj:
        return tuple(decode(v, tensors) for v in obj["__tuple__"])
    if "__ndarray__" in obj:
        return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
    return {k: decode(v, tensors) for k, v in obj.items()}


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out_dir: Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write `state` for `step`; keep only the newest `keep` complete checkpoints."""
    folder = out_dir / "checkpoints" / f"{_PREFIX}{step:07d}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    tensors: dict[str, torch.Tensor] = {}
    tree = encode(state, tensors)
    save_file(tensors, str(folder / TENSORS_FILE))
    tmp = folder / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(tree))
    tmp.replace(folder / STATE_FILE)  # the commit point of the checkpoint
    for old in list_checkpoints(out_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def list_checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoints under `out_dir`, oldest first."""
    root = out_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(_PREFIX) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: p.name)


def resolve_resume(resume: str, out_dir: Path) -> Path:
    """`auto` -> the newest checkpoint under out_dir; else the given checkpoint directory (or a run's out_dir)."""
    candidate = out_dir if resume == "auto" else Path(resume)
    if (candidate / STATE_FILE).is_file() or (candidate / TENSORS_FILE).exists():
        return candidate
    found = list_checkpoints(candidate)
    if not found:
        msg = f"no checkpoint to resume from in {candidate}; expected {candidate}/checkpoints/{_PREFIX}NNNNNNN/"
        raise IncompatibleCheckpointError(msg)
    return found[-1]


def read_checkpoint_config(folder: Path) -> dict[str, Any]:
    """The training config a checkpoint was written with, from its state.json alone (no tensors are read)."""
    try:
        tree = json.loads((folder / STATE_FILE).read_text())
        config = tree["config"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        msg = f"checkpoint {folder} is corrupt or incomplete: cannot read {STATE_FILE} ({e}); resume from another one"
        raise IncompatibleCheckpointError(msg) from e
    if not isinstance(config, dict) or not isinstance(config.get("method"), dict):
        msg = f"checkpoint {folder} is corrupt: its {STATE_FILE} holds no method config"
        raise IncompatibleCheckpointError(msg)
    return config


def save_snapshot(
    out_dir: Path, method: torch.nn.Module, minutes: float, step: int, cpu_s: float, elapsed_s: float, cfg: BaseModel
) -> Path:
    """Keep the method's weights at `minutes` of training CPU time (never rotated)."""
    folder = out_dir / "snapshots" / f"cpu_{minutes:08.2f}min"
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in method.state_dict().items()}
    save_file(state, str(folder / SNAPSHOT_WEIGHTS))
    meta = {
        "cpu_minutes_mark": minutes,
        "step": step,
        "cpu_s": round(cpu_s, 2),
        "elapsed_s": round(elapsed_s, 2),
        "config": cfg.model_dump(mode="json", by_alias=True),
    }
    (folder / SNAPSHOT_FILE).write_text(json.dumps(meta, indent=2))
    log.info("snapshot at %.1f CPU-min (step %d): %s", minutes, step, folder)
    return folder


def list_snapshots(out_dir: Path) -> list[Path]:
    """Complete snapshots under `out_dir`, earliest first."""
    root = out_dir / "snapshots"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / SNAPSHOT_FILE).is_file() and (p / SNAPSHOT_WEIGHTS).is_file())


def load_checkpoint(folder: Path) -> dict[str, Any]:
    """Read a checkpoint directory; anything unreadable is an IncompatibleCheckpointError naming the file."""
    state_path, tensors_path = folder / STATE_FILE, folder / TENSORS_FILE
    try:
        tree = json.loads(state_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        msg = f"checkpoint {folder} is corrupt or incomplete: cannot read {STATE_FILE} ({e}); resume from another one"
        raise IncompatibleCheckpointError(msg) from e
    try:
        tensors = load_file(str(tensors_path))
    except (SafetensorError, OSError, ValueError) as e:
        msg = f"checkpoint {folder} is corrupt: cannot read {TENSORS_FILE} ({e}); resume from another one"
        raise IncompatibleCheckpointError(msg) from e
    try:
        state = decode(tree, tensors)
    except KeyError as e:
        msg = f"checkpoint {folder} is corrupt: {STATE_FILE} refers to tensor {e} missing from {TENSORS_FILE}"
        raise IncompatibleCheckpointError(msg) from e
    if not isinstance(state, dict) or "step" not in state or "config" not in state:
        msg = f"checkpoint {folder} is corrupt: {STATE_FILE} lacks 'step' or 'config'"
        raise IncompatibleCheckpointError(msg)
    return state
