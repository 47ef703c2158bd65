"""`AnomalyMethod`: the base every registered method derives from (window in, per-frame raw signals out)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from models.types import InputSpec


class MethodConfig(BaseModel):
    """Base for method configs: unknown keys are errors, so a YAML typo fails at load time."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    PRESETS: ClassVar[tuple[str, ...]] = ()  # names of classmethods returning a config, e.g. ("paper", "small", "tiny")

    @property
    def input_spec(self) -> InputSpec:
        """What the method built from this config takes (known without building it, for `vigil methods`)."""
        raise NotImplementedError


class AnomalyMethod(nn.Module):
    """A scoring method.

    Subclasses set ``config``, ``input_spec`` and ``signal_names`` and implement ``score``. Every raw
    signal is oriented so that larger means more anomalous (e.g. negative PSNR, not PSNR).
    Training objectives live in `models/train/`, not here.
    """

    config: MethodConfig
    input_spec: InputSpec
    signal_names: tuple[str, ...]
    # True when the method has a per-pixel error and implements `score_with_maps` (registered with localizes=True;
    # tests/models/test_method_contract.py checks the two agree). Methods without one say so by leaving it False.
    localizes: ClassVar[bool] = False

    def score(self, window: torch.Tensor) -> torch.Tensor:
        """Raw anomaly signals for the scored frames of a window.

        Args:
            window: (B, context + N, C, H, W) float32 in [0, 1], channels/size per `input_spec`.

        Returns:
            (B, N, S) float32, S = len(signal_names); larger = more anomalous.
        """
        raise NotImplementedError

    def score_with_maps(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw signals and localisation maps of the scored frames of a window, from the same forward pass.

        Args:
            window: as for `score`.

        Returns:
            (B, N, S) float32 signals, equal to `score(window)`, and (B, N, H, W) float32 maps at the input
            resolution, >= 0, larger = more anomalous there (e.g. the squared prediction error, averaged over
            channels). Only methods with `localizes` implement it.
        """
        msg = f"{type(self).__name__} has no localisation map (localizes=False)"
        raise NotImplementedError(msg)

    def localize(self, window: torch.Tensor) -> torch.Tensor:
        """(B, context + N, C, H, W) -> (B, N, H, W) localisation maps (see `score_with_maps`)."""
        return self.score_with_maps(window)[1]

    def load_pretrained(self) -> None:
        """Put the pretrained parts the config names by path (a frozen backbone's weights) into the module; the
        trainer calls it once before training. Registered versions carry those weights already. Default: none."""

    def fit_reference(self, windows: Iterable[torch.Tensor]) -> None:
        """Fit what the method keeps of the camera's normal footage beside its weights (e.g. FFP's per-location
        error levels for its `local` signal), from windows (B, context + N, C, H, W) of the training videos; the
        trainer calls it before calibrating, and it lands in the registered weights. Default: nothing to fit (the
        windows are not read)."""
        del windows

    def calibration_weights(self, raw: np.ndarray) -> list[float] | None:
        """Weights of the standardised signals in the combined score, chosen from (N, S) raw signals of normal
        validation frames (never from test labels). None = equal weights; multi-signal methods override this."""
        del raw
        return None

    def check_window(self, window: torch.Tensor) -> int:
        """Validate a window against the input spec; return N, the number of frames it scores."""
        spec = self.input_spec
        if window.ndim != 5:
            msg = f"a window must be (B, T, C, H, W), got shape {tuple(window.shape)}"
            raise ValueError(msg)
        _, t, c, h, w = window.shape
        if (c, h, w) != (spec.channels, spec.height, spec.width):
            msg = (
                f"window frames are {c}x{h}x{w} (C x H x W) but this method expects "
                f"{spec.channels}x{spec.height}x{spec.width}"
            )
            raise ValueError(msg)
        if t <= spec.context:
            msg = f"a window needs more than {spec.context} context frames, got {t}"
            raise ValueError(msg)
        return t - spec.context


class SnippetHistoryMethod(AnomalyMethod):
    """A method whose score for a frame also depends on features of earlier snippets of the same stream.

    VadCLIP's LGT-Adapter reads a sequence of snippet features; live, the newest element is the snippet of the
    `snippet_frames` frames ending at the scored frame t and the earlier ones end at t - k * snippet_frames.
    `score(window)` builds that history from the window alone; the worker keeps a per-camera buffer of past
    snippet features in Redis and calls `snippet_features` and `score_history` itself, so the history reaches
    back beyond one window (up to `history_snippets` elements, the newest included).
    """

    snippet_frames: int  # stride between history elements, in frames
    history_snippets: int  # longest sequence scored, the newest snippet included
    feature_dim: int  # D of a snippet feature

    def snippet_features(self, window: torch.Tensor) -> torch.Tensor:
        """(B, context + N, C, H, W) -> (B, N, D): the feature of the snippet ending at each scored frame."""
        raise NotImplementedError

    def score_history(self, sequences: list[torch.Tensor]) -> torch.Tensor:
        """Sequences of (L_i, D) snippet features, oldest first (1 <= L_i <= history_snippets) -> (len, S)
        raw signals of each sequence's last (newest) snippet."""
        raise NotImplementedError

    def history_positions(self, position: int, device: torch.device | None = None) -> torch.Tensor:
        """Rows of position's history in a run of per-frame features that starts at row 0: position,
        position - snippet_frames, ... down to 0, at most history_snippets of them, oldest first."""
        rows = torch.arange(position, -1, -self.snippet_frames, device=device)
        return rows[: self.history_snippets].flip(0)

    def score(self, window: torch.Tensor) -> torch.Tensor:
        n = self.check_window(window)
        features = self.snippet_features(window)  # (B, N, D)
        index = [self.history_positions(i, features.device) for i in range(n)]  # history inside the window
        sequences = [features[b, idx] for b in range(features.shape[0]) for idx in index]
        return self.score_history(sequences).view(features.shape[0], n, -1).float()


class SnippetFeatureMethod:
    """Mixin of the methods that score features of a frozen snippet backbone (gcl, vadclip), so they can also
    train and be evaluated on a feature cache (`vigil features extract`) instead of frames.

    Features of a video are one (D,) vector per non-overlapping snippet of `snippet_frames` frames, made by the
    backbone named `feature_backbone` (a cache made by another backbone, or other weights, is refused).
    """

    snippet_frames: int
    feature_dim: int
    signal_names: tuple[str, ...]

    @property
    def feature_backbone(self) -> str:
        """The backbone a feature cache must have been made with (`FeatureIndex.backbone`)."""
        raise NotImplementedError

    @property
    def backbone_weights(self) -> str | None:
        """The weights file of that backbone, when the config names one (its sha256 must match the cache's)."""
        raise NotImplementedError

    def encode_snippets(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) prepared frames in [0, 1] -> (N // snippet_frames, D) features of consecutive snippets."""
        raise NotImplementedError

    def feature_signals(self, features: torch.Tensor, causal: bool) -> torch.Tensor:
        """(S, D) features of a video's consecutive snippets -> (S, num_signals) raw signals per snippet.

        causal: snippet j sees snippets <= j only, as live; otherwise the published (non-causal) test protocol.
        """
        raise NotImplementedError
