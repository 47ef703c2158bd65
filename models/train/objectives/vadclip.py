"""VadCLIP training on snippet-feature sequences with video-level labels only (METHODS.md (d)).

Losses per step, on a batch of videos (B, L, dim) with validity (B, L) and class index per video (0 = normal):
- C-branch (top-k MIL BCE): per video, the mean of its k = floor(len / 16) + 1 highest snippet probabilities,
  BCE against "anomalous or not".
- A-branch (MIL-Align): per class, the mean of the top-k alignment logits over time -> (B, C) logits ->
  cross-entropy with the video's class.
- Text separation: mean over anomaly classes of |cos(text_normal, text_class)|, times `separation_weight`
  (VadCLIP: 0.1 over 13 classes for UCF-Crime).
Learnable prompts (a 77-slot token table, N(0, 0.01)) go through the frozen CLIP text tower: slot 0 = SOT,
`prompt_prefix` learnable slots, the class-name tokens, `prompt_postfix` learnable slots, then EOT, read out at
EOT. AdamW (weight decay 0.01), MultiStepLR x0.1 at the given fractions of the run (UCF: epochs 4 and 8 of 10).
Each batch is a list of training videos (half normal, half anomalous: VadCLIP's UCF-Crime sampling), cut or
averaged to at most `visual_length` snippets and padded to the longest of the batch (padding is masked).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from models.methods.vadclip import Vadclip, to_sequence
from models.pretrained import clip as clip_weights
from models.train.objectives import Adam, register_objective

if TYPE_CHECKING:
    from models.train.config import TrainConfig
    from models.train.sources import WeakVideo

SEPARATION_WEIGHT = 0.1


class VadclipOptim(Adam):
    """AdamW for the adapter, heads and prompts; the learning rate drops x`lr_drop_factor` at `lr_milestones`."""

    lr: float = Field(default=2e-5, gt=0)  # UCF-Crime 2e-5, XD-Violence 1e-5
    weight_decay: float = Field(default=0.01, ge=0)
    lr_milestones: tuple[float, ...] = (0.4, 0.8)  # fractions of the run: VadCLIP's UCF epochs 4 and 8 of 10
    lr_drop_factor: float = Field(default=0.1, gt=0, le=1)


def top_k_count(lengths: torch.Tensor, snippets_per_k: int = 16) -> torch.Tensor:
    """k = floor(len / 16) + 1 per video (VadCLIP), at most len."""
    return torch.minimum(lengths // snippets_per_k + 1, lengths)


def top_k_values(values: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) -> (B, L) values sorted descending with the padding last, and (B, L) True for each video's top k."""
    k = top_k_count(valid.sum(1))
    ranked = values.masked_fill(~valid, float("-inf")).sort(dim=1, descending=True).values
    return ranked, torch.arange(values.shape[1], device=values.device)[None] < k[:, None]


def top_k_bce(logits: torch.Tensor, valid: torch.Tensor, anomalous: torch.Tensor) -> torch.Tensor:
    """BCE of the top-k mean probability against the video label, in log space: log of a mean of sigmoids is a
    logsumexp of logsigmoids, so a saturated logit still gets a gradient (clamping probabilities loses it)."""
    ranked, keep = top_k_values(logits, valid)
    log_k = keep.sum(1).to(logits.dtype).log()
    fill = torch.full_like(ranked, float("-inf"))
    log_p = torch.where(keep, F.logsigmoid(ranked), fill).logsumexp(1) - log_k
    log_not_p = torch.where(keep, F.logsigmoid(-ranked), fill).logsumexp(1) - log_k
    return -(anomalous * log_p + (1 - anomalous) * log_not_p).mean()


def top_k_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, L[, C]) values -> (B[, C]): per video the mean of its k highest valid values along L."""
    lengths = valid.sum(1)
    k = top_k_count(lengths)
    mask = valid if values.ndim == 2 else valid[..., None]
    ranked = values.masked_fill(~mask, float("-inf")).sort(dim=1, descending=True).values
    keep = torch.arange(values.shape[1], device=values.device)[None] < k[:, None]  # (B, L)
    keep = keep if values.ndim == 2 else keep[..., None]
    total = torch.where(keep, ranked, torch.zeros_like(ranked)).sum(1)
    return total / (k if values.ndim == 2 else k[:, None]).to(values.dtype)


class PromptTextEncoder(nn.Module):
    """Learnable prompts through a frozen CLIP text tower -> (C, embed_dim) class-text features."""

    tokens: torch.Tensor
    attn_mask: torch.Tensor

    def __init__(self, arch: str, weights: Path | None, class_names: tuple[str, ...], prefix: int, postfix: int):
        super().__init__()
        import open_clip

        clip = clip_weights.build_clip(arch)
        if weights is not None:
            clip_weights.load_clip_weights(clip, weights, arch)
        # Only the text tower is kept (frozen); the image tower lives in the method.
        self.token_embedding = clip.token_embedding.requires_grad_(False)
        self.positional_embedding = nn.Parameter(clip.positional_embedding.detach(), requires_grad=False)
        self.transformer = clip.transformer.requires_grad_(False)
        self.ln_final = clip.ln_final.requires_grad_(False)
        self.text_projection = nn.Parameter(clip.text_projection.detach(), requires_grad=False)
        self.register_buffer("attn_mask", clip.attn_mask, persistent=False)
        context = int(self.positional_embedding.shape[0])
        tokens = open_clip.tokenize(list(class_names), context_length=context)  # (C, 77): SOT, words, EOT, 0...
        eot = tokens.argmax(-1)  # EOT has the highest token id
        longest = int(eot.max()) - 1 + prefix + postfix + 2
        if longest > context:
            msg = f"class names are too long for {context} text tokens with prompt_prefix/postfix {prefix}/{postfix}"
            raise ValueError(msg)
        self.register_buffer("tokens", tokens, persistent=False)
        self.prefix, self.postfix = prefix, postfix
        self.prompt = nn.Parameter(torch.randn(context, self.token_embedding.embedding_dim) * 0.01)

    def forward(self) -> torch.Tensor:
        words = self.token_embedding(self.tokens)  # (C, 77, W)
        rows, readout = [], []
        for c in range(words.shape[0]):
            eot = int(self.tokens[c].argmax())
            name = words[c, 1:eot]  # the class name's word tokens
            start, end = 1 + self.prefix, 1 + self.prefix + name.shape[0]
            at = end + self.postfix
            row = torch.cat([words[c, :1], self.prompt[1:start], name, self.prompt[end:at], words[c, eot : eot + 1]])
            rows.append(torch.cat([row, self.prompt[at + 1 :]]))
            readout.append(at)
        x = torch.stack(rows) + self.positional_embedding
        x = self.ln_final(self.transformer(x, attn_mask=self.attn_mask))
        pooled = x[torch.arange(len(rows)), torch.tensor(readout)]
        out: torch.Tensor = pooled @ self.text_projection
        return out


def video_batch(
    videos: list[WeakVideo], length: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Videos -> (B, L, dim) features, (B, L) validity, (B,) labels; L = the longest video's length, at most `length`.

    Padding is masked in the adapter, so padding only to the longest video of the batch changes no result and
    saves most of the work when videos are much shorter than visual_length (Ped2: about 10 of 256 snippets)."""
    length = min(length, max(v.features.shape[0] for v in videos))
    seqs = [to_sequence(v.features, length) for v in videos]
    features = torch.stack([s[0] for s in seqs]).to(device)
    valid = torch.stack([s[1] for s in seqs]).to(device)
    labels = torch.tensor([v.label for v in videos], device=device)
    return features, valid, labels


class VadclipObjective:
    def __init__(
        self,
        method: Vadclip,
        total_steps: int,
        optim: VadclipOptim,
        separation_weight: float = SEPARATION_WEIGHT,
    ) -> None:
        cfg = method.config
        self.method, self.separation_weight = method, separation_weight
        self.text: PromptTextEncoder | None = None
        if cfg.a_branch:
            weights = Path(cfg.backbone_weights) if cfg.backbone_weights else None
            device = next(method.adapter.parameters()).device
            self.text = PromptTextEncoder(
                cfg.clip_arch, weights, cfg.class_names, cfg.prompt_prefix, cfg.prompt_postfix
            ).to(device)
        params = [p for p in method.parameters() if p.requires_grad]
        if self.text is not None:
            params.append(self.text.prompt)
        self.opt = torch.optim.AdamW(params, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay)
        milestones = sorted({max(1, round(f * total_steps)) for f in optim.lr_milestones})
        self.sched = torch.optim.lr_scheduler.MultiStepLR(self.opt, milestones=milestones, gamma=optim.lr_drop_factor)
        self.steps_done = 0

    def losses(self, features: torch.Tensor, valid: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, L, dim) features, (B, L) validity, (B,) class index (0 = normal) -> named losses."""
        method = self.method
        v, logits = method.forward_sequences(features, valid)
        anomalous = (labels > 0).float()
        out = {"c": top_k_bce(logits, valid, anomalous)}
        if self.text is not None:
            text = self.text()  # (C, dim)
            align = method.alignment_logits(v, logits, valid, text)  # (B, L, C)
            out["a"] = F.cross_entropy(top_k_mean(align, valid), labels)
            unit = F.normalize(text, dim=-1)
            out["sep"] = self.separation_weight * (unit[1:] @ unit[0]).abs().mean()
        return out

    def step(self, videos: list[WeakVideo]) -> dict[str, float]:
        device = next(self.method.adapter.parameters()).device
        return self.step_videos(*video_batch(videos, self.method.config.visual_length, device))

    def step_videos(self, features: torch.Tensor, valid: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        self.method.train()
        losses = self.losses(features, valid, labels)
        total = torch.stack(list(losses.values())).sum()
        self.opt.zero_grad(set_to_none=True)
        total.backward()  # type: ignore[no-untyped-call]
        self.opt.step()
        self.sched.step()
        self.steps_done += 1
        return {k: float(v.item()) for k, v in losses.items()}

    def finish(self) -> None:
        """Store the trained class-text features in the method (serving needs no text tower)."""
        if self.text is not None:
            with torch.no_grad():
                self.method.class_text.copy_(self.text())

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "method": self.method.state_dict(),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            "steps_done": self.steps_done,
        }
        if self.text is not None:
            state["prompt"] = self.text.prompt.detach().clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.method.load_state_dict(state["method"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.steps_done = int(state["steps_done"])
        if self.text is not None:
            with torch.no_grad():
                self.text.prompt.copy_(state["prompt"])


@register_objective("vadclip", optim=VadclipOptim, data=("videos",))
def build_vadclip_objective(method: Any, config: TrainConfig, device: torch.device) -> VadclipObjective:
    if not isinstance(method, Vadclip):
        msg = f"the vadclip objective trains a Vadclip method, got {type(method).__name__}"
        raise TypeError(msg)
    assert isinstance(config.optim, VadclipOptim)
    method.to(device)
    return VadclipObjective(method, config.steps, config.optim)
