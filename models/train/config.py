"""`TrainConfig`: the YAML a training run is described by, `${ENV}` expansion and dotted `key=value` overrides."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, field_validator

from models.base import MethodConfig
from models.registry import get_method

_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Section):
    root: Path  # dataset root (models.data.open_dataset layouts); its *training* split is used
    num_val: int = Field(default=2, ge=1)  # training videos held out for calibration, never the test set
    # Frame rate of the footage; None = the videos' own (frame folders carry none and read as 25 fps). It turns the
    # held-out frames into hourly rates for the default camera reference (models.calibration.camera).
    fps: float | None = Field(default=None, gt=0, le=240)
    # Weakly supervised methods (vadclip): a split YAML or a name under models/splits/ (e.g. ped2_weak) says which
    # videos train (with video-level labels), calibrate and test; None = the unsupervised frame-clip route.
    split: str | None = None
    features: Path | None = None  # a feature cache (`vigil features extract`); None = encode with the backbone


class OptimConfig(_Section):
    # FFP on Ped2 (gray): Adam, G 1e-4 -> 1e-5 and D 1e-5 -> 1e-6 at step 7000 (METHODS.md section (a)).
    lr_g: float = Field(default=1e-4, gt=0)
    lr_d: float = Field(default=1e-5, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)  # TF Adam defaults, as the official code uses
    lr_drop_step: int | None = Field(default=7000, ge=1)  # None = constant learning rate
    lr_drop_factor: float = Field(default=0.1, gt=0, le=1)


class RegisterConfig(_Section):
    enabled: bool = True
    name: str | None = None  # model name in the registry; None = the method name
    registry: Path | None = None  # None = the service's store root (VIGIL_STORE__ROOT), filled in by the CLI


class TrainConfig(_Section):
    """One training run. `method` is validated by the registered method's own config class."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    method: SerializeAsAny[MethodConfig]
    data: DataConfig
    optim: OptimConfig = OptimConfig()
    steps: int = Field(default=1000, ge=1)
    max_minutes: float | None = Field(default=None, gt=0)  # stop early once training took this long (CPU budgets)
    batch_size: int = Field(default=4, ge=1)
    seed: int = 0
    num_workers: int = Field(default=0, ge=0)  # DataLoader workers; frames are in memory, 0 is usually fine
    num_threads: int | None = Field(default=None, ge=1)  # torch CPU threads; 1 is faster on an oversubscribed box
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = CUDA when available (with AMP), else CPU
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    log_every: int = Field(default=50, ge=1)
    checkpoint_every: int = Field(default=500, ge=1)
    keep_checkpoints: int = Field(default=2, ge=1)
    out_dir: Path = Path("runs/train")
    resume: str | None = None  # a checkpoint directory, or "auto" = the newest one under out_dir/checkpoints
    # `register` would shadow BaseModel.register (a warning pydantic raises), hence the alias.
    registration: RegisterConfig = Field(default=RegisterConfig(), alias="register")

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: Any) -> MethodConfig:
        return method_config(value)


def method_config(value: Any) -> MethodConfig:
    """A dict with `name` (and optionally `preset`, whose values the other keys override) -> the method's config."""
    if isinstance(value, MethodConfig):
        return value
    if not isinstance(value, dict) or "name" not in value:
        msg = "method must be a mapping with a 'name' (e.g. {name: ffp, preset: small})"
        raise ValueError(msg)
    data = dict(value)
    spec = get_method(str(data.pop("name")))
    preset = data.pop("preset", None)
    config = spec.make_config(preset, **data)
    if not isinstance(config, MethodConfig):
        msg = f"method {spec.name!r} has a config class that does not derive from MethodConfig"
        raise TypeError(msg)
    return config


def expand_env(value: Any) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string of a YAML tree; unset VAR without default = error."""
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if found is not None and found != "":
            return found
        if default is None:
            msg = f"environment variable {name} is not set; set it or write ${{{name}:-default}} in the config"
            raise ValueError(msg)
        return default

    return _ENV_RE.sub(substitute, value)


def valid_keys(data: dict[str, Any]) -> list[str]:
    """Every dotted key an override may set, given the raw config (the method's keys depend on its name)."""
    keys: list[str] = []
    for field_name, field in TrainConfig.model_fields.items():
        name, annotation = field.alias or field_name, field.annotation
        if name == "method":
            method_name = (data.get("method") or {}).get("name")
            method_fields = get_method(str(method_name)).config_cls.model_fields if method_name else {}
            keys += ["method.name", "method.preset", *(f"method.{k}" for k in method_fields if k != "name")]
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += [f"{name}.{k}" for k in annotation.model_fields]
        else:
            keys.append(name)
    return keys


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` strings (value parsed with yaml.safe_load) to a raw config dict; unknown keys are errors."""
    data = dict(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            msg = f"override {item!r} must look like key=value, e.g. steps=500 or optim.lr_g=2e-4"
            raise ValueError(msg)
        allowed = valid_keys(data)
        if key not in allowed:
            msg = f"unknown config key {key!r}; valid keys: {', '.join(allowed)}"
            raise ValueError(msg)
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        node[leaf] = parse_value(raw)
    return data


def parse_value(raw: str) -> Any:
    """YAML scalar, except that `2e-4` (a string to YAML 1.1, which wants `2.0e-4`) becomes a float."""
    value = yaml.safe_load(raw)
    if isinstance(value, str) and _FLOAT_RE.fullmatch(value):
        return float(value)
    return value


def load_train_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML file, expand `${ENV}`, apply overrides and validate."""
    path = Path(path)
    if not path.is_file():
        msg = f"training config {path} does not exist; examples are in models/configs/"
        raise FileNotFoundError(msg)
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        msg = f"{path} must hold a YAML mapping with at least 'method' and 'data'"
        raise ValueError(msg)
    data = apply_overrides(expand_env(data), overrides or [])
    return TrainConfig.model_validate(data)
