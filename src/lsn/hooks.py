"""Forward hooks on neuron activations: built apart from attaching, every handle kept and removed.

Callers pass a function of `(site, pre_activation, activation)`; it returns `None` to observe, or a tensor to
replace the activation. `activation_hooks` attaches for the span of a `with` block and removes in `finally`, so an
exception never leaves a hook behind; `attach_activation_hooks` returns the handles for a permanent attachment.
Every lsn component that reads or edits neuron activations (recording, interventions, task masks) goes through
this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch.utils.hooks import RemovableHandle

from .models import NeuronSite

__all__ = ["ActivationFn", "activation_hooks", "attach_activation_hooks"]

ActivationFn = Callable[[NeuronSite, torch.Tensor, torch.Tensor], "torch.Tensor | None"]


def attach_activation_hooks(sites: Sequence[NeuronSite], fn: ActivationFn) -> list[RemovableHandle]:
    """Call `fn(site, pre_activation, activation)` on every forward of each site's activation; the caller removes
    the returned handles."""
    handles = []
    try:
        for site in sites:

            def hook(module, args, output, _site=site):
                return fn(_site, args[0], output)

            handles.append(site.activation.register_forward_hook(hook))
    except BaseException:
        for handle in handles:
            handle.remove()
        raise
    return handles


@contextmanager
def activation_hooks(sites: Sequence[NeuronSite], fn: ActivationFn) -> Iterator[None]:
    """`attach_activation_hooks` for the span of the block."""
    handles = attach_activation_hooks(sites, fn)
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
