"""Save a method into the model store and rebuild it from its card alone; weights are safetensors only."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from models.base import AnomalyMethod
from models.card import ModelCard
from models.errors import IncompatibleCheckpointError, UnsafeWeightsError
from models.registry import create_method
from models.store import WEIGHTS_FILE, ModelStore, ModelVersion
from models.types import InputSpec

# Pickle streams start with PROTO (0x80); torch.save zip archives start with "PK".
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")


def _looks_like_pickle(head: bytes) -> bool:
    """True for pickle/torch.save files; a safetensors file is a u64 header length followed by '{'.

    The length's low byte can itself be 0x80 (1 file in 32), so the '{' at offset 8 decides first.
    """
    if len(head) > 8 and head[8:9] == b"{":
        return False
    return head.startswith(_PICKLE_MAGIC)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def code_version() -> str:
    """The git commit of the running code, or 'unknown' outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; refuse pickles and explain what was found."""
    with path.open("rb") as f:
        head = f.read(9)
    if _looks_like_pickle(head):
        msg = (
            f"{path} is a pickle/torch.save file; pickles can execute code, so vigil only loads safetensors. "
            "Convert it with safetensors.torch.save_file(state_dict, 'weights.safetensors') in a trusted environment."
        )
        raise UnsafeWeightsError(msg)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        msg = f"cannot read weights {path}: {e}; the file is corrupt or not a safetensors file"
        raise IncompatibleCheckpointError(msg) from e


def build_card(method: AnomalyMethod, name: str, **fields: object) -> ModelCard:
    return ModelCard(
        name=name,
        method=str(method.config.name),  # type: ignore[attr-defined]
        config=method.config.model_dump(mode="json"),
        input_spec=method.input_spec.to_dict(),
        signal_names=list(method.signal_names),
        code_version=code_version(),
        **fields,  # type: ignore[arg-type]
    )


def save_model(store: ModelStore, method: AnomalyMethod, card: ModelCard) -> ModelVersion:
    """Register a new version: weights first, card last, so a version with a card is always complete."""
    version = store.create_version(card.name)
    state = {k: v.detach().contiguous().cpu() for k, v in method.state_dict().items()}
    save_file(state, str(version.weights_path))
    card = card.model_copy(update={"weights_sha256": sha256_file(version.weights_path)})
    store.write_card(version, card)
    return version


def load_model(
    store: ModelStore, ref: str, device: str | torch.device = "cpu"
) -> tuple[AnomalyMethod, ModelCard, ModelVersion]:
    """Rebuild a method from its card and weights, in eval mode on `device`."""
    version = store.resolve(ref)
    card = version.card()
    weights_path = version.path / WEIGHTS_FILE
    if not weights_path.is_file():
        msg = f"{version.ref} has no {WEIGHTS_FILE}; the version directory {version.path} is incomplete"
        raise IncompatibleCheckpointError(msg)
    if card.weights_sha256 and sha256_file(weights_path) != card.weights_sha256:
        msg = f"{weights_path} does not match the sha256 in its card; the file was changed or corrupted"
        raise IncompatibleCheckpointError(msg)
    method = create_method(card.config)
    if method.input_spec != InputSpec.from_dict(card.input_spec):
        msg = f"{version.ref}: the card's input spec {card.input_spec} differs from what its config builds"
        raise IncompatibleCheckpointError(msg)
    load_state(method, load_weights(weights_path), source=str(weights_path))
    return method.to(device).eval(), card, version


def load_state(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict(strict) with an error that names the mismatching keys and shapes."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        msg = f"weights in {source} do not fit the model built from its config: {e}"
        raise IncompatibleCheckpointError(msg) from e
