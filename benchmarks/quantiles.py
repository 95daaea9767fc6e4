"""Peak memory of the per-batch quantile estimate at a Llama-3.1-8B width, neuron chunks on vs off.

One FFN layer of 14336 neurons (hidden 64, so the FFN's own activations are what the forward holds), one
batch of 8 x 1024 = 8k tokens in bfloat16, recorded in a fresh process each: without quantiles, with
`quantile=0.9` chunked over neurons (`QUANTILE_CHUNK_BYTES`, the default) and unchunked (one chunk of all
neurons). The figure is the growth of the peak resident memory (`VmHWM`) over the call, beyond the loaded model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from common import peak_rss_mib

NEURONS, BATCH, SEQ = 14336, 8, 1024
DTYPE = "float32"


def _child(mode: str) -> None:
    import torch
    import transformers

    import lsn
    from lsn import recording

    if mode == "unchunked":
        recording.QUANTILE_CHUNK_BYTES = 2**62
    config = transformers.LlamaConfig(
        vocab_size=256, hidden_size=64, intermediate_size=NEURONS, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=SEQ,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).to(getattr(torch, DTYPE)).eval()
    ids = torch.randint(0, 256, (BATCH, SEQ), generator=torch.Generator().manual_seed(1))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    before = peak_rss_mib()
    lsn.record_activations(model, {"g": [batch]}, quantile=None if mode == "none" else 0.9, progress=False)
    growth = peak_rss_mib() - before
    print(json.dumps({"peak_growth_mib": growth}))


def measure(device: str = "cpu") -> dict[str, float]:
    out = {}
    for mode in ("none", "chunked", "unchunked"):
        run = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", mode], capture_output=True, text=True, check=True
        )
        out[f"quantile_peak_mib_14336x8k_{mode}"] = json.loads(run.stdout.strip().splitlines()[-1])["peak_growth_mib"]
    return out


if __name__ == "__main__":
    if "--child" in sys.argv:
        _child(sys.argv[sys.argv.index("--child") + 1])
    else:
        print(measure())
