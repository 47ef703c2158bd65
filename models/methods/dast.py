"""`dast`: DAST-Net (Kommanduri & Ghorai, Neurocomputing 2024), a dense-residual spatio-temporal autoencoder.

No public code exists, so this is our reading of the paper's description; every choice below that the
brief does not fix is ours and is marked as such.

Design (all tensors: frames are grayscale in [0, 1]):
* Clip: 5 consecutive frames t-4..t (``context`` 4). The autoencoder reconstructs the whole clip in training
  (the paper calls it a spatio-temporal *autoencoder*, not a predictor).
* Spatial encoder ("DenserResNet"), shared over time: a 3x3 stem, then 4 dense-residual blocks of 3 convs
  each (conv k sees the block input concatenated with the outputs of convs 1..k-1, a 1x1 transition maps
  the concatenation to the block width and a 1x1-projected residual of the block input is added). Our
  choices: conv-BN-ReLU layers, growth = half the block width, stride-2 3x3 convs between blocks, so the
  bottleneck is at H/8 (widths 64/128/256/512 in `paper`).
* Temporal autoencoder: a 1x1 projection to `lstm_channels` (ours: a 512-channel ConvLSTM at 32x32 would be
  ~20 GFLOP per step), a ConvLSTM encoder (`lstm_layers` layers, 3x3 gates) over the 5 bottleneck maps,
  and a ConvLSTM decoder started from the encoder's final states and unrolled 5 steps on zero input
  (unconditioned, Srivastava et al. 2015), so the whole clip must pass through the final state.
* Decoder: mirrors the encoder with 4 dense-residual blocks and 2x2 transposed convs; a sigmoid head.
* Visual attention on the residual (skip) connections: an additive attention gate (Oktay et al. 2018) on
  each of the 3 encoder skips, gated by the decoder feature at that scale, and the gated skip is *added*
  (a residual connection, not a concatenation). Skips let the autoencoder copy any frame, anomalous or
  not, around the temporal bottleneck; on Ped2 the training L2 drops to ~1e-5 within a few hundred steps.
  `skip_levels` (default 3, all skips) keeps only the deepest ones to limit that.
* Loss (in `models/train/objectives/dast.py`): intensity L2 + gradient (GDL) over all 5 reconstructed frames.
* Raw signal `neg_psnr`: minus the PSNR of the reconstructed *last* frame of the clip. We score the last frame,
  not the clip mean, because frame t is then scored only from frames up to t (causal, one frame of latency
  like the other methods) and an anomaly raises the score of the frames where it is, instead of being spread
  over the 5 clips that contain it. Scoring decodes only the last step, so it costs one decoder pass.
  `signals` may add (or use instead) `neg_patch_psnr`, the same for the worst patch x patch window.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from models.base import AnomalyMethod, MethodConfig
from models.components.losses import error_map, patch_psnr, psnr
from models.registry import register_method
from models.types import InputSpec

CLIP_LEN = 5  # frames per clip: t-4..t


class DastConfig(MethodConfig):
    """DAST-Net hyper-parameters; `height`/`width` must be multiples of 8 (three stride-2 stages)."""

    PRESETS: ClassVar[tuple[str, ...]] = ("paper", "small", "tiny")
    name: Literal["dast"] = "dast"
    height: int = Field(default=256, ge=8)
    width: int = Field(default=256, ge=8)
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)  # channels of the 4 encoder blocks
    lstm_channels: int = Field(default=128, ge=1)
    lstm_layers: int = Field(default=2, ge=1)
    # Attention-gated skips used, from the deepest (H/4) up; 3 = all (our reading of the paper). Fewer skips force
    # more of each frame through the temporal bottleneck instead of letting the decoder copy it.
    skip_levels: int = Field(default=3, ge=0, le=3)
    lambda_intensity: float = Field(default=1.0, ge=0)  # trainer only: L2 weight
    lambda_gradient: float = Field(default=1.0, ge=0)  # trainer only: gradient-difference weight
    # Raw signals of the reconstructed last frame: "frame" = -PSNR of the whole frame (ours, as FFP's), "patch" =
    # -PSNR of the worst patch x patch window (models.components.losses.patch_psnr).
    signals: tuple[Literal["frame", "patch"], ...] = Field(default=("frame",), min_length=1)
    patch: int = Field(default=16, ge=2)  # side of the patch signal's windows, in input pixels

    @field_validator("height", "width")
    @classmethod
    def _multiple_of_8(cls, v: int) -> int:
        if v % 8:
            msg = f"DAST-Net downsamples 3 times, so height and width must be multiples of 8; got {v}"
            raise ValueError(msg)
        return v

    @field_validator("widths")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if min(v) < 2:
            msg = f"block widths must be >= 2 (growth is half a width), got {v}"
            raise ValueError(msg)
        return v

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(height=self.height, width=self.width, channels=1, context=CLIP_LEN - 1)

    @classmethod
    def paper(cls) -> DastConfig:
        return cls()

    @classmethod
    def small(cls) -> DastConfig:
        # Sized for the shared 2-core CPU box: about 1 s of CPU per batch of 4 clips (128x128 would take 7 s).
        return cls(height=64, width=64, widths=(8, 16, 32, 64), lstm_channels=32)

    @classmethod
    def tiny(cls) -> DastConfig:
        return cls(height=32, width=32, widths=(4, 8, 8, 16), lstm_channels=8, lstm_layers=1)


def conv_bn_relu(in_ch: int, out_ch: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(True)
    )


class DenseResBlock(nn.Module):
    """3 densely connected 3x3 convs + 1x1 transition + projected residual: (B, in, H, W) -> (B, out, H, W)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        growth = out_ch // 2
        self.convs = nn.ModuleList(conv_bn_relu(in_ch + k * growth, growth) for k in range(3))
        self.transition = nn.Conv2d(in_ch + 3 * growth, out_ch, 1)
        self.residual = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.act = nn.ReLU(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in self.convs:
            features.append(conv(torch.cat(features, dim=1)))
        out: torch.Tensor = self.act(self.transition(torch.cat(features, dim=1)) + self.residual(x))
        return out


class AttentionGate(nn.Module):
    """Additive attention (Oktay et al. 2018): skip x (B, C, H, W) weighted by sigmoid(psi(relu(Wx x + Wg g)))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inter = max(channels // 2, 1)
        self.wx = nn.Conv2d(channels, inter, 1, bias=False)
        self.wg = nn.Conv2d(channels, inter, 1)
        self.psi = nn.Sequential(nn.ReLU(True), nn.Conv2d(inter, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        mask: torch.Tensor = self.psi(self.wx(x) + self.wg(g))  # (B, 1, H, W), broadcast over channels
        return x * mask


class ConvLSTMCell(nn.Module):
    """ConvLSTM cell (Shi et al. 2015) without peepholes: one 3x3 conv produces the 4 gates."""

    def __init__(self, in_ch: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(in_ch + hidden, 4 * hidden, 3, padding=1)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class TemporalAutoencoder(nn.Module):
    """ConvLSTM seq2seq autoencoder: (B, T, C, h, w) bottleneck maps -> (B, T, C, h, w) reconstructions."""

    def __init__(self, channels: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.inp = nn.Conv2d(channels, hidden, 1)
        self.encoder = nn.ModuleList(ConvLSTMCell(hidden, hidden) for _ in range(layers))
        self.decoder = nn.ModuleList(ConvLSTMCell(hidden, hidden) for _ in range(layers))
        self.out = nn.Conv2d(hidden, channels, 1)

    def forward(self, seq: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Decode `steps` (default T) steps; the first `T - steps` outputs are skipped (only last ones)."""
        b, t, c, h, w = seq.shape
        x = self.inp(seq.reshape(b * t, c, h, w)).reshape(b, t, self.hidden, h, w)
        zeros = x.new_zeros(b, self.hidden, h, w)
        states = [(zeros, zeros) for _ in self.encoder]
        for step in range(t):
            inp = x[:, step]
            for k, cell in enumerate(self.encoder):
                states[k] = cell(inp, states[k])
                inp = states[k][0]
        outputs = []
        for step in range(t):  # unconditioned decoder: zero input, all information is in the states
            inp = zeros
            for k, cell in enumerate(self.decoder):
                states[k] = cell(inp, states[k])
                inp = states[k][0]
            if step >= t - (steps or t):
                outputs.append(self.out(inp))
        return torch.stack(outputs, dim=1)  # (B, steps, C, h, w)


class DastNet(AnomalyMethod):
    """DAST-Net: per-frame dense-residual encoder, ConvLSTM temporal AE, attention-gated residual decoder.
    Localisation map: the squared reconstruction error per pixel of the clip's last frame."""

    config: DastConfig
    localizes = True

    def __init__(self, config: DastConfig) -> None:
        super().__init__()
        self.config = config
        self.input_spec = config.input_spec
        self.signal_names = tuple({"frame": "neg_psnr", "patch": "neg_patch_psnr"}[s] for s in config.signals)
        w = config.widths
        self.stem = conv_bn_relu(1, w[0])
        self.enc = nn.ModuleList(DenseResBlock(w[max(k - 1, 0)], w[k]) for k in range(4))
        self.down = nn.ModuleList(conv_bn_relu(w[k], w[k], stride=2) for k in range(3))
        self.temporal = TemporalAutoencoder(w[3], config.lstm_channels, config.lstm_layers)
        self.dec = nn.ModuleList(DenseResBlock(w[k], w[k]) for k in range(4))
        self.up = nn.ModuleList(nn.ConvTranspose2d(w[k + 1], w[k], 2, stride=2) for k in range(3))
        self.gates = nn.ModuleDict({str(k): AttentionGate(w[k]) for k in range(3 - config.skip_levels, 3)})
        self.head = nn.Sequential(nn.Conv2d(w[0], 1, 3, padding=1), nn.Sigmoid())

    def encode(self, frames: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(M, 1, H, W) -> (skips at H, H/2, H/4 with widths w0..w2, bottleneck (M, w3, H/8, W/8))."""
        x = self.enc[0](self.stem(frames))
        skips = []
        for k in range(3):
            skips.append(x)
            x = self.enc[k + 1](self.down[k](x))
        return skips, x

    def decode(self, bottleneck: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """(M, w3, H/8, W/8) + the matching frames' skips -> (M, 1, H, W) in [0, 1]."""
        x = self.dec[3](bottleneck)
        for k in (2, 1, 0):
            up = self.up[k](x)
            x = self.dec[k](up + self.gates[str(k)](skips[k], up) if str(k) in self.gates else up)
        out: torch.Tensor = self.head(x)
        return out

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """Reconstruct a clip: (B, 5, 1, H, W) in [0, 1] -> (B, 5, 1, H, W) in [0, 1] (the training path)."""
        b, t = clip.shape[:2]
        skips, z = self.encode(clip.flatten(0, 1))
        z = self.temporal(z.reshape(b, t, *z.shape[1:]))  # (B, T, w3, h, w)
        return self.decode(z.flatten(0, 1), skips).reshape(clip.shape)

    def _reconstruct_window(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, 1, H, W) -> reconstructions of the scored frames and the frames (B * N, 1, H, W), in [0, 1]."""
        n = self.check_window(window)
        b, t = window.shape[:2]
        # Encode every frame once (the encoder is per frame), then gather the N overlapping 5-frame clips.
        skips, z = self.encode(window.flatten(0, 1))
        z = z.reshape(b, t, *z.shape[1:])  # (B, T, w3, h, w)
        clips = torch.stack([z[:, i : i + CLIP_LEN] for i in range(n)], dim=1).flatten(0, 1)  # (B*N, 5, w3, h, w)
        last = self.temporal(clips, steps=1)[:, 0]  # (B*N, w3, h, w): the reconstruction of each clip's last frame
        scored = torch.arange(CLIP_LEN - 1, t, device=window.device)
        last_skips = [s.reshape(b, t, *s.shape[1:])[:, scored].flatten(0, 1) for s in skips]  # (B*N, w_k, H_k, W_k)
        recon = self.decode(last, last_skips).reshape(b, n, *window.shape[2:])  # (B, N, 1, H, W)
        return recon.flatten(0, 1), window[:, CLIP_LEN - 1 :].flatten(0, 1)  # (B*N, 1, H, W)

    def _signals(self, pred: torch.Tensor, target: torch.Tensor, b: int) -> torch.Tensor:
        signals = [
            -psnr(pred, target) if s == "frame" else -patch_psnr(pred, target, self.config.patch)
            for s in self.config.signals
        ]  # -PSNR = 10 log10(mse) of the frame, or of its worst patch
        return torch.stack(signals, dim=1).reshape(b, -1, len(signals)).float()

    def score(self, window: torch.Tensor) -> torch.Tensor:
        pred, target = self._reconstruct_window(window)
        return self._signals(pred, target, window.shape[0])

    def score_with_maps(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Signals as `score`, and the squared reconstruction error per pixel (B, N, H, W)."""
        pred, target = self._reconstruct_window(window)
        b = window.shape[0]
        return self._signals(pred, target, b), error_map(pred, target).reshape(b, -1, *pred.shape[-2:])


@register_method(
    "dast",
    config=DastConfig,
    paper="DAST-Net, Kommanduri & Ghorai, Neurocomputing 579 (2024) 127444 (no public code; our reading)",
    pretrained=("none",),
    localizes=True,
)
def build_dast(config: DastConfig) -> DastNet:
    return DastNet(config)
