"""The residual-stream DiffMean baseline (CLaS-Bench's strongest steering method).

Per group, the mean hidden state after each decoder layer over real tokens; the direction of
a target is the unit vector `mean_target - mean_others` per layer, and steering adds
`alpha * direction` to the layer's output at every position. Decoder layers are the modules
that hold the FFN blocks lsn already finds, so every supported family works.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from .corpora import CorpusSpec
from .models import decoder_layers
from .recording import record_activations
from .stats import ActivationStats

logger = logging.getLogger(__name__)

__all__ = ["ResidualMeans", "add_direction", "decoder_layers", "diffmean_directions", "record_residual_means"]


def _hidden(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


@dataclass
class ResidualMeans:
    """Mean residual-stream state per decoder layer and group.

    Attributes:
        means: `(layers, groups, hidden)` float64.
        tokens: real tokens averaged per group.
        groups: the group names.
    """

    means: torch.Tensor
    tokens: torch.Tensor
    groups: list[str]

    @classmethod
    def from_stats(cls, stats: ActivationStats) -> ResidualMeans:
        """The means of statistics recorded with `record_activations(..., residual_means=True)` (one pass for the
        neuron statistics and the residual stream)."""
        if stats.residual_sums is None:
            raise ValueError("These statistics hold no residual sums; record with `residual_means=True`.")
        means = stats.residual_sums / stats.tokens.double()  # (layers, hidden, groups)
        return cls(means.permute(0, 2, 1).contiguous(), stats.tokens.clone(), list(stats.groups))

    def group_index(self, group: str) -> int:
        try:
            return self.groups.index(group)
        except ValueError:
            raise KeyError(f"No group `{group}` in these residual means; groups: {self.groups}.") from None


def record_residual_means(
    model: nn.Module,
    corpora: Mapping[str, CorpusSpec],
    *,
    tokenizer=None,
    seq_len: int = 512,
    batch_size: int = 8,
    max_tokens: int | None = None,
    text_column: str = "text",
    progress: bool = True,
) -> ResidualMeans:
    """Each group's mean hidden state after every decoder layer, over real tokens (packed as `record_activations`).

    A recording pass with `residual_means=True`; to get the neuron statistics from the same pass, call
    `record_activations(..., residual_means=True)` and `ResidualMeans.from_stats(stats)`.
    """
    stats = record_activations(
        model,
        corpora,
        tokenizer=tokenizer,
        seq_len=seq_len,
        batch_size=batch_size,
        max_tokens=max_tokens,
        text_column=text_column,
        residual_means=True,
        progress=progress,
    )
    return ResidualMeans.from_stats(stats)


def diffmean_directions(
    means: ResidualMeans, target: str, layers: Sequence[int] | None = None, *, normalize: bool = True
) -> dict[int, torch.Tensor]:
    """`{layer: mean_target - mean_others}` (unit length unless `normalize=False`), float32."""
    k = means.group_index(target)
    others = [i for i in range(len(means.groups)) if i != k]
    if not others:
        raise ValueError("DiffMean needs at least two groups.")
    diff = means.means[:, k] - means.means[:, others].mean(1)  # [layers, hidden]
    chosen = range(diff.shape[0]) if layers is None else layers
    out = {}
    for layer in chosen:
        if not 0 <= layer < diff.shape[0]:
            raise ValueError(f"Layer {layer} does not exist: the residual means cover layers 0..{diff.shape[0] - 1}.")
        d = diff[layer]
        out[int(layer)] = (d / d.norm().clamp_min(1e-12) if normalize else d).float()
    return out


@contextmanager
def add_direction(
    model: nn.Module, directions: Mapping[int, torch.Tensor], alpha: float, layers: Sequence[int] | None = None
) -> Iterator[None]:
    """Within the block, add `alpha * directions[layer]` to the output of each chosen decoder layer."""
    modules = decoder_layers(model)
    chosen = list(directions) if layers is None else list(layers)
    for layer in chosen:
        if layer not in directions:
            raise ValueError(f"No direction for layer {layer}; directions cover layers {sorted(directions)}.")
        if not 0 <= layer < len(modules):
            raise ValueError(f"Layer {layer} does not exist: the model has decoder layers 0..{len(modules) - 1}.")

    def hook(module, args, output, _vector):
        h = _hidden(output)
        h = h + alpha * _vector.to(device=h.device, dtype=h.dtype)
        return (h, *output[1:]) if isinstance(output, tuple) else h

    handles = []
    try:
        for layer in chosen:
            vector = directions[layer]
            handles.append(modules[layer].register_forward_hook(lambda m, a, o, _v=vector: hook(m, a, o, _v)))
        yield
    finally:
        for handle in handles:
            handle.remove()
