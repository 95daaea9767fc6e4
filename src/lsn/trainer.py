"""`NeuronTrainer`: a `transformers.Trainer` that fine-tunes only selected neurons.

What it adds to `Trainer`, and nothing else:
- it wraps a plain model with lsn's PEFT adapter (`NeuronConfig`) when given neurons or a config;
- it logs the trainable parameters and the neurons trained per layer;
- it saves the neuron set (`neurons/neurons.json` + model card) with every checkpoint and the final model.
Resuming (`trainer.train(resume_from_checkpoint=...)`) is `Trainer`'s own: adapter weights,
optimizer, scheduler and RNG states are restored, so a resumed run ends where an uninterrupted one does.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from pathlib import Path

from peft import PeftModel, get_peft_model
from torch import nn
from transformers import Trainer

from .adapter import NeuronConfig
from .neuron_set import NeuronSet

logger = logging.getLogger(__name__)

__all__ = ["NeuronTrainer"]


class NeuronTrainer(Trainer):
    """`Trainer` for neuron-restricted fine-tuning.

    Args:
        model: a transformers model, or a model already wrapped by PEFT (then no `neuron_config`;
            `neurons` only names what it trains, for logs and checkpoints).
        neurons (`NeuronSet`, *optional*): the neurons to train; saved with each checkpoint.
        neuron_groups (`str` or `list[str]`, *optional*): the groups of `neurons` to train (their union).
        neuron_config (`NeuronConfig`, *optional*): how to train them (mode, rank, target modules ...);
            by default `NeuronConfig(neurons=neurons, groups=neuron_groups)`.
        Other arguments are `Trainer`'s.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        args=None,
        *,
        neurons: NeuronSet | None = None,
        neuron_groups: str | Iterable[str] | None = None,
        neuron_config: NeuronConfig | None = None,
        **kwargs,
    ):
        if isinstance(neuron_groups, str):
            neuron_groups = [neuron_groups]
        if isinstance(model, PeftModel) and neuron_config is not None:
            raise ValueError(
                "`model` is already a PeftModel: pass it without `neuron_config` (`neurons` may still "
                "name what it trains), or pass the base model to have NeuronTrainer wrap it."
            )
        if neurons is not None:
            neurons.check_compatible(model)
        if not isinstance(model, PeftModel) and (neuron_config is not None or neurons is not None):
            config = neuron_config or NeuronConfig(
                neurons=neurons, groups=list(neuron_groups) if neuron_groups else None
            )
            if config.neurons is None:
                config = dataclasses.replace(
                    config, neurons=neurons, groups=list(neuron_groups) if neuron_groups else None
                )
            model = get_peft_model(model, config)
        super().__init__(model=model, args=args, **kwargs)
        self.neuron_set = neurons.subset(neuron_groups) if neurons is not None and neuron_groups else neurons
        self._log_trainable()

    def _log_trainable(self) -> None:
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.model.parameters())
        logger.info("trainable parameters: %d of %d (%.4f%%)", trainable, total, 100 * trainable / max(total, 1))
        if self.neuron_set is not None:
            per_layer = [int(idx.numel()) for idx in self.neuron_set.union()]
            logger.info("neurons trained: %d (per layer %s)", sum(per_layer), per_layer)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        super()._save(output_dir, state_dict)
        if self.neuron_set is not None:
            self.neuron_set.save_pretrained(Path(output_dir or self.args.output_dir) / "neurons")
