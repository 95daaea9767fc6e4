"""Peak memory of the chunked NLL (`lsn.token_nll`) at Llama-3's vocabulary, in a fresh process.

The growth of the peak resident memory (`VmHWM`) over one call at vocab 128256 and batch 4 x 1024 on a Llama
with hidden 32 (so the LM head's logits dominate), next to what the float32 logits of the whole batch alone take.
"""

from __future__ import annotations

import json
import subprocess
import sys

from common import peak_rss_mib

VOCAB, BATCH, SEQ = 128256, 4, 1024


def _child() -> None:
    import torch
    import transformers

    from lsn.scoring import token_nll

    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=SEQ,
    )  # fmt: skip
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    ids = torch.randint(0, VOCAB, (BATCH, SEQ))
    with torch.inference_mode():
        model.model(input_ids=ids[:1, :8])
        before = peak_rss_mib()
        token_nll(model, ids)
        growth = peak_rss_mib() - before
    print(json.dumps({"peak_growth_mib": growth}))


def measure(device: str = "cpu") -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child"], capture_output=True, text=True, check=True)
    growth = json.loads(out.stdout.strip().splitlines()[-1])["peak_growth_mib"]
    full = BATCH * SEQ * VOCAB * 4 / 2**20
    return {"nll_peak_growth_mib_vocab128k_4x1024": growth, "nll_full_fp32_logits_mib": full}


if __name__ == "__main__":
    if "--child" in sys.argv:
        _child()
    else:
        print(measure())
