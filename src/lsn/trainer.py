"""`NeuronTrainer`: a `transformers.Trainer` that wraps its model with a PEFT adapter, as TRL's trainers do.

What it adds to `Trainer`, and nothing else:
- `peft_config=` (lsn's `NeuronConfig`, a `LoraConfig`, any PEFT config, or None) wraps a plain model with
  `peft.get_peft_model`; `neurons=` / `neuron_groups=` are a shorthand for `peft_config=NeuronConfig(...)`;
- it logs the trainable parameters and the neurons trained per layer.
Checkpoints are PEFT's: the adapter config holds the neurons (once) and the model card lsn's section. Resuming
(`trainer.train(resume_from_checkpoint=...)`) is `Trainer`'s own, so a resumed run ends where an uninterrupted one
does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from peft import PeftConfig, PeftModel, get_peft_model
from torch import nn
from transformers import Trainer

from .adapter import NeuronConfig
from .neuron_set import NeuronSet

logger = logging.getLogger(__name__)

__all__ = ["NeuronTrainer"]


def _shorthand(
    peft_config: PeftConfig | None, neurons: NeuronSet | None, neuron_groups: str | Iterable[str] | None
) -> PeftConfig | None:
    """The one adapter config `peft_config` / `neurons` + `neuron_groups` ask for; conflicting ones are refused."""
    if neurons is None:
        if neuron_groups is not None:
            raise ValueError("`neuron_groups` selects groups of `neurons=`, which was not given.")
        return peft_config
    groups = [neuron_groups] if isinstance(neuron_groups, str) else neuron_groups
    wanted = NeuronConfig(neurons=neurons, groups=list(groups) if groups is not None else None)
    if peft_config is None:
        return wanted
    if not isinstance(peft_config, NeuronConfig) or peft_config.neurons != wanted.neurons:
        raise ValueError(
            "`neurons=` and `peft_config=` name different neurons, so one would train and the other be reported. "
            "Pass `peft_config=lsn.NeuronConfig(neurons=..., groups=..., <options>)` alone."
        )
    return peft_config


class NeuronTrainer(Trainer):
    """`Trainer` for neuron-restricted (or any PEFT) fine-tuning.

    Args:
        model: a transformers model, or a model already wrapped by PEFT (then no `peft_config` / `neurons`).
        args: `TrainingArguments`.
        peft_config (`PeftConfig`, *optional*): the adapter to wrap `model` with: `lsn.NeuronConfig` (only the
            selected neurons train), `peft.LoraConfig`, ...; `None` trains `model` as it is.
        neurons (`NeuronSet`, *optional*): shorthand for `peft_config=NeuronConfig(neurons=neurons,
            groups=neuron_groups)` with default options.
        neuron_groups (`str` or `list[str]`, *optional*): the groups of `neurons` to train (their union).
        Other arguments are `Trainer`'s.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        args=None,
        *,
        peft_config: PeftConfig | None = None,
        neurons: NeuronSet | None = None,
        neuron_groups: str | Iterable[str] | None = None,
        **kwargs,
    ):
        peft_config = _shorthand(peft_config, neurons, neuron_groups)
        if peft_config is not None:
            if isinstance(model, PeftModel):
                raise ValueError(
                    "`model` is already a PeftModel: pass it without `peft_config` / `neurons`, or pass the base "
                    "model to have NeuronTrainer wrap it."
                )
            model = get_peft_model(model, peft_config)
        super().__init__(model=model, args=args, **kwargs)
        self._log_trainable()

    def _log_trainable(self) -> None:
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.model.parameters())
        logger.info("trainable parameters: %d of %d (%.4f%%)", trainable, total, 100 * trainable / max(total, 1))
        config = getattr(self.model, "peft_config", {}).get(getattr(self.model, "active_adapter", None))
        if isinstance(config, NeuronConfig):
            per_layer = {int(layer): len(idx) for layer, idx in config.neurons.items()}
            logger.info("neurons trained: %d (per layer %s)", sum(per_layer.values()), per_layer)
