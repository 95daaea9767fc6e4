"""Task masks (Neuron Specialization, Tan et al. 2024): per direction, neurons outside its set are off.

For a batch of direction t, every FFN neuron outside t's set outputs exactly 0 in the forward
pass, so it gets no gradient from t; all other parameters train as usual. The same masks
apply in evaluation and generation. The reference code masked fc1's weight but not its bias;
here the activation itself is masked, so a masked neuron outputs 0 whatever its bias.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..hooks import activation_hooks
from ..models import NeuronSite, find_neuron_sites
from ..neuron_set import NeuronSet

__all__ = ["TaskMasks"]


class TaskMasks:
    """Per-task neuron masks attached to a model; `set_task` switches them between batches.

    `with masks.attached(model): masks.set_task("en-de"); model(...)`. With no task set
    (`None`), or a task without a set when `strict=False`, the model runs unmasked.
    """

    def __init__(self, neuron_set: NeuronSet, *, strict: bool = True):
        self.neuron_set = neuron_set
        self.strict = strict
        self.task: str | None = None
        masks = neuron_set.masks()  # [tasks, layers, neurons]
        self._masks = {task: masks[k] for k, task in enumerate(neuron_set.groups)}
        self._on_device: dict[tuple[str, int, torch.device, torch.dtype], torch.Tensor] = {}

    @property
    def tasks(self) -> list[str]:
        return list(self._masks)

    def set_task(self, task: str | None) -> None:
        if task is not None and task not in self._masks and self.strict:
            raise KeyError(f"No neuron set for task `{task}`; tasks with masks: {self.tasks}.")
        self.task = task

    def _mask(self, layer: int, like: torch.Tensor) -> torch.Tensor:
        key = (self.task, layer, like.device, like.dtype)
        if key not in self._on_device:
            self._on_device[key] = self._masks[self.task][layer].to(device=like.device, dtype=like.dtype)
        return self._on_device[key]

    def _hook(self, site: NeuronSite, pre: torch.Tensor, act: torch.Tensor) -> torch.Tensor | None:
        if self.task is None or self.task not in self._masks:
            return None
        return act * self._mask(site.index, act)  # [..., neurons] * [neurons]: exact zeros, zero gradient

    @contextmanager
    def attached(self, model: nn.Module) -> Iterator[TaskMasks]:
        """Hook the masks into `model` for the block; they are removed on exit, also after errors."""
        self.neuron_set.check_compatible(model)
        with activation_hooks(find_neuron_sites(model), self._hook):
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
