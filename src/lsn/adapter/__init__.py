"""lsn's PEFT method: fine-tune only the selected FFN neurons (DESIGN.md §5).

Importing this package (or `lsn`) registers the method with PEFT, so the standard calls work:
`peft.get_peft_model(model, lsn.NeuronConfig(...))`, `save_pretrained`, `PeftModel.from_pretrained`,
`AutoPeftModelFor*.from_pretrained`, transformers' `model.load_adapter`, several named adapters, merging and
unloading. `peft.utils.register_peft_method` only accepts PEFT's own `PeftType` names, so lsn puts its own
`LsnPeftType.LSN` into the type -> config / tuner / prefix tables that those calls read; the prefix `"lsn_"` is
the lower-cased type plus `_`, as transformers' `load_adapter` assumes. (`PeftMixedModel` is not supported.)
`PeftModel.push_to_hub` uploads the adapter but replaces its model card; `lsn.adapter.push_to_hub` keeps it.
"""

from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

from .config import LsnPeftType, NeuronConfig
from .export import push_to_hub, to_lora
from .layer import NeuronLayer
from .model import NeuronModel

__all__ = ["LsnPeftType", "NeuronConfig", "NeuronLayer", "NeuronModel", "push_to_hub", "register", "to_lora"]


def register() -> None:
    """Put lsn's PEFT type into PEFT's registries (idempotent: re-importing or calling again is harmless)."""
    PEFT_TYPE_TO_CONFIG_MAPPING[LsnPeftType.LSN] = NeuronConfig
    PEFT_TYPE_TO_TUNER_MAPPING[LsnPeftType.LSN] = NeuronModel
    PEFT_TYPE_TO_PREFIX_MAPPING[LsnPeftType.LSN] = NeuronModel.prefix


register()
