"""`LsnLM`: lm-eval's `hf` model with an lsn intervention (or neuron adapter) on the loaded model.

Registered with lm-eval as `lsn` (see `lsn.harness`). It takes every `hf` model argument plus
lsn's keys (`spec.LSN_KEYS`), checked before anything loads; `peft=` is `hf`'s own argument and
loads lsn neuron adapters too, since importing lsn registers the method with PEFT. Without lsn's
keys it is the `hf` model exactly.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from .spec import LsnArgs, attach, check_known_keys, describe, is_local_path, parse_lsn_args

__all__ = ["LsnLM", "hf_model_keys"]

logger = logging.getLogger("lsn.harness")


def hf_model_keys() -> set[str]:
    """The named arguments of lm-eval's `hf` model (its constructor and its model loader)."""
    keys = set()
    for fn in (HFLM.__init__, HFLM._create_model):
        keys |= {
            name
            for name, p in inspect.signature(fn).parameters.items()
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        }
    return keys - {"gpus", "quantization_config"}  # set by HFLM itself


def _check_peft(peft) -> None:
    if peft is None or not isinstance(peft, str) or not is_local_path(peft):
        return
    path = Path(peft).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise ValueError(
            f"`peft={peft}`: no adapter_config.json there. Pass the directory `save_pretrained` wrote "
            "for the adapter (lsn's `NeuronConfig` or any PEFT method), or a hub id."
        )


@register_model("lsn")
class LsnLM(HFLM):
    """lm-eval's `hf` model, plus lsn's `model_args` keys applied as hooks after the model loads.

    `lsn_args` holds the parsed keys, `interventions` the attached hooks (`remove_interventions()`
    detaches them).
    """

    def __init__(self, pretrained, **kwargs) -> None:
        check_known_keys(kwargs, hf_model_keys())
        self.lsn_args, hf_kwargs = parse_lsn_args(kwargs)  # loads only the neuron set / statistics
        _check_peft(hf_kwargs.get("peft"))
        super().__init__(pretrained, **hf_kwargs)
        self.interventions = []
        self.apply(self.lsn_args)

    def apply(self, spec: LsnArgs) -> None:
        """Attach `spec`'s intervention to the loaded model (on top of any already attached)."""
        if spec.active:
            logger.info("lsn: %s", describe(spec))
        self.interventions += attach(self.model, spec)

    def remove_interventions(self) -> None:
        for intervention in self.interventions:
            intervention.remove()
        self.interventions = []
