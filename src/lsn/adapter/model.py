"""`NeuronModel`: the PEFT tuner that puts `NeuronLayer`s on the FFN matrices of lsn's neuron sites."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from peft.tuners.tuners_utils import BaseTuner
from torch import nn

from ..models import NeuronSite, check_shape, ffn_shape, find_neuron_sites, linear_features, resolve_neurons
from .config import NeuronConfig
from .layer import Axis, NeuronLayer

__all__ = ["NeuronModel", "NeuronTarget", "plan_targets"]


@dataclass(frozen=True)
class NeuronTarget:
    """One matrix to adapt: which axis holds the neurons, and the channels (rows or columns) to train."""

    axis: Axis
    channels: torch.Tensor


def _fused_rows(indices: torch.Tensor, blocks: int, num_neurons: int, choice: str) -> torch.Tensor:
    """Rows of neuron indices in an input matrix that stacks `blocks` neuron blocks (Phi-3: gate then up)."""
    if blocks == 1:
        return indices
    chosen = {"both": range(blocks), "gate": [0], "up": [1]}[choice]
    return torch.cat([indices + b * num_neurons for b in chosen])


def plan_targets(sites: Sequence[NeuronSite], config: NeuronConfig) -> dict[str, NeuronTarget]:
    """Module path -> what to train, for every FFN matrix of `config.target_modules` in a layer with neurons.

    Raises `ValueError` for a neuron set of another model shape, out-of-range layers or indices, and target
    module names that are not FFN matrices of this model.
    """
    check_shape(sites, config.num_layers, config.num_neurons, config.neuron_model or "unknown model")
    neurons = resolve_neurons(sites, config.neurons)
    num_neurons = ffn_shape(sites)[1]
    arch = type(sites[0].block).__name__
    rows = sorted({name for s in sites for name in s.family.inputs})
    columns = sorted({s.family.output for s in sites})
    wanted = config.target_modules or rows + columns
    if unknown := [name for name in wanted if name not in rows + columns]:
        raise ValueError(
            f"`target_modules` {unknown} are not FFN matrices of this model: lsn trains the neurons' rows of {rows} "
            f"and columns of {columns}. Choose among those, or leave `target_modules` unset for all of them."
        )
    if config.fused_gate_up != "both" and all(s.family.fused_inputs == 1 for s in sites):
        warnings.warn(
            f"`fused_gate_up`={config.fused_gate_up!r} is ignored: {arch} has no fused gate/up matrix.", stacklevel=2
        )
    targets: dict[str, NeuronTarget] = {}
    for site in sites:
        if site.index not in neurons:
            continue
        indices = neurons[site.index]
        for name in site.family.inputs:
            if name in wanted:
                channels = _fused_rows(indices, site.family.fused_inputs, num_neurons, config.fused_gate_up)
                targets[f"{site.path}.{name}"] = NeuronTarget("rows", channels)
        if site.family.output in wanted:
            targets[f"{site.path}.{site.family.output}"] = NeuronTarget("columns", indices)
    return targets


def dense_targets(model: nn.Module, sites: Sequence[NeuronSite], config: NeuronConfig) -> dict[str, NeuronTarget]:
    """Module path -> every output row, for the linear modules named in `config.dense_lora_modules` outside the
    FFN blocks (a row-restricted LoRA on all rows is a plain LoRA)."""
    if not config.dense_lora_modules:
        return {}
    ffn = tuple(f"{s.path}." for s in sites)
    targets = {}
    for path, module in model.named_modules():
        if path.rsplit(".", 1)[-1] in config.dense_lora_modules and not path.startswith(ffn):
            try:
                _, out_features = linear_features(module)
            except (TypeError, ValueError, AttributeError):
                continue
            targets[path] = NeuronTarget("rows", torch.arange(out_features))
    found = {path.rsplit(".", 1)[-1] for path in targets}
    if missing := [name for name in config.dense_lora_modules if name not in found]:
        raise ValueError(
            f"`dense_lora_modules` {missing} name no linear module outside the FFN blocks of this model; "
            "name attention projections such as q_proj, k_proj, v_proj."
        )
    return targets


class NeuronModel(BaseTuner):
    """Adds neuron adapters ([`NeuronConfig`]) to a transformers model: only the selected FFN neurons' rows and
    columns train. Created by `peft.get_peft_model(model, lsn.NeuronConfig(...))` once `lsn` is imported.

    Targets come from lsn's neuron sites (`lsn.find_neuron_sites`), not from module-name patterns: every FFN
    matrix named in `target_modules` (default: all of the family) of every layer that has selected neurons.

    Example:

        ```py
        >>> import lsn, peft
        >>> neurons = lsn.NeuronSet.load("neurons.json")
        >>> config = lsn.NeuronConfig(neurons=neurons, groups=["fr"], r=8, lora_alpha=16)
        >>> model = peft.get_peft_model(base_model, config)
        ```
    """

    prefix: str = "lsn_"
    tuner_layer_cls = NeuronLayer
    target_module_mapping: dict[str, list[str]] = {}  # targets come from the neuron sites

    def _prepare_adapter_config(self, peft_config: NeuronConfig, model_config: dict) -> NeuronConfig:
        return peft_config  # `target_modules=None` means every FFN matrix, resolved against the model below

    def _prepare_model(self, peft_config: NeuronConfig, model: nn.Module) -> None:
        sites = find_neuron_sites(model)  # once per adapter: the plan below is all later steps use
        self._lsn_targets = plan_targets(sites, peft_config) | dense_targets(model, sites, peft_config)
        if peft_config.num_layers is None:  # record the shape: a reload onto another shape is refused
            peft_config.num_layers, peft_config.num_neurons = ffn_shape(sites)

    def _check_target_module_exists(self, peft_config: NeuronConfig, key: str) -> bool:
        return key in self._lsn_targets

    def _create_and_replace(
        self,
        peft_config: NeuronConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        **optional_kwargs,
    ) -> None:
        plan = self._lsn_targets[current_key]
        if isinstance(target, NeuronLayer):
            target.update_layer(adapter_name, plan.channels, peft_config)
            return
        new_module = NeuronLayer(target, adapter_name, plan.channels, plan.axis, peft_config)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)  # an added adapter is not trainable until it is set active
        self._replace_module(parent, target_name, new_module, target)

    def _check_merge_allowed(self) -> None:
        super()._check_merge_allowed()
        for module in self.model.modules():
            if isinstance(module, NeuronLayer):
                module.check_mergeable()
