"""Task masks (Neuron Specialization, Tan et al. 2024): per direction, neurons outside its set are off.

For a batch of direction t, every FFN neuron outside t's set outputs exactly 0 in the forward
pass, so it gets no gradient from t; all other parameters train as usual. The same masks
apply in evaluation and generation. The reference code masked fc1's weight but not its bias;
here the activation itself is masked by default (`mode="activation"`), so a masked neuron outputs 0 whatever
its bias. `mode="weight_rows"` reproduces the reference: a masked neuron's pre-activation is its bias alone
(as if its fc1 row were zero), so it outputs `act(bias)` and its bias still trains.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

from ..hooks import activation_hooks
from ..models import NeuronSite, find_neuron_sites, resolve_neurons
from ..neuron_set import NeuronSet

__all__ = ["TaskMasks"]


class TaskMasks:
    """Per-task neuron masks attached to a model; `set_task` switches them between batches.

    `with masks.attached(model): masks.set_task("en-de"); model(...)`. With no task set
    (`None`), or a task without a set when `strict=False`, the model runs unmasked.
    """

    def __init__(
        self, neuron_set: NeuronSet, *, strict: bool = True, mode: Literal["activation", "weight_rows"] = "activation"
    ):
        if mode not in ("activation", "weight_rows"):
            raise ValueError(f"`mode` must be 'activation' or 'weight_rows', got {mode!r}.")
        self.neuron_set = neuron_set
        self.strict = strict
        self.mode = mode
        self.task: str | None = None
        self._masks: dict[tuple[str, int], torch.Tensor] = {}  # (task, layer) -> [neurons] on the layer's device

    @property
    def tasks(self) -> list[str]:
        return self.neuron_set.groups

    def set_task(self, task: str | None) -> None:
        if task is not None and task not in self.neuron_set and self.strict:
            raise KeyError(f"No neuron set for task `{task}`; tasks with masks: {self.tasks}.")
        self.task = task

    def _place(self, sites: list[NeuronSite]) -> None:
        """Each task's keep-mask per layer, resolved against the model once and put on the layer's device."""
        for task in self.tasks:
            keep = resolve_neurons(sites, self.neuron_set, task)
            for site in sites:
                mask = torch.zeros(site.local_neurons, dtype=torch.bool)  # this rank's shard under tensor parallelism
                if site.index in keep:
                    mask[site.local_indices(keep[site.index])[1]] = True
                self._masks[task, site.index] = mask.to(site.device)

    def _hook(self, site: NeuronSite, pre: torch.Tensor, act: torch.Tensor) -> torch.Tensor | None:
        if self.task is None or self.task not in self.neuron_set:
            return None
        # [..., neurons] * [neurons]: exact zeros and zero gradient outside the task's set
        keep = self._masks[self.task, site.index].to(act.dtype)
        if self.mode == "activation":
            return act * keep
        # as `W1 := m * W1` (the reference): a masked neuron's pre-activation is its bias, and the bias trains
        bias = getattr(site.input_modules[0], "bias", None)
        width = act.shape[-1]
        pre_masked = act.new_zeros(width) if bias is None else bias[:width].to(act.dtype)
        activation = site.activation  # its forward without its hooks (this hook is one of them)
        if isinstance(activation, nn.Module):
            fill = type(activation).forward(activation, pre_masked)
        else:
            fill = activation(pre_masked)
        return act * keep + fill * (1 - keep)

    @contextmanager
    def attached(self, model: nn.Module) -> Iterator[TaskMasks]:
        """Hook the masks into `model` for the block; they are removed on exit, also after errors."""
        sites = find_neuron_sites(model)
        self._place(sites)
        with activation_hooks(sites, self._hook, sharded=True):
            yield self

    @contextmanager
    def task_scope(self, task: str | None) -> Iterator[None]:
        """Set the task for the block and restore the previous one after."""
        previous = self.task
        self.set_task(task)
        try:
            yield
        finally:
            self.task = previous
