"""One direction per batch, directions drawn with temperature sampling.

`p_t ∝ (n_t / N) ** (1 / T)`: T = 1 samples in proportion to data size, large T tends to
uniform; T = 5 is the multilingual NMT default (Tan et al. 2024 train with it).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch.utils.data import Sampler

__all__ = ["DirectionBatchSampler", "temperature_probabilities"]


def temperature_probabilities(sizes: Mapping[str, int], temperature: float = 5.0) -> dict[str, float]:
    """Sampling probability of each direction from its number of examples."""
    if temperature <= 0:
        raise ValueError(f"`temperature` must be > 0, got {temperature}.")
    total = sum(sizes.values())
    weights = {d: (n / total) ** (1 / temperature) for d, n in sizes.items() if n > 0}
    norm = sum(weights.values())
    return {d: w / norm for d, w in weights.items()}


class DirectionBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices, each from a single direction.

    Args:
        directions (`Sequence[str]`): the direction of each dataset example.
        batch_size (`int`): examples per batch.
        temperature (`float`, *optional*, defaults to 5.0): direction sampling temperature.
        num_batches (`int`, *optional*): batches per epoch; default: examples / batch_size.
        seed (`int`, *optional*, defaults to 0): with the epoch, fixes the order.
    """

    def __init__(
        self,
        directions: Sequence[str],
        batch_size: int,
        temperature: float = 5.0,
        num_batches: int | None = None,
        seed: int = 0,
    ):
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be positive, got {batch_size}.")
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.pools: dict[str, list[int]] = {}
        for i, d in enumerate(directions):
            self.pools.setdefault(d, []).append(i)
        if not self.pools:
            raise ValueError("No examples to sample from.")
        self.probabilities = temperature_probabilities({d: len(p) for d, p in self.pools.items()}, temperature)
        self.num_batches = num_batches or max(1, math.ceil(len(directions) / batch_size))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        names = list(self.probabilities)
        weights = torch.tensor([self.probabilities[d] for d in names], dtype=torch.float64)
        orders = {d: [] for d in names}
        for k in torch.multinomial(weights, self.num_batches, replacement=True, generator=g).tolist():
            d = names[k]
            batch = []
            while len(batch) < self.batch_size:
                if not orders[d]:  # reshuffle the direction's pool when it runs out
                    pool = self.pools[d]
                    orders[d] = [pool[i] for i in torch.randperm(len(pool), generator=g).tolist()]
                take = min(self.batch_size - len(batch), len(orders[d]))
                batch += orders[d][:take]
                del orders[d][:take]
            yield batch
