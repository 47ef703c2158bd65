"""An endless, resumable clip sampler: sample i of the run is a pure function of (seed, i)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    """Yields a fresh random permutation of range(num_items) per epoch, forever, starting at global sample `start`.

    Because the order depends only on the seed and the sample's position, resuming at step k with
    start = k * batch_size reproduces exactly the batches an uninterrupted run would have drawn, whatever
    DataLoader workers prefetched before the interruption.
    """

    def __init__(self, num_items: int, seed: int, start: int = 0) -> None:
        if num_items < 1:
            msg = "the sampler needs at least one item"
            raise ValueError(msg)
        self.num_items = num_items
        self.seed = seed
        self.start = start

    def _permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_items, generator=generator)

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.start, self.num_items)
        while True:
            for index in self._permutation(epoch)[offset:].tolist():
                yield int(index)
            epoch, offset = epoch + 1, 0
