"""Run by test_scoring in a fresh process: peak RSS growth of `token_nll` at Llama-3's vocabulary.

Prints one JSON line: the growth of `VmHWM` over the call (the kernel's high-water mark of the
process's resident memory; torch's CPU allocator returns large buffers to the OS, so the mark follows
live tensors), and the largest difference to the model's own per-sequence loss computed afterwards.
"""

import json
import pathlib
import resource
import sys

import torch
import transformers

from lsn.scoring import token_nll


def peak_mib() -> float:
    """Peak resident memory: `VmHWM` starts afresh at exec (`ru_maxrss` is inherited from the parent)."""
    status = pathlib.Path("/proc/self/status")
    for line in status.read_text(encoding="ascii").splitlines() if status.exists() else []:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    vocab, batch, seq = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    config = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=seq,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    ids = torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, seq // 2 :] = 0  # one padded row
    with torch.inference_mode():
        model.model(input_ids=ids[:1, :8])  # warm-up: first-call allocations are not the scorer's
        before = peak_mib()
        nll = token_nll(model, ids, mask)
        growth = peak_mib() - before
        diffs = []
        for row in (0, 1):  # the model's own loss on a full and a padded row, one at a time (memory)
            labels = ids[row : row + 1].masked_fill(mask[row : row + 1] == 0, -100)
            loss = model(input_ids=ids[row : row + 1], attention_mask=mask[row : row + 1], labels=labels).loss
            ours = nll[row].sum() / mask[row, 1:].sum()
            diffs.append(abs(float(loss) - float(ours)))
    print(
        json.dumps(
            {"peak_growth_mib": growth, "max_loss_diff": max(diffs), "mean_nll": float(nll.sum() / mask[:, 1:].sum())}
        )
    )
