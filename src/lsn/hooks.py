"""Forward hooks on neuron activations: built apart from attaching, every handle kept and removed.

Callers pass a function of `(site, pre_activation, activation)`; it returns `None` to observe, or a tensor to
replace the activation. `activation_hooks` attaches for the span of a `with` block and removes in `finally`, so an
exception never leaves a hook behind; `attach_activation_hooks` returns the handles for a permanent attachment.
Every lsn component that reads or edits neuron activations (recording, interventions, task masks) goes through
this module.

Hooks must fire: a block whose forward computes its activation without calling the activation
module (a fused kernel, `F.silu(...)` in a custom forward) would give all-zero counts and no-op
interventions. `must_fire(sites)` checks, on every forward of each FFN block, that its activation
module ran and produced this process's width of neurons, and raises `HookNotFiredError` otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch.utils.hooks import RemovableHandle

from .models import NeuronSite, UnsupportedModelError

__all__ = [
    "ActivationFn",
    "HookNotFiredError",
    "activation_hooks",
    "attach_activation_hooks",
    "must_fire",
    "output_hooks",
]

ActivationFn = Callable[[NeuronSite, torch.Tensor, torch.Tensor], "torch.Tensor | None"]

_FIX = (
    "lsn hooks the activation module to see the neurons; describe where this model computes its activation with "
    "`lsn.register_mlp_family(lsn.MLPFamily(...))`, or disable the fused kernel (e.g. load without Liger / "
    "custom MLP kernels) so the activation module is called."
)


class HookNotFiredError(RuntimeError):
    """An FFN block ran but its activation module did not (or gave another width than expected)."""


def must_fire(sites: Iterable[NeuronSite], *, sharded: bool = False) -> list[RemovableHandle]:
    """Hooks that raise `HookNotFiredError` when a site's block runs without its activation module
    (or the activation's last dimension is not `site.local_neurons`). The caller removes the handles.

    `sharded=False` (a hook that indexes neurons by their global index) refuses, before any forward,
    a site whose neurons are split over tensor-parallel ranks.
    """
    handles = []
    for site in sites:
        if not sharded and site.neuron_range != (0, site.num_neurons):
            raise UnsupportedModelError(
                f"`{site.path}` holds neurons {site.neuron_range} of {site.num_neurons} on this rank (tensor "
                "parallelism); recording, interventions, steering and task masks support sharded FFNs, this "
                "reader does not yet. Load the model without `tp_plan` (e.g. `device_map='auto'` over the GPUs)."
            )
        fired = [False]
        width = site.local_neurons

        def before(module, args, _fired=fired):
            _fired[0] = False

        def seen(module, args, output, _site=site, _fired=fired, _width=width):
            if output.shape[-1] != _width:
                raise HookNotFiredError(
                    f"`{_site.path}.{_site.family.activation}` produced {output.shape[-1]} channels, but lsn expects "
                    f"{_width} neurons here (layer width {_site.num_neurons}, range {_site.neuron_range}); "
                    "a sharding lsn cannot read from the weights' placements, or another activation module. " + _FIX
                )
            _fired[0] = True

        def after(module, args, output, _site=site, _fired=fired):
            if not _fired[0]:
                raise HookNotFiredError(
                    f"`{_site.path}` ran but its activation module `{_site.path}.{_site.family.activation}` was not "
                    "called, so lsn would silently record zeros or leave interventions without effect. " + _FIX
                )

        # `prepend` so the width check sees the activation before any editing hook registered earlier
        handles.append(site.activation.register_forward_hook(seen, prepend=True))
        handles.append(site.block.register_forward_pre_hook(before))
        handles.append(site.block.register_forward_hook(after))
    return handles


def attach_activation_hooks(
    sites: Sequence[NeuronSite], fn: ActivationFn, *, check: bool = True, sharded: bool = False
) -> list[RemovableHandle]:
    """Call `fn(site, pre_activation, activation)` on every forward of each site's activation; the caller removes
    the returned handles.

    With `check` (the default), also `must_fire(sites, sharded=sharded)`: a block that runs without its activation
    module raises `HookNotFiredError` naming the module path. `sharded=True` when `fn` handles a tensor-parallel
    shard (`site.neuron_range`); otherwise sharded sites are refused.
    """
    handles: list[RemovableHandle] = []
    try:
        if check:
            handles += must_fire(sites, sharded=sharded)
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
def activation_hooks(
    sites: Sequence[NeuronSite], fn: ActivationFn, *, check: bool = True, sharded: bool = False
) -> Iterator[None]:
    """`attach_activation_hooks` for the span of the block; every hook is removed on exit, also after errors."""
    handles = attach_activation_hooks(sites, fn, check=check, sharded=sharded)
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def output_hooks(modules: Sequence[torch.nn.Module], fn: Callable[[int, torch.Tensor], None]) -> Iterator[None]:
    """Call `fn(i, hidden)` with the output hidden states of `modules[i]` (e.g. decoder layers: the residual
    stream) on every forward, for the span of the block; `fn` observes only."""
    handles = []
    try:
        for i, module in enumerate(modules):

            def hook(mod, args, output, _i=i):
                fn(_i, output[0] if isinstance(output, tuple) else output)

            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()
