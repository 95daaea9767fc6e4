"""Getting an adapter out: `to_lora` (an ordinary PEFT LoRA adapter, same outputs) and `push_to_hub`.

A dense LoRA whose B has zero rows outside the neurons (rows) or whose A has zero columns outside them (columns)
is exactly the neuron adapter, so standard LoRA serving can load the export. Full mode becomes a LoRA of rank
k_max = the most channels of any adapted matrix, with lora_alpha = rank (scaling 1): a 0/1 selection factor and
the trained delta, zero-padded to k_max (a uniform rank, which serving engines require).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model_state_dict
from safetensors.torch import save_file
from torch import nn

from ..hub import upload_saved
from ..models import is_conv1d
from .config import NeuronConfig, write_card_section
from .layer import NeuronLayer

__all__ = ["push_to_hub", "to_lora"]

_PREFIX = "base_model.model."


def _dense_factors(layer: NeuronLayer, adapter_name: str, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """LoRA factors (A: rank x in, B: out x rank) equal to the layer's adapter, for `lora_alpha / r` kept (LoRA
    mode) or equal to 1 (full mode)."""
    idx = layer.lsn_indices[adapter_name]
    steps = torch.arange(len(idx), device=idx.device)
    if layer.lsn_mode[adapter_name] == "lora":
        A_c, B_c = layer.lsn_A[adapter_name].detach(), layer.lsn_B[adapter_name].detach()
        if layer.lsn_axis == "rows":
            return A_c, B_c.new_zeros(layer.out_features, rank).index_copy(0, idx, B_c)
        return A_c.new_zeros(rank, layer.in_features).index_copy(1, idx, A_c), B_c
    delta = layer.lsn_delta[adapter_name].detach()  # rows: k x in; columns: out x k
    A = delta.new_zeros(rank, layer.in_features)
    B = delta.new_zeros(layer.out_features, rank)
    if layer.lsn_axis == "rows":
        A[: len(idx)] = delta
        B[idx, steps] = 1
    else:
        A[steps, idx] = 1
        B[:, : len(idx)] = delta
    return A, B


def to_lora(
    source: PeftModel | str | os.PathLike,
    save_directory: str | os.PathLike,
    *,
    adapter_name: str = "default",
    base_model: nn.Module | None = None,
) -> Path:
    """Write an lsn adapter as a PEFT LoRA adapter (`adapter_config.json`, `adapter_model.safetensors`, card).

    Args:
        source (`PeftModel` or `str`): a PEFT model holding the lsn adapter, or the adapter's saved folder.
        save_directory (`str`): where to write the LoRA adapter.
        adapter_name (`str`, *optional*, defaults to `"default"`): the adapter to export.
        base_model (`nn.Module`, *optional*): the base model to load a saved folder onto (required with a
            folder; it is restored unchanged afterwards).

    Returns the folder, loadable with `peft.PeftModel.from_pretrained(base_model, folder)`.
    """
    loaded = not isinstance(source, PeftModel)
    if loaded:
        if base_model is None:
            raise ValueError(
                f"`base_model` is required to export the saved adapter `{source}`: pass the model it "
                "was trained on, e.g. `to_lora(folder, out, base_model=model)`."
            )
        source = PeftModel.from_pretrained(base_model, str(source), adapter_name=adapter_name)
    try:
        config = source.peft_config.get(adapter_name)
        if not isinstance(config, NeuronConfig):
            raise TypeError(
                f"Adapter `{adapter_name}` is not an lsn neuron adapter ({type(config).__name__}); "
                f"adapters: {list(source.peft_config)}."
            )
        layers = {
            name: m
            for name, m in source.base_model.model.named_modules()
            if isinstance(m, NeuronLayer) and adapter_name in m.lsn_indices
        }
        rank = config.r if config.mode == "lora" else max(len(m.lsn_indices[adapter_name]) for m in layers.values())
        state = {
            k: v
            for k, v in get_peft_model_state_dict(source, adapter_name=adapter_name).items()
            if not any(k.startswith(f"{_PREFIX}{name}.lsn_") for name in layers)
        }
        for name, layer in layers.items():
            A, B = _dense_factors(layer, adapter_name, rank)
            state[f"{_PREFIX}{name}.lora_A.weight"] = A.contiguous()
            state[f"{_PREFIX}{name}.lora_B.weight"] = B.contiguous()
        lora = LoraConfig(
            r=rank,
            lora_alpha=config.lora_alpha if config.mode == "lora" else rank,
            lora_dropout=config.lora_dropout,
            target_modules=sorted(layers),
            fan_in_fan_out=any(is_conv1d(m.get_base_layer()) for m in layers.values()),
            modules_to_save=config.modules_to_save,
            base_model_name_or_path=config.base_model_name_or_path,
            revision=config.revision,
            task_type=config.task_type,
        )
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in state.items()},
            str(out / "adapter_model.safetensors"),
            metadata={"format": "pt"},
        )
        lora.save_pretrained(str(out))
        write_card_section(out, config, lora_rank=rank)
    finally:
        if loaded:
            source.unload()
    return out


def push_to_hub(
    model: PeftModel,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload lsn neuron adapter",
) -> str:
    """Create (if needed) and upload to a hub repository what `model.save_pretrained` writes, lsn's model card
    included; returns the commit URL.

    `PeftModel.push_to_hub` (transformers' mixin) also uploads the adapter, but replaces `README.md` with a
    generic card after saving, so the neuron method, parameters and per-layer counts would be lost.
    """
    return upload_saved(model.save_pretrained, repo_id, private=private, token=token, commit_message=commit_message)
