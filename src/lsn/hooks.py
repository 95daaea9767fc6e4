"""Forward hooks on neuron activations, attached for the span of a `with` block only.

Building a hook is separate from attaching it: callers pass a function of
`(site, pre_activation, activation)`; it returns `None` to observe, or a tensor to replace
the activation. Every handle is kept and removed in `finally`, so an exception never leaves
a hook behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch

from .models import NeuronSite

__all__ = ["ActivationFn", "activation_hooks"]

ActivationFn = Callable[[NeuronSite, torch.Tensor, torch.Tensor], "torch.Tensor | None"]


@contextmanager
def activation_hooks(sites: Sequence[NeuronSite], fn: ActivationFn) -> Iterator[None]:
    """Call `fn(site, pre_activation, activation)` on every forward of each site's activation."""
    handles = []
    try:
        for site in sites:

            def hook(module, args, output, _site=site):
                return fn(_site, args[0], output)

            handles.append(site.activation.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()
