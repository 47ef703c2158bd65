"""Name -> method registry: `@register_method` records a config class and a builder under an explicit name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from models.errors import DuplicateMethodError, UnknownMethodError

if TYPE_CHECKING:
    from models.base import AnomalyMethod

ConfigT = TypeVar("ConfigT", bound=BaseModel)
Builder = Callable[[Any], "AnomalyMethod"]


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its name, pydantic config class and the builder that makes the nn.Module, plus what
    `vigil methods` shows: the paper it follows and the pretrained parts it uses (and where they come from)."""

    name: str
    config_cls: type[BaseModel]
    builder: Builder
    paper: str = ""
    pretrained: tuple[str, ...] = ()
    localizes: bool = False  # the built method has a per-pixel localisation map (`AnomalyMethod.localizes`)

    def make_config(self, preset: str | None = None, **overrides: Any) -> BaseModel:
        """Build a config from a named preset (a classmethod on the config class) plus overrides.

        Overrides set to None mean "use the default" (timm's create_model rule).
        """
        overrides = {k: v for k, v in overrides.items() if v is not None}
        base: dict[str, Any] = {}
        if preset is not None:
            presets = getattr(self.config_cls, "PRESETS", ())
            if preset not in presets:
                msg = f"method {self.name!r} has no preset {preset!r}; valid presets: {', '.join(presets) or 'none'}"
                raise ValueError(msg)
            base = getattr(self.config_cls, preset)().model_dump()
        base.update(overrides)
        base["name"] = self.name
        return self.config_cls.model_validate(base)


_METHODS: dict[str, MethodSpec] = {}


def register_method(
    name: str,
    config: type[ConfigT],
    paper: str = "",
    pretrained: tuple[str, ...] = (),
    localizes: bool = False,
) -> Callable[[Callable[[ConfigT], AnomalyMethod]], Builder]:
    """Decorator for a builder `fn(config) -> AnomalyMethod`; a duplicate name is an error."""

    def decorate(builder: Callable[[ConfigT], AnomalyMethod]) -> Builder:
        if name in _METHODS:
            msg = f"method {name!r} is registered twice ({_METHODS[name].builder.__module__} and {builder.__module__})"
            raise DuplicateMethodError(msg)
        _METHODS[name] = MethodSpec(name, config, builder, paper, pretrained, localizes)
        return builder

    return decorate


def _ensure_loaded() -> None:
    # Importing the package registers every method (explicit imports in models/methods/__init__.py).
    import models.methods  # noqa: F401


def list_methods() -> list[str]:
    _ensure_loaded()
    return sorted(_METHODS)


def get_method(name: str) -> MethodSpec:
    _ensure_loaded()
    try:
        return _METHODS[name]
    except KeyError:
        msg = f"unknown method {name!r}; valid names: {', '.join(sorted(_METHODS))}"
        raise UnknownMethodError(msg) from None


def create_method(config: BaseModel | dict[str, Any] | str, **overrides: Any) -> AnomalyMethod:
    """Build a method from a config object, a config dict with a `name`, or a bare name (default config)."""
    if isinstance(config, str):
        spec = get_method(config)
        cfg = spec.make_config(**overrides)
    elif isinstance(config, dict):
        data = dict(config)
        if "name" not in data:
            msg = f"method config needs a 'name' field; valid names: {', '.join(list_methods())}"
            raise ValueError(msg)
        spec = get_method(str(data["name"]))
        data.update({k: v for k, v in overrides.items() if v is not None})
        cfg = spec.config_cls.model_validate(data)
    else:
        spec = get_method(str(getattr(config, "name", "")))
        cfg = config.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    return spec.builder(cfg)
