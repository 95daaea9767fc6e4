"""Recording overhead: `record_activations` vs a plain inference forward over the same batches.

Both run the same batches through the same backbone in inference mode; the ratio is the cost
of the counting hooks (target: <= 1.05 on CPU, <= 1.02 on GPU). Also reported: tokens/s and the
ratio against a full forward with the LM head, which recording skips.
"""

from __future__ import annotations

import time

import torch
import transformers

import lsn
from lsn.models import first_device


def tiny_llama(hidden: int, intermediate: int, layers: int, vocab: int = 4096, device: str = "cpu", dtype=torch.float32):
    config = transformers.LlamaConfig(
        hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64), num_key_value_heads=max(1, hidden // 128), vocab_size=vocab,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).to(device=device, dtype=dtype).eval()


def _batches(n: int, batch: int, seq: int, vocab: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [{"input_ids": torch.randint(0, vocab, (batch, seq), generator=g),
             "attention_mask": torch.ones(batch, seq, dtype=torch.long)} for _ in range(n)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def measure(hidden=512, intermediate=2048, layers=4, batch=4, seq=256, n_batches=8, repeats=5, groups=1,
            device="cpu", dtype=torch.float32) -> dict[str, float]:
    model = tiny_llama(hidden, intermediate, layers, device=device, dtype=dtype)
    dev = first_device(model)
    batches = _batches(n_batches, batch, seq, model.config.vocab_size)
    per_group = max(1, n_batches // groups)
    corpora = {f"g{k}": batches[k * per_group:(k + 1) * per_group] for k in range(groups)}

    def plain(full: bool):
        def run():
            with torch.inference_mode():
                for b in batches[: per_group * groups]:
                    inputs = {k: v.to(dev) for k, v in b.items()}
                    (model if full else model.model)(**inputs, use_cache=False)
        return run

    def record():
        lsn.record_activations(model, corpora, progress=False)

    t_backbone = _time(plain(False), dev, repeats)
    t_full = _time(plain(True), dev, repeats)
    t_record = _time(record, dev, repeats)
    tokens = per_group * groups * batch * seq
    return {
        "record_over_backbone": t_record / t_backbone,
        "record_over_full_forward": t_record / t_full,
        "tokens_per_s": tokens / t_record,
    }


if __name__ == "__main__":
    for key, value in measure().items():
        print(f"{key:>28}: {value:.3f}")
