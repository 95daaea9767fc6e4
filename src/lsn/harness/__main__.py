"""`python -m lsn.harness ...`: lm-eval's own command line, with the `lsn` model registered.

    python -m lsn.harness run --model lsn --tasks xcopa_tr \\
        --model_args pretrained=meta-llama/Llama-3.1-8B,neurons=neurons/,groups=tr,mode=zero
"""

from __future__ import annotations

from lm_eval.__main__ import cli_evaluate

from . import model_registry  # noqa: F401  (importing the package registers `lsn`)

if __name__ == "__main__":
    cli_evaluate()
