"""Test-time interventions on neuron activations: zero, set, scale or add (DESIGN.md §4).

An intervention has an effect (what it does to the chosen neurons' activations: the output of the FFN's activation
module, before the multiply by `up` in gated MLPs) and a value (where the number comes from: a constant, or a
per-neuron table from `neuron_values`: a group's mean or quantile, a steering difference). `intervene(...)` is a
context manager; `apply_intervention` / `Intervention.remove` do the same permanently. Edits are out of place, so
they also work under autograd; interventions on the same model compose in the order they were applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, get_args

import torch
from torch import nn

from .hooks import attach_activation_hooks
from .models import NeuronSite, NeuronSpec, ffn_shape, find_neuron_sites, resolve_neurons
from .stats import ActivationStats

__all__ = ["EFFECTS", "Effect", "Intervention", "Statistic", "apply_intervention", "intervene", "neuron_values"]

Effect = Literal["zero", "set", "scale", "add"]
EFFECTS: tuple[str, ...] = get_args(Effect)
Statistic = Literal["mean", "pre_mean", "quantile"]


def _statistic(stats: ActivationStats, group: str, statistic: Statistic) -> torch.Tensor:
    """A per-neuron statistic of one group, shape `(layers, neurons)`."""
    k = stats.group_index(group)
    if statistic == "mean":
        return stats.means()[..., k]
    if statistic == "pre_mean":  # Mondal et al.'s "mean": of the pre-activation, written after the activation
        return stats.pre_means()[..., k]
    if statistic == "quantile":
        if stats.quantile_means is None:
            raise ValueError("These statistics hold no quantile estimates; record with `quantile=0.9` (say).")
        return stats.quantile_means[..., k]
    raise ValueError(f"Unknown `statistic={statistic!r}`; choose 'mean', 'pre_mean' or 'quantile'.")


def neuron_values(
    stats: ActivationStats,
    group: str,
    *,
    statistic: Statistic = "mean",
    relative_to: str | Sequence[str] | None = None,
    strength: float = 1.0,
) -> torch.Tensor:
    """Per-neuron intervention values from statistics, a float32 table `(layers, neurons)`.

    `strength * statistic(group)`, or with `relative_to` (`"others"` = every other group, or named groups) the
    steering difference `strength * (statistic(group) - mean over those groups of statistic)`. `statistic="mean"`
    needs sums (`record_sums=True`), as does `"pre_mean"` (the mean PRE-activation, Mondal et al.'s "mean");
    `"quantile"` the recorded quantile estimates.
    """
    table = _statistic(stats, group, statistic)
    if relative_to is not None:
        if relative_to == "others":
            others = [g for g in stats.groups if g != group]
        else:
            others = [relative_to] if isinstance(relative_to, str) else list(relative_to)
        if not others:
            raise ValueError(f"`relative_to={relative_to!r}` names no group other than `{group}`.")
        table = table - torch.stack([_statistic(stats, g, statistic) for g in others]).mean(0)
    return (strength * table).float()


@dataclass
class Intervention:
    """Hooks that rewrite the chosen neurons' activations; `remove()` detaches them.

    `neurons`: `{layer: indices}` as resolved on the model; `value`: a scalar, or the per-neuron values
    `{layer: tensor aligned with neurons[layer]}`.
    """

    mode: Effect
    neurons: dict[int, torch.Tensor]
    value: float | dict[int, torch.Tensor] | None = None
    handles: list = field(default_factory=list, repr=False)
    _placed: dict[int, tuple[torch.Tensor, torch.Tensor | float | None]] = field(default_factory=dict, repr=False)

    def attach(self, sites: Sequence[NeuronSite]) -> Intervention:
        """Place indices and values on each layer's device once, then hook the layers that have neurons.

        Under tensor parallelism each rank keeps the neurons of its shard (`site.neuron_range`), as local
        indices with their values; a layer without any on this rank is not hooked here.
        """
        for site in sites:
            if site.index not in self.neurons:
                continue
            here, local = site.local_indices(self.neurons[site.index])
            if not local.numel():
                continue
            value = self.value[site.index][here].to(site.device) if isinstance(self.value, dict) else self.value
            self._placed[site.index] = (local.to(site.device), value)
        chosen = [s for s in sites if s.index in self._placed]
        self.handles = attach_activation_hooks(chosen, self._edit, sharded=True)
        return self

    def _edit(self, site: NeuronSite, pre: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        idx, value = self._placed[site.index]
        if self.mode == "zero":
            return act.index_fill(-1, idx, 0.0)
        if isinstance(value, torch.Tensor):
            value = value.to(act.dtype)
        current = act.index_select(-1, idx)
        if self.mode == "set":
            new = torch.zeros_like(current) + value
        elif self.mode == "scale":
            new = current * value
        else:  # add
            new = current + value
        return act.index_copy(-1, idx, new)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def _per_layer_values(
    mode: Effect, neurons: dict[int, torch.Tensor], value: float | torch.Tensor | None, shape: tuple[int, int]
) -> float | dict[int, torch.Tensor] | None:
    if mode == "zero":
        if value is not None:
            raise ValueError("`mode='zero'` takes no `value`; use `mode='set'` to set a constant.")
        return None
    if value is None:
        raise ValueError(
            f"`mode={mode!r}` needs `value=`: a number, or a per-neuron table `(layers, neurons)` such as "
            "`lsn.neuron_values(stats, group)`."
        )
    if not isinstance(value, torch.Tensor) or value.numel() == 1:
        return float(value)
    if tuple(value.shape) != shape:
        raise ValueError(
            f"A tensor `value` must be a scalar or a `(layers, neurons)` table {shape}, got {tuple(value.shape)}."
        )
    return {layer: value[layer, idx].float() for layer, idx in neurons.items()}


def apply_intervention(
    model: nn.Module,
    neurons: NeuronSpec,
    mode: Effect = "zero",
    value: float | torch.Tensor | None = None,
    *,
    groups: str | Iterable[str] | None = None,
) -> Intervention:
    """Attach an intervention until `.remove()` is called. Arguments as for `intervene`."""
    if mode not in EFFECTS:
        raise ValueError(f"Unknown `mode={mode!r}`; choose one of {', '.join(EFFECTS)}.")
    sites = find_neuron_sites(model)
    resolved = resolve_neurons(sites, neurons, groups)
    values = _per_layer_values(mode, resolved, value, ffn_shape(sites))
    return Intervention(mode, resolved, values).attach(sites)


@contextmanager
def intervene(
    model: nn.Module,
    neurons: NeuronSpec,
    mode: Effect = "zero",
    value: float | torch.Tensor | None = None,
    *,
    groups: str | Iterable[str] | None = None,
) -> Iterator[Intervention]:
    """Within the block, rewrite the activations of `neurons`:

    - `"zero"`: deactivate (Tang et al. 2024);
    - `"set"`: set to `value` (a constant: Mondal et al. tried +-1, +-10; or a table such as a group's mean,
      `lsn.neuron_values(stats, "fr")`);
    - `"scale"`: multiply by `value`;
    - `"add"`: add `value`; steering adds `lsn.neuron_values(stats, "fr", relative_to="others", strength=4)`.

    `neurons`: a `NeuronSet` (plus `groups=`), `{layer: [indices]}`, or one list per layer. `value`: a number, or
    a `(layers, neurons)` table (only the chosen neurons' entries are used). Hooks are removed on exit, also after
    an exception.
    """
    intervention = apply_intervention(model, neurons, mode, value, groups=groups)
    try:
        yield intervention
    finally:
        intervention.remove()
