"""EfficientNet-Lite0's eval path (BatchNorm folded into each conv, channels-last, SAME padding through the conv where
it is symmetric) computes what the plain modules compute: each conv, then its BatchNorm on running statistics."""

from __future__ import annotations

import pytest
import torch

from models.pretrained import efficientnet_lite0 as lite0
from models.pretrained.efficientnet_lite0 import EfficientNetLite0, load_pretrained, plain_forward


@pytest.fixture(scope="module")
def net() -> EfficientNetLite0:
    return load_pretrained(5)


@pytest.mark.parametrize("size", [(64, 96), (33, 47), (30, 44)])  # even and odd sides: symmetric and asymmetric SAME
def test_eval_path_matches_the_plain_modules(net: EfficientNetLite0, size: tuple[int, int]) -> None:
    x = torch.rand(3, 3, *size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        fast = net(x)
        plain = plain_forward(net, x)
    assert fast.shape == plain.shape == (3, 40, -(-size[0] // 8), -(-size[1] // 8))
    assert fast.is_contiguous()  # standard layout for what comes after, whatever the path used inside
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-4)
    assert float(plain.abs().max()) > 1.0  # real activations, not a degenerate all-zero map


def test_train_mode_still_uses_batch_statistics() -> None:
    net = EfficientNetLite0(2).train()
    x = torch.rand(4, 3, 32, 32)
    out = net(x)
    out.mean().backward()  # the training path keeps autograd through every BatchNorm
    assert net._bn0.weight.grad is not None
    assert net._bn0.num_batches_tracked.item() == 1  # batch statistics were used and tracked


def test_plain_forward_needs_a_truncated_network() -> None:
    with pytest.raises(ValueError, match="truncated"):
        plain_forward(EfficientNetLite0(None), torch.rand(1, 3, 32, 32))


def test_chunked_cpu_batches_give_the_batch_result(net: EfficientNetLite0, monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.rand(5, 3, 48, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    calls: list[int] = []
    hook = net.register_forward_pre_hook(lambda _m, args: calls.append(len(args[0])))
    try:
        with torch.no_grad():
            whole = net(x)  # one chunk: 5 frames are far below the chunk size at 48x64
            monkeypatch.setattr(lite0, "_CHUNK_BYTES", 2 * 24 * 48 * 64 * 4)  # two frames per chunk
            chunked = net(x)
    finally:
        hook.remove()
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)
    assert calls == [5, 5, 2, 2, 1]  # the batch as one call; then the batch, split and called per chunk
