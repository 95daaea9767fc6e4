"""Generation under an intervention: a group's neurons deactivated, set, scaled or steered."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .intervention import Effect, intervene
from .models import NeuronSpec, first_device

__all__ = ["generate"]


def generate(
    model: nn.Module,
    tokenizer,
    prompts: str | list[str],
    neurons: NeuronSpec | None = None,
    mode: Effect = "zero",
    value: float | torch.Tensor | None = None,
    *,
    groups: str | Iterable[str] | None = None,
    max_new_tokens: int = 40,
    do_sample: bool = False,
    **generate_kwargs,
) -> list[str]:
    """Continue `prompts` with `model.generate`, the intervention active at every step.

    Without `neurons` this is plain generation (the baseline to compare with). E.g. deactivate
    the French neurons: `generate(model, tok, "Le chat", neuron_set, "zero", groups="fr")`;
    amplify them: `mode="scale", value=2.0`; steer towards French:
    `mode="add", value=lsn.neuron_values(stats, "fr", relative_to="others", strength=4.0)`.
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"  # decoder LMs continue on the right
    try:
        inputs = tokenizer(prompts, return_tensors="pt", padding=True).to(first_device(model))
    finally:
        tokenizer.padding_side = padding_side
    kwargs = {"max_new_tokens": max_new_tokens, "do_sample": do_sample, "pad_token_id": tokenizer.pad_token_id}
    kwargs |= generate_kwargs

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model.generate(**inputs, **kwargs)

    if neurons is None:
        output = run()
    else:
        with intervene(model, neurons, mode, value, groups=groups):
            output = run()
    new_tokens = output[:, inputs["input_ids"].shape[1] :]
    return tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
