"""Language Arithmetics (Gurgurov et al. 2025): steer generation from one language to another.

The source language's neurons are deactivated and the target's are pushed towards the target:
`act += strength * (mean_target - mean_others)` (additive, `relative_to="others"`), `+= strength *
mean_target` (`relative_to=None`), or `act *= strength` (`multiplicative=True`). Both edits are
today's `lsn.intervene` modes, built by one helper (`steering_interventions`), so `steer` equals
applying them by hand and composes with other interventions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from torch import nn

from .intervention import Intervention, Statistic, apply_intervention, neuron_values
from .neuron_set import NeuronSet
from .stats import ActivationStats

__all__ = ["check_steering_pair", "steer", "steering_interventions"]


def check_steering_pair(
    neurons: NeuronSet, source: str, target: str, stats: ActivationStats | None, deactivate_source: bool = True
) -> None:
    """Raise before any work when a pair cannot be steered (missing group, no neurons, no sums)."""
    if source == target:
        raise ValueError(f"Source and target are both `{source}`; steering needs two languages.")
    needed = [target, source] if deactivate_source else [target]
    for group in needed:
        if group not in neurons:
            raise ValueError(f"No group `{group}` in the neuron set (groups: {neurons.groups}).")
        if not sum(int(idx.numel()) for idx in neurons[group]):
            raise ValueError(
                f"Group `{group}` has no neurons, so the pair {source}->{target} cannot be steered; "
                "select with a larger rate, or drop the pair."
            )
    if stats is not None:
        if target not in stats.groups:
            raise ValueError(f"The statistics have no group `{target}` (groups: {stats.groups}).")
        if stats.sums is None:
            raise ValueError("Steering adds mean activations: record the statistics with `record_sums=True`.")


def steering_interventions(
    model: nn.Module,
    neurons: NeuronSet,
    *,
    source: str,
    target: str,
    stats: ActivationStats | None,
    strength: float = 4.0,
    deactivate_source: bool = True,
    relative_to: str | Sequence[str] | None = "others",
    multiplicative: bool = False,
    statistic: Statistic = "mean",
) -> list[Intervention]:
    """Attach the two edits (zero the source's neurons, then push the target's); the caller removes them."""
    check_steering_pair(neurons, source, target, None if multiplicative else stats, deactivate_source)
    if not multiplicative and stats is None:
        raise ValueError("Additive steering needs `stats=` (recorded with `record_sums=True`).")
    attached = []
    try:
        if deactivate_source:
            attached.append(apply_intervention(model, neurons, "zero", groups=source))
        if multiplicative:
            attached.append(apply_intervention(model, neurons, "scale", strength, groups=target))
        else:
            push = neuron_values(stats, target, statistic=statistic, relative_to=relative_to, strength=strength)
            attached.append(apply_intervention(model, neurons, "add", push, groups=target))
    except Exception:
        for intervention in attached:
            intervention.remove()
        raise
    return attached


@contextmanager
def steer(
    model: nn.Module,
    neurons: NeuronSet,
    *,
    source: str,
    target: str,
    stats: ActivationStats | None,
    strength: float = 4.0,
    deactivate_source: bool = True,
    relative_to: str | Sequence[str] | None = "others",
    multiplicative: bool = False,
) -> Iterator[list[Intervention]]:
    """Within the block, steer from `source` to `target` with their neurons (Language Arithmetics).

    Args:
        neurons (`NeuronSet`): holds both groups (e.g. LAPE neurons).
        stats (`ActivationStats`): recorded with `record_sums=True` (the mean activations).
        strength (`float`, *optional*, defaults to 4.0): the multiple of the mean difference added
            (or the factor, with `multiplicative=True`).
        deactivate_source (`bool`, *optional*, defaults to `True`): zero the source's neurons first.
        relative_to (`"others"` | groups | `None`): subtract the mean of these groups from the
            target's mean (`None`: add the target's mean itself).
        multiplicative (`bool`, *optional*, defaults to `False`): scale the target's neurons by
            `strength` instead of adding.
    """
    attached = steering_interventions(
        model,
        neurons,
        source=source,
        target=target,
        stats=stats,
        strength=strength,
        deactivate_source=deactivate_source,
        relative_to=relative_to,
        multiplicative=multiplicative,
    )
    try:
        yield attached
    finally:
        for intervention in attached:
            intervention.remove()
