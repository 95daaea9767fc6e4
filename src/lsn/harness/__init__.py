"""lm-evaluation-harness integration: any benchmark under an lsn intervention or neuron adapter.

Importing this package registers the model `lsn` with lm-eval (`pip install "lsn[harness]"`):

    import lsn.harness, lm_eval
    lm_eval.simple_evaluate(model="lsn", tasks=["belebele_hin_Deva"],
                            model_args="pretrained=meta-llama/Llama-3.1-8B,neurons=neurons/,groups=hi,mode=zero")

    python -m lsn.harness --model lsn --model_args pretrained=...,neurons=neurons/,groups=hi --tasks xnli_hi
    lsn eval-matrix --model_args pretrained=...,neurons=neurons/ --tasks xnli_en,xnli_hi --output out/

The rest of lsn never imports lm-eval. The class itself (`LsnLM`, a subclass of lm-eval's
`HFLM`) loads lazily, as lm-eval's own models do.
"""

from __future__ import annotations

import lm_eval.models  # noqa: F401  (lm-eval's lazy model table: `hf` and the rest)
from lm_eval.api.registry import model_registry

model_registry.register("lsn", target="lsn.harness.model:LsnLM")

__all__ = ["HarnessMatrix", "LsnLM", "harness_matrix"]


def __getattr__(name: str):
    if name == "LsnLM":
        from .model import LsnLM

        return LsnLM
    if name in ("HarnessMatrix", "harness_matrix"):
        from . import matrix

        return getattr(matrix, name)
    raise AttributeError(f"module 'lsn.harness' has no attribute {name!r}")
