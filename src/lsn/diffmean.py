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
from tqdm.auto import tqdm

from .corpora import CorpusSpec, iter_batches, open_corpus
from .models import find_neuron_sites, first_device, unwrap_model

logger = logging.getLogger(__name__)

__all__ = ["ResidualMeans", "add_direction", "decoder_layers", "diffmean_directions", "record_residual_means"]


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The decoder layers (the parent module of each decoder FFN block), in order."""
    base = unwrap_model(model)
    sites = [s for s in find_neuron_sites(model) if s.side == "decoder"]
    modules = dict(base.named_modules())
    return [modules[s.path.rpartition(".")[0]] for s in sites]


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
    """Each group's mean hidden state after every decoder layer, over real tokens (packed as `record_activations`)."""
    if getattr(getattr(unwrap_model(model), "config", None), "is_encoder_decoder", False):
        raise ValueError("Residual means are recorded on decoder-only models; this one is encoder-decoder.")
    opened = {g: open_corpus(g, src, text_column) for g, src in corpora.items()}
    layers = decoder_layers(model)
    sums: list[torch.Tensor | None] = [None] * len(layers)
    mask: torch.Tensor | None = None

    def hook(module, args, output, _layer):
        h = _hidden(output)  # [batch, seq, hidden]
        m = mask.to(device=h.device, dtype=torch.float64).unsqueeze(-1)
        s = (h.double() * m).sum((0, 1)).cpu()
        sums[_layer] = s if sums[_layer] is None else sums[_layer] + s

    device = first_device(model)
    means, tokens = [], []
    handles = []
    try:
        for i, layer in enumerate(layers):
            handles.append(layer.register_forward_hook(lambda mod, a, o, _i=i: hook(mod, a, o, _i)))
        with torch.inference_mode():
            for group, corpus in opened.items():
                sums[:] = [None] * len(layers)
                count = 0
                batches = iter_batches(
                    corpus, tokenizer=tokenizer, seq_len=seq_len, batch_size=batch_size, max_tokens=max_tokens
                )
                for batch in tqdm(batches, desc=f"residual means {group}", disable=not progress, leave=False):
                    mask = batch.masks["decoder"]
                    inputs = {k: v.to(device) for k, v in batch.inputs.items()}
                    model(**inputs, use_cache=False)
                    count += batch.num_tokens()
                if count == 0:
                    raise ValueError(f"Group `{group}` gave no tokens.")
                means.append(torch.stack(sums) / count)  # [layers, hidden]
                tokens.append(count)
    finally:
        for handle in handles:
            handle.remove()
    return ResidualMeans(torch.stack(means, 1), torch.tensor(tokens), list(opened))


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
