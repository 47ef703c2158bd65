"""VadCLIP's LGT-Adapter: a local transformer over snippet features, then two GCN branches (similarity, distance).

Follows METHODS.md (d) with one deliberate change: padded positions are masked everywhere (attention keys,
both adjacencies, and zeroed before the GCN's 1-D convolution). The official code lets the zero padding take
part, which makes a snippet's output depend on how long the batch was padded; masked, a sequence scores the
same alone or in a batch, which the live worker needs (it batches sequences of different lengths).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class QuickGELU(nn.Module):
    """CLIP's GELU approximation, x * sigmoid(1.702 x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x * torch.sigmoid(1.702 * x)
        return out


def clip_mlp(width: int, ratio: int = 4) -> nn.Sequential:
    """CLIP-style MLP width -> ratio * width -> width with QuickGELU (used by the adapter and both branches)."""
    return nn.Sequential(nn.Linear(width, width * ratio), QuickGELU(), nn.Linear(width * ratio, width))


class ResidualAttentionBlock(nn.Module):
    """Pre-LN residual block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = clip_mlp(width)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, attn_mask=attn_mask, need_weights=False)[0]
        out: torch.Tensor = x + self.mlp(self.ln_2(x))
        return out


class GraphConvolution(nn.Module):
    """adj @ (x W) plus a residual: a 1-D convolution (kernel 5) when the width changes, identity otherwise."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        nn.init.xavier_uniform_(self.weight)
        self.residual: nn.Module = (
            nn.Identity() if in_features == out_features else nn.Conv1d(in_features, out_features, 5, padding=2)
        )

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        res = x if isinstance(self.residual, nn.Identity) else self.residual(x.transpose(1, 2)).transpose(1, 2)
        return adj @ (x @ self.weight) + res


def local_attention_mask(length: int, window: int, valid: torch.Tensor) -> torch.Tensor:
    """(B, L) bool valid -> (B, L, L) bool, True = may attend: same non-overlapping window and a valid key.

    A query at a padded position keeps its own key so its softmax is defined; its output is discarded.
    """
    block = torch.arange(length, device=valid.device) // window
    same = block[:, None] == block[None, :]  # (L, L)
    allowed = same[None] & valid[:, None, :]
    return allowed | torch.eye(length, dtype=torch.bool, device=valid.device)[None]


def similarity_adjacency(x: torch.Tensor, valid: torch.Tensor, threshold: float) -> torch.Tensor:
    """Cosine similarity between snippets, entries <= threshold set to 0, row softmax over valid snippets.

    As in VadCLIP, a zeroed entry still gets weight e^0 in the softmax: the threshold sharpens, not sparsifies.
    """
    unit = F.normalize(x, dim=-1, eps=1e-20)
    sim = unit @ unit.transpose(1, 2)  # (B, L, L)
    sim = torch.where(sim > threshold, sim, torch.zeros_like(sim))
    pair = valid[:, :, None] & valid[:, None, :]
    adj = torch.softmax(sim.masked_fill(~pair, float("-inf")), dim=-1)
    return torch.nan_to_num(adj, nan=0.0)  # rows of padded queries are all -inf: zero them


def distance_adjacency(valid: torch.Tensor) -> torch.Tensor:
    """exp(-|i - j| / e), fixed (no softmax); restricted to valid pairs (the official code does not mask it)."""
    length = valid.shape[1]
    pos = torch.arange(length, device=valid.device, dtype=torch.float32)
    adj = torch.exp(-(pos[:, None] - pos[None, :]).abs() / math.e)  # (L, L)
    pair = valid[:, :, None] & valid[:, None, :]
    return adj[None] * pair


class LgtAdapter(nn.Module):
    """(B, L, D) snippet features + (B, L) validity -> (B, L, D) context-aware features."""

    def __init__(
        self,
        width: int,
        max_length: int,
        layers: int,
        heads: int,
        window: int,
        gcn_hidden: int,
        similarity_threshold: float,
    ) -> None:
        super().__init__()
        self.window, self.threshold, self.heads = window, similarity_threshold, heads
        self.position = nn.Parameter(torch.randn(max_length, width) * 0.01)
        self.blocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))
        self.gc_sim = nn.ModuleList([GraphConvolution(width, gcn_hidden), GraphConvolution(gcn_hidden, gcn_hidden)])
        self.gc_dist = nn.ModuleList([GraphConvolution(width, gcn_hidden), GraphConvolution(gcn_hidden, gcn_hidden)])
        self.act = QuickGELU()
        self.out = nn.Linear(2 * gcn_hidden, width)

    @property
    def max_length(self) -> int:
        return int(self.position.shape[0])

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        if length > self.max_length:
            msg = f"a sequence of {length} snippets exceeds the adapter's {self.max_length} positions"
            raise ValueError(msg)
        x = x + self.position[:length]
        # nn.MultiheadAttention: a True entry of a bool mask means "may NOT attend".
        mask = ~local_attention_mask(length, self.window, valid)
        mask = mask.repeat_interleave(self.heads, dim=0)  # (B * heads, L, L), as MultiheadAttention wants
        for block in self.blocks:
            x = block(x, mask)
        x = x * valid[..., None]  # padding must look like the convolution's own zero padding
        branches = []
        for layers, adj in (
            (self.gc_sim, similarity_adjacency(x, valid, self.threshold)),
            (self.gc_dist, distance_adjacency(valid)),
        ):
            h = x
            for layer in layers:
                h = self.act(layer(h, adj))
            branches.append(h)
        out: torch.Tensor = self.out(torch.cat(branches, dim=-1))
        return out
