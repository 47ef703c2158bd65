"""The model card: the JSON that describes a registered model version well enough to rebuild it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CARD_SCHEMA_VERSION = 1

# Numeric precision of a forward pass: plain fp32, or autocast to bf16 / fp16 (models.inference.autocast).
Precision = Literal["fp32", "bf16", "fp16"]


class SignalCalibration(BaseModel):
    """Statistics of one raw signal on held-out normal footage (online protocol of METHODS.md)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    center: float  # median on normal validation frames
    scale: float = Field(gt=0)  # 1.4826 * MAD (robust std), floored so it is never 0
    weight: float = 1.0  # weight of the standardised signal in the combined score


class Calibration(BaseModel):
    """How raw signals become a score in [0, 1] that means the same on every camera.

    combined = sum_i weight_i * (raw_i - center_i) / scale_i, smoothed causally with an EMA, then mapped
    through the empirical CDF of the combined value on normal validation frames (`quantiles` at
    `levels`), with exponential tails beyond the observed range so the mapping stays strictly
    increasing (ranking, hence AUC, is preserved). A score of 0.99 is then exceeded by about 1% of
    normal frames.
    """

    model_config = ConfigDict(extra="forbid")
    signals: list[SignalCalibration]
    ema_alpha: float = Field(default=0.5, gt=0, le=1)  # weight of the newest frame; 1 = no smoothing
    levels: list[float]
    quantiles: list[float]
    num_frames: int = Field(ge=1)  # normal validation frames the statistics came from
    source: str = ""  # which videos, e.g. "ped2 training videos 14-16 (held out)"
    # The held-out frames' combined (standardised, unsmoothed) values in time order, cut into their videos, and
    # the footage's frame rate: a camera that has not learned its own reference yet is scored against these
    # (models.calibration.camera.card_reference), with the camera's smoothing. Empty in cards of older versions.
    normal_values: list[float] = Field(default_factory=list)
    normal_segments: list[int] = Field(default_factory=list)
    normal_fps: float | None = Field(default=None, gt=0)


class ModelCard(BaseModel):
    """Everything needed to rebuild and trust a model version: method config, input spec, calibration, metrics."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int = CARD_SCHEMA_VERSION
    name: str
    version: str = ""  # set by the store on registration
    method: str
    config: dict[str, Any]
    input_spec: dict[str, Any]
    signal_names: list[str]
    calibration: Calibration | None = None
    # The precision the calibration's raw signals were computed in. Every scorer of this version (the worker,
    # `vigil score`, `vigil eval`, batch jobs) runs in it: bf16 moves calibrated scores. Cards without it: fp32.
    precision: Precision = "fp32"
    metrics: dict[str, Any] = Field(default_factory=dict)
    data_fingerprint: str = ""
    code_version: str = ""
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    weights_sha256: str = ""
    notes: str = ""
