"""`TrainConfig`: the YAML a training run is described by, `${ENV}` expansion and dotted `key=value` overrides."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from models.base import MethodConfig
from models.registry import get_method
from models.train.objectives import DataKind, OptimConfig, get_objective

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
    # Snippet-feature methods (gcl, vadclip): a split YAML or a name under models/splits/ (e.g. ped2_weak) says which
    # videos train (vadclip: with video-level labels; gcl: none), calibrate and test; None = frame clips of the
    # training videos, the last num_val held out for calibration.
    split: str | None = None
    features: Path | None = None  # with a split: a feature cache (`vigil features extract`); None = encode frames


class RegisterConfig(_Section):
    enabled: bool = True
    name: str | None = None  # model name in the registry; None = the method name
    registry: Path | None = None  # None = the service's store root (VIGIL_STORE__ROOT), filled in by the CLI


class TrainConfig(_Section):
    """One training run. `method` is validated by the registered method's own config class."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    method: SerializeAsAny[MethodConfig]
    data: DataConfig
    # The objective's own optimiser settings (models/train/objectives/<method>.py), e.g. ffp: generator_lr,
    # discriminator_lr; dast: lr. Validated by that class, so a key of another method's objective is an error.
    optim: SerializeAsAny[OptimConfig]
    steps: int = Field(default=1000, ge=1)
    # Passes over the training data instead of `steps`: steps = ceil(epochs * items / batch_size), items = the data
    # source's clips, snippets or videos (for footage of any length, e.g. a memory method's one pass: epochs=1).
    epochs: float | None = Field(default=None, gt=0)
    max_minutes: float | None = Field(default=None, gt=0)  # stop early once training took this long (wall clock)
    # Stop once the training steps used this much CPU time (the process's, summed over resumed sessions): a budget
    # that does not depend on what else runs on the machine. Data decoding, calibration and registration are extra.
    max_cpu_minutes: float | None = Field(default=None, gt=0)
    # Keep the method's weights when the steps' CPU time passes each of these marks (out_dir/snapshots/), for
    # curves of accuracy against training time (scripts/curve.py); checkpoints rotate, snapshots stay.
    snapshot_cpu_minutes: tuple[float, ...] = ()
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

    @model_validator(mode="before")
    @classmethod
    def _optim(cls, data: Any) -> Any:
        """`optim` by the objective of the config's method; missing = that objective's defaults."""
        if not isinstance(data, dict):
            return data
        method = data.get("method")
        name = method.get("name") if isinstance(method, dict) else getattr(method, "name", None)
        optim = data.get("optim", {})
        if name is None or isinstance(optim, OptimConfig):
            return data
        try:
            spec = get_objective(str(name))
        except KeyError:
            return data  # the method validator names what is wrong
        if not isinstance(optim, dict):
            msg = f"optim must be a mapping of {name}'s optimiser settings: {', '.join(spec.optim.model_fields)}"
            raise ValueError(msg)  # pydantic turns a ValueError (not a TypeError) into a validation error
        return {**data, "optim": spec.optim.model_validate(optim)}

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: Any) -> MethodConfig:
        return method_config(value)

    @model_validator(mode="after")
    def _data_fits_the_method(self) -> TrainConfig:
        spec = get_objective(self.method_name)
        if not isinstance(self.optim, spec.optim):
            kind = type(self.optim).__name__
            msg = f"optim holds {kind} settings but {self.method_name} trains with {spec.optim.__name__}"
            raise ValueError(msg)  # pydantic turns a ValueError (not a TypeError) into a validation error
        self.data_kind  # noqa: B018 (raises for a method that cannot train on this data)
        if self.data.features is not None and self.data.split is None:
            msg = "data.features is a feature cache of a split's videos: set data.split too (e.g. data.split=ped2_weak)"
            raise ValueError(msg)
        return self

    @property
    def method_name(self) -> str:
        return str(self.method.name)  # type: ignore[attr-defined]

    @property
    def data_kind(self) -> DataKind:
        """What the run trains on: frame clips without a split, else the objective's split data (snippets, videos)."""
        spec, name = get_objective(self.method_name), self.method_name
        if self.data.split is None:
            if "clips" not in spec.data:
                msg = (
                    f"{name} trains on a split's videos with video-level labels, not on frame clips: "
                    "set data.split (e.g. data.split=ped2_weak) and data.features (a feature cache)"
                )
                raise ValueError(msg)
            return "clips"
        split_kinds = [k for k in spec.data if k != "clips"]
        if not split_kinds:
            msg = f"{name} trains on frame clips of normal videos (data.root's training split): remove data.split"
            raise ValueError(msg)
        return split_kinds[0]


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
        method_name = (data.get("method") or {}).get("name")
        if name == "method":
            method_fields = get_method(str(method_name)).config_cls.model_fields if method_name else {}
            keys += ["method.name", "method.preset", *(f"method.{k}" for k in method_fields if k != "name")]
        elif name == "optim":
            optim_fields = get_objective(str(method_name)).optim.model_fields if method_name else {}
            keys += [f"optim.{k}" for k in optim_fields]
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
            msg = f"override {item!r} must look like key=value, e.g. steps=500 or method.size=96"
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


# What a snapshot's registration may change: settings of how the trained weights are scored (they must still load
# into the method), where and under which name it is registered, and the compute it calibrates with.
SNAPSHOT_OVERRIDABLE = ("method.", "register.", "device", "num_threads")


def load_snapshot_config(folder: str | Path, overrides: list[str] | None = None) -> tuple[TrainConfig, dict[str, Any]]:
    """The training config a snapshot (`<out_dir>/snapshots/cpu_*min/`) was taken with, with `overrides` applied,
    and the snapshot's metadata (step, cpu_s, elapsed_s). Only SNAPSHOT_OVERRIDABLE keys may change: the data it
    was trained and is calibrated on stays the run's."""
    from models.train.checkpoint import SNAPSHOT_FILE

    meta_path = Path(folder) / SNAPSHOT_FILE
    if not meta_path.is_file():
        msg = f"{folder} is not a snapshot (no {SNAPSHOT_FILE}); snapshots are under <out_dir>/snapshots/"
        raise FileNotFoundError(msg)
    meta = json.loads(meta_path.read_text())
    fixed = [o for o in overrides or [] if not o.partition("=")[0].startswith(SNAPSHOT_OVERRIDABLE)]
    if fixed:
        msg = (
            f"a snapshot keeps its run's data and schedule; cannot change {', '.join(fixed)} "
            f"(only {', '.join(k + '*' if k.endswith('.') else k for k in SNAPSHOT_OVERRIDABLE)})"
        )
        raise ValueError(msg)
    return TrainConfig.model_validate(apply_overrides(meta["config"], overrides or [])), meta


def one_line(error: ValidationError) -> str:
    """A pydantic ValidationError as one line: `where: what` per error, joined by '; '."""
    parts = []
    for err in error.errors():
        where = ".".join(str(x) for x in err["loc"])
        what = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {what}" if where else what)
    return "; ".join(parts)
