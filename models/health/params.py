"""Settings of the camera health checks: one model per check (enabled, thresholds, durations), all in `HealthParams`.

The service's defaults are `Settings.health` (`VIGIL_HEALTH__<CHECK>__<FIELD>`); a camera overrides any of them
through the camera API (`health: {"frozen": {"min_s": 3}}`, merged over the defaults by `HealthParams.merge`).
`vigil eval`/`vigil score` use the same defaults, so offline flags are the ones a camera would raise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

CheckName = Literal["decode_error", "frozen", "blank", "covered", "blur", "moved", "ir_switch", "illumination"]
CONDITIONS: tuple[CheckName, ...] = (
    "decode_error",
    "frozen",
    "blank",
    "covered",
    "blur",
    "moved",
    "ir_switch",
    "illumination",
)
BITS: dict[str, int] = {name: 1 << i for i, name in enumerate(CONDITIONS)}
_SECONDS = 3600.0  # bound of every duration


def names_of(flags: int) -> list[CheckName]:
    """A flag bitmask -> the condition names it holds, in CONDITIONS order."""
    return [name for name in CONDITIONS if flags & BITS[name]]


class _Check(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True
    # seconds a frame problem must last before the camera's condition is raised (a health event); frames are
    # flagged, so never alertable, from the first one on
    raise_s: float = Field(default=0.0, ge=0, le=_SECONDS)
    clear_s: float = Field(default=1.0, ge=0, le=_SECONDS)  # seconds without it before the condition clears


class DecodeCheck(_Check):
    """Frames the decoder flagged (concealed errors: grey or green blocks) or that follow undecodable packets."""

    # Later frames predict from the damaged ones: they stay flagged until a key frame, at most this long.
    recover_s: float = Field(default=4.0, gt=0, le=_SECONDS)


class FrozenCheck(_Check):
    """The picture stopped changing: the camera repeats its last frame."""

    min_s: float = Field(default=1.0, gt=0, le=_SECONDS)  # no change for this long = frozen
    # share of a strided luma sample's pixels that changed by more than 2 grey levels, at or below which two frames
    # are the same picture (a repeated frame changes none; a few walkers far away change about 0.5%)
    max_change: float = Field(default=0.0005, ge=0, le=1)
    clear_s: float = Field(default=0.5, ge=0, le=_SECONDS)


class BlankCheck(_Check):
    """A uniform picture: black (no IR at night, a dead sensor), grey or green (a decoder that lost the stream)."""

    max_contrast: float = Field(default=4.0, ge=0, le=255)  # luma standard deviation at or below which it is blank
    raise_s: float = Field(default=0.2, ge=0, le=_SECONDS)
    clear_s: float = Field(default=0.5, ge=0, le=_SECONDS)


class CoveredCheck(_Check):
    """The lens is covered or sprayed: the detail is gone, and so is the view (its layout no longer correlates with the
    reference's) or its contrast. A blurred view keeps its layout and contrast."""

    max_texture: float = Field(default=0.3, gt=0, le=1)  # fine detail as a share of the reference's
    max_contrast: float = Field(default=0.35, gt=0, le=1)  # contrast as a share of the reference's
    min_match: float = Field(default=0.5, ge=-1, le=1)  # layout correlation with the reference's below which it is gone
    raise_s: float = Field(default=0.5, ge=0, le=_SECONDS)


class BlurCheck(_Check):
    """Severe blur or defocus: the view is where it was, its fine detail is gone."""

    max_texture: float = Field(default=0.35, gt=0, le=1)  # fine detail as a share of the reference's
    raise_s: float = Field(default=1.0, ge=0, le=_SECONDS)


class MovedCheck(_Check):
    """The view no longer matches the camera's reference view (moved, turned, a PTZ camera panning)."""

    # Share of the coarse layout's cells off the reference view (each by more than 4 of its usual deviations, after
    # the light's gain and offset) at or above which the view moved; an object passing covers far less
    min_off: float = Field(default=0.4, gt=0, le=1)
    raise_s: float = Field(default=1.0, ge=0, le=_SECONDS)
    # A view moved this long is the camera's new view: it becomes the reference and the camera relearns its
    # calibration (service.calibration.request_learning)
    relearn_s: float = Field(default=30.0, gt=0, le=86_400)


class IrSwitchCheck(_Check):
    """The picture switched between colour and IR/grey (the calibration's scene profile switches with it).

    The chroma bounds are the calibration's (`calibration.mono_below`, `calibration.colour_above`)."""

    # chroma on the other side this long = the camera switched (frames are flagged from the first one)
    raise_s: float = Field(default=0.6, ge=0, le=_SECONDS)
    clear_s: float = Field(default=1.5, ge=0, le=_SECONDS)  # frames held back after the switch while it settles


class IlluminationCheck(_Check):
    """A sudden global illumination change (lights switched on or off)."""

    # mean luma change (grey levels) against the last second's, or away from the reference view's level
    max_jump: float = Field(default=30.0, gt=0, le=255)
    # Lights changed this long are the camera's new normal: the lit view becomes the reference and the camera
    # relearns its calibration
    relearn_s: float = Field(default=30.0, gt=0, le=86_400)


class HealthParams(BaseModel):
    """Every health check of a camera."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True  # False: no check runs (chroma is still measured for the scene profile)
    reference_s: float = Field(default=4.0, gt=0, le=_SECONDS)  # seconds of healthy frames the reference view needs
    adapt_s: float = Field(default=600.0, gt=0, le=30 * 86_400)  # time constant of the reference following slow change
    decode_error: DecodeCheck = DecodeCheck()
    frozen: FrozenCheck = FrozenCheck()
    blank: BlankCheck = BlankCheck()
    covered: CoveredCheck = CoveredCheck()
    blur: BlurCheck = BlurCheck()
    moved: MovedCheck = MovedCheck()
    ir_switch: IrSwitchCheck = IrSwitchCheck()
    illumination: IlluminationCheck = IlluminationCheck()

    @classmethod
    def merge(cls, defaults: BaseModel, overrides: dict[str, Any] | None) -> HealthParams:
        """`defaults` (Settings.health or a HealthParams) with a camera's overrides (check -> field -> value, None =
        the default) merged over it; raises pydantic's ValidationError naming the field."""
        data = defaults.model_dump(include=set(cls.model_fields))
        for key, value in (overrides or {}).items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **{k: v for k, v in value.items() if v is not None}}
            elif value is not None:
                data[key] = value
        return cls.model_validate(data)


def _partial(model: type[BaseModel], name: str) -> type[BaseModel]:
    """`model` with every field optional (None = the default) and its bounds kept; nested models become partial too.
    A camera's overrides are validated by it: an unknown check or field, or a value out of bounds, is a 422 naming
    the field."""
    fields: dict[str, Any] = {}
    for key, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields[key] = (_partial(annotation, f"{annotation.__name__}Overrides") | None, None)
            continue
        bounded: Any = Annotated[(annotation, *info.metadata)] if info.metadata else annotation
        fields[key] = (bounded | None, None)
    config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    partial: type[BaseModel] = create_model(name, __config__=config, __doc__=model.__doc__, **fields)
    return partial


if TYPE_CHECKING:

    class HealthOverrides(BaseModel):
        """A camera's health settings over the service's: HealthParams with every field optional (None = default)."""

else:
    HealthOverrides = _partial(HealthParams, "HealthOverrides")
