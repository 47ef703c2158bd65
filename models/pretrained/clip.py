"""CLIP towers from `open_clip_torch`: build an architecture by name, load a user-given checkpoint by path.

No weights are downloaded: open_clip ships architectures and the BPE tokenizer, and the checkpoint is a
file the user points at (`method.backbone_weights`). Checkpoints are read as safetensors only (open_clip's
hub repositories ship `open_clip_model.safetensors`); a `.bin`/`.pt` state dict is converted once with
`vigil weights convert-clip`, through torch's weights-only unpickler. A checkpoint of another architecture
is refused with the tensors that differ and the open_clip configs its shapes fit.

`vigil-tiny` is a 32-wide, one-layer CLIP on 64x64 images for tests, always randomly initialised.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from models.errors import IncompatibleCheckpointError, UnsafeWeightsError

if TYPE_CHECKING:
    from open_clip.model import CLIP

# open_clip's preprocessing constants (open_clip.constants.OPENAI_DATASET_MEAN/STD), RGB.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TINY_ARCH = "vigil-tiny"
_TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def clip_config(arch: str) -> dict[str, Any]:
    """The open_clip model config of `arch` (e.g. "ViT-B-16"), or the test architecture `vigil-tiny`."""
    if arch == TINY_ARCH:
        return copy.deepcopy(_TINY_CONFIG)
    import open_clip

    config = open_clip.get_model_config(arch)
    if config is None:
        msg = f"unknown CLIP architecture {arch!r}; use an open_clip config name (e.g. ViT-B-16) or {TINY_ARCH}"
        raise ValueError(msg)
    if "timm_model_name" in config.get("vision_cfg", {}) or "hf_model_name" in config.get("text_cfg", {}):
        msg = f"CLIP architecture {arch!r} needs timm/Hugging Face towers; use a plain ViT CLIP such as ViT-B-16"
        raise ValueError(msg)
    return dict(config)


def build_clip(arch: str) -> CLIP:
    """A randomly initialised open_clip CLIP of architecture `arch`, in eval mode."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    cfg = clip_config(arch)
    model = CLIP(
        embed_dim=cfg["embed_dim"],
        vision_cfg=CLIPVisionCfg(**cfg["vision_cfg"]),
        text_cfg=CLIPTextCfg(**cfg["text_cfg"]),
        quick_gelu=bool(cfg.get("quick_gelu", False)),
    )
    return model.eval()


def image_size(arch: str) -> int:
    size = clip_config(arch)["vision_cfg"].get("image_size", 224)
    return int(size if isinstance(size, int) else size[0])


def embed_dim(arch: str) -> int:
    return int(clip_config(arch)["embed_dim"])


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A CLIP state dict from a safetensors file ("module." prefixes removed)."""
    if not path.is_file():
        msg = f"CLIP checkpoint {path} does not exist; pass the path of an open_clip safetensors checkpoint"
        raise FileNotFoundError(msg)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        msg = (
            f"{path} is not a safetensors file ({e}); vigil reads CLIP weights as safetensors only. Convert a "
            "PyTorch state dict with `vigil weights convert-clip IN.bin --out OUT.safetensors`"
        )
        raise UnsafeWeightsError(msg) from e
    return {k.removeprefix("module."): v for k, v in state.items()}


def describe_checkpoint(state: dict[str, torch.Tensor]) -> str:
    """What a CLIP state dict looks like (vision width/patch/layers, text width, embed dim) and which
    open_clip configs fit those shapes."""
    conv = state.get("visual.conv1.weight")
    if conv is None or "token_embedding.weight" not in state or "text_projection" not in state:
        return "it is not an open_clip/OpenAI ViT CLIP state dict"
    layers = len({k.split(".")[3] for k in state if k.startswith("visual.transformer.resblocks.")})
    shape = {
        "width": int(conv.shape[0]),
        "patch_size": int(conv.shape[-1]),
        "layers": layers,
        "embed_dim": int(state["text_projection"].shape[-1]),
    }
    import open_clip

    fits = []
    for name in open_clip.list_models():
        cfg = open_clip.get_model_config(name) or {}
        vision = cfg.get("vision_cfg", {})
        if (vision.get("width"), vision.get("patch_size"), vision.get("layers"), cfg.get("embed_dim")) == tuple(
            shape.values()
        ):
            fits.append(name)
    found = ", ".join(f"{k} {v}" for k, v in shape.items())
    return f"it holds a ViT CLIP with {found}" + (f" (open_clip configs: {', '.join(fits[:6])})" if fits else "")


def load_clip_weights(model: CLIP, path: Path, arch: str) -> None:
    """Load a checkpoint into `model`; a checkpoint of another architecture is a clear error, not a crash."""
    state = read_checkpoint(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    mismatched = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or mismatched:
        examples = [f"{k}: checkpoint {tuple(state[k].shape)}, {arch} {tuple(expected[k].shape)}" for k in mismatched]
        examples += [f"{k}: missing" for k in missing]
        msg = (
            f"CLIP checkpoint {path} does not fit the {arch} architecture ({len(mismatched)} tensors differ in "
            f"shape, {len(missing)} missing; e.g. {'; '.join(examples[:3])}); {describe_checkpoint(state)}. "
            "Set method.clip_arch to the checkpoint's architecture or pass the matching checkpoint"
        )
        raise IncompatibleCheckpointError(msg)
    # Extra keys (e.g. logit_bias of SigLIP-style training) do not matter for the towers vigil uses.
    model.load_state_dict({k: state[k] for k in expected}, strict=True)


def convert_checkpoint(source: Path, out: Path) -> Path:
    """A PyTorch CLIP state dict (.bin/.pt/.pth) -> safetensors, read with torch's weights-only unpickler.

    TorchScript archives (OpenAI's original .pt) are refused: they run code when loaded.
    """
    try:
        loaded = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only raises UnpicklingError/RuntimeError for anything but plain tensors
        msg = (
            f"{source} cannot be read as a plain state dict with torch's weights-only loader ({e}); "
            "use open_clip's safetensors checkpoint (open_clip_model.safetensors) instead"
        )
        raise UnsafeWeightsError(msg) from e
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        msg = f"{source} does not hold a state dict of tensors"
        raise IncompatibleCheckpointError(msg)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k.removeprefix("module."): v.contiguous() for k, v in state.items()}, str(out))
    return out
