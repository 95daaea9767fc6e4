"""Test-time interventions on neuron activations: zero, set, scale or steer (DESIGN.md §4).

An intervention replaces the activation (the output of the FFN's activation module, before
the multiply by `up` in gated MLPs) of the chosen neurons, at the same sites the recorder
uses. `intervene(...)` is a context manager; `apply_intervention` / `Intervention.remove` do
the same permanently. Edits are out of place, so they also work under autograd; two
interventions on the same model compose in the order they were applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from .hooks import must_fire
from .models import NeuronSite, find_neuron_sites
from .neuron_set import NeuronSet
from .stats import ActivationStats

__all__ = ["Intervention", "Mode", "apply_intervention", "intervene", "resolve_neurons"]

Mode = Literal["zero", "value", "stat", "scale", "add"]
NeuronsLike = NeuronSet | Mapping[int, Sequence[int] | torch.Tensor] | Sequence[Sequence[int] | torch.Tensor]


def resolve_neurons(
    model: nn.Module, neurons: NeuronsLike, groups: str | Iterable[str] | None = None
) -> dict[int, torch.Tensor]:
    """`{layer: sorted LongTensor}` (non-empty layers only) from any accepted neuron spec.

    Accepts a `NeuronSet` (with `groups`, else all its groups, as their union), a mapping
    `{layer: indices}`, or one index list per layer (what `neuron_set[group]` returns).
    """
    sites = find_neuron_sites(model)
    num_layers, num_neurons = len(sites), sites[0].num_neurons
    if isinstance(neurons, NeuronSet):
        neurons.check_compatible(model)
        per_layer = dict(enumerate(neurons.union(groups)))
    else:
        if groups is not None:
            raise ValueError("`groups` selects groups of a NeuronSet; `neurons` here is already per layer.")
        if isinstance(neurons, Mapping):
            per_layer = {int(layer): idx for layer, idx in neurons.items()}
        else:
            if len(neurons) != num_layers:
                raise ValueError(
                    f"Got {len(neurons)} per-layer index lists, but the model has {num_layers} FFN layers; "
                    "pass one list per layer, or a `{layer: [indices]}` mapping."
                )
            per_layer = dict(enumerate(neurons))
    out = {}
    for layer, idx in per_layer.items():
        if not 0 <= layer < num_layers:
            raise ValueError(f"Layer {layer} does not exist: the model has FFN layers 0..{num_layers - 1}.")
        t = torch.unique(torch.as_tensor(idx, dtype=torch.long).reshape(-1))
        if t.numel() and (t[0] < 0 or t[-1] >= num_neurons):
            raise ValueError(
                f"Layer {layer}: neuron indices must lie in [0, {num_neurons}), got {t[0].item()}..{t[-1].item()}; "
                "were these neurons selected on another model?"
            )
        if t.numel():
            out[layer] = t
    return out


@dataclass
class Intervention:
    """Hooks that rewrite the chosen neurons' activations; `remove()` detaches them."""

    mode: Mode
    neurons: dict[int, torch.Tensor]
    values: dict[int, torch.Tensor | float] = field(default_factory=dict)  # per layer, aligned with `neurons`
    handles: list = field(default_factory=list, repr=False)

    def _edit(self, layer: int, act: torch.Tensor) -> torch.Tensor:
        idx = self.neurons[layer].to(act.device)
        if self.mode == "zero":
            return act.index_fill(-1, idx, 0.0)
        value = self.values[layer]
        if isinstance(value, torch.Tensor):
            value = value.to(device=act.device, dtype=act.dtype)
        current = act.index_select(-1, idx)
        if self.mode in ("value", "stat"):
            new = torch.zeros_like(current) + value
        elif self.mode == "scale":
            new = current * value
        else:  # add
            new = current + value
        return act.index_copy(-1, idx, new)

    def attach(self, sites: Sequence[NeuronSite]) -> Intervention:
        self.handles += must_fire(s for s in sites if s.index in self.neurons)  # a silent no-op is an error
        for site in sites:
            if site.index in self.neurons:

                def hook(module, args, output, _layer=site.index):
                    return self._edit(_layer, output)

                self.handles.append(site.activation.register_forward_hook(hook))
        return self

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def _statistic(stats: ActivationStats, group: str, statistic: str) -> torch.Tensor:
    """A per-neuron statistic of one group, shape `(layers, neurons)`."""
    k = stats.group_index(group)
    if statistic == "mean":
        return stats.means()[..., k]
    if statistic == "quantile":
        if stats.quantile_means is None:
            raise ValueError("These statistics hold no quantile estimates; record with `quantile=0.9` (say).")
        return stats.quantile_means[..., k]
    raise ValueError(f"Unknown `statistic={statistic!r}`; choose 'mean' or 'quantile'.")


def _values(
    mode: Mode,
    neurons: dict[int, torch.Tensor],
    value: float | torch.Tensor | None,
    stats: ActivationStats | None,
    target: str | None,
    statistic: str,
    relative_to: str | Sequence[str] | None,
    strength: float,
) -> dict[int, torch.Tensor | float]:
    if mode == "zero":
        if value is not None:
            raise ValueError("`mode='zero'` takes no `value`; use `mode='value'` to set a constant.")
        return {}
    if mode in ("stat", "add") and stats is not None:
        if target is None:
            raise ValueError(f"`mode={mode!r}` with `stats` needs `target=`, the group whose statistic is used.")
        table = _statistic(stats, target, statistic)
        if mode == "add":
            if relative_to is not None:
                others = (
                    [g for g in stats.groups if g != target]
                    if relative_to == "others"
                    else ([relative_to] if isinstance(relative_to, str) else list(relative_to))
                )
                table = table - torch.stack([_statistic(stats, g, statistic) for g in others]).mean(0)
            table = strength * table
        if table.shape[0] <= max(neurons):
            raise ValueError(f"The statistics cover {table.shape[0]} layers; the neurons reach layer {max(neurons)}.")
        return {layer: table[layer, idx].float() for layer, idx in neurons.items()}
    if mode == "stat":
        raise ValueError(
            "`mode='stat'` needs `stats=` (ActivationStats recorded with `record_sums=True`) and `target=`."
        )
    if value is None:
        raise ValueError(f"`mode={mode!r}` needs `value=` (a number, or `stats=` and `target=` for steering).")
    if isinstance(value, torch.Tensor) and value.numel() > 1:
        raise ValueError("A tensor `value` must be a scalar; per-neuron values come from `stats=`.")
    return {layer: float(value) for layer in neurons}


def apply_intervention(
    model: nn.Module,
    neurons: NeuronsLike,
    mode: Mode = "zero",
    value: float | torch.Tensor | None = None,
    *,
    groups: str | Iterable[str] | None = None,
    stats: ActivationStats | None = None,
    target: str | None = None,
    statistic: Literal["mean", "quantile"] = "mean",
    relative_to: str | Sequence[str] | None = None,
    strength: float = 1.0,
) -> Intervention:
    """Attach an intervention until `.remove()` is called. Arguments as for `intervene`."""
    if mode not in ("zero", "value", "stat", "scale", "add"):
        raise ValueError(f"Unknown `mode={mode!r}`; choose one of zero, value, stat, scale, add.")
    resolved = resolve_neurons(model, neurons, groups)
    values = _values(mode, resolved, value, stats, target, statistic, relative_to, strength) if resolved else {}
    return Intervention(mode, resolved, values).attach(find_neuron_sites(model))


@contextmanager
def intervene(
    model: nn.Module,
    neurons: NeuronsLike,
    mode: Mode = "zero",
    value: float | torch.Tensor | None = None,
    **kwargs,
) -> Iterator[Intervention]:
    """Within the block, rewrite the activations of `neurons`:

    - `"zero"`: deactivate (Tang et al. 2024);
    - `"value"`: set to the constant `value` (Mondal et al. tried +-1, +-10);
    - `"stat"`: set to a per-neuron statistic of group `target` in `stats` (`statistic="mean"`
      needs `record_sums=True` when recording; `"quantile"` the recorded quantile estimates);
    - `"scale"`: multiply by `value`;
    - `"add"`: steer, adding `value`, or with `stats` and `target`, `strength * mean_target`,
      or `strength * (mean_target - mean_others)` with `relative_to="others"` (or given groups).

    `neurons`: a `NeuronSet` (plus `groups=`), `{layer: [indices]}`, or one list per layer.
    Hooks are removed on exit, also after an exception.
    """
    intervention = apply_intervention(model, neurons, mode, value, **kwargs)
    try:
        yield intervention
    finally:
        intervention.remove()
