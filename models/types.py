"""The one contract every method meets: what a window of frames looks like going in."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# Frames per snippet of the snippet-level methods (gcl, vadclip) and of their feature caches (METHODS.md B.0).
SNIPPET_FRAMES = 16


@dataclass(frozen=True)
class InputSpec:
    """What a method needs from the frames it scores.

    A *window* handed to a method has shape (B, context + N, C, H, W), float32 in [0, 1]; the method
    returns raw signals for the last N frames only. ``context`` frames are needed before the first
    frame that can be scored (FFP predicts frame t from t-4..t-1, so its context is 4).
    """

    height: int
    width: int
    channels: int  # 1 = grayscale, 3 = BGR (OpenCV order, as the published code reads frames)
    context: int  # frames before the first scored frame of a window
    fps: float | None = None  # frame rate the method was trained at; None = use the source rate

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0:
            msg = f"InputSpec size must be positive, got {self.height}x{self.width}"
            raise ValueError(msg)
        if self.channels not in (1, 3):
            msg = f"InputSpec channels must be 1 (gray) or 3 (BGR), got {self.channels}"
            raise ValueError(msg)
        if self.context < 0:
            msg = f"InputSpec context must be >= 0, got {self.context}"
            raise ValueError(msg)

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSpec:
        return cls(**data)
