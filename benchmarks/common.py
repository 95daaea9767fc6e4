"""Shared benchmark helpers: a Llama of a given shape, device sync, best-of-N timing."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import transformers


def tiny_llama(
    hidden: int,
    intermediate: int,
    layers: int,
    vocab: int = 4096,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    heads: int | None = None,
) -> transformers.LlamaForCausalLM:
    """A randomly initialised Llama (seeded); the same shape gives the same weights."""
    heads = heads or max(1, hidden // 64)
    config = transformers.LlamaConfig(
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 4),
        vocab_size=vocab,
        max_position_embeddings=8192,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.LlamaForCausalLM(config)
    return model.to(dtype=dtype).eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_times(fns: dict[str, Callable[[], None]], device: torch.device, repeats: int) -> dict[str, float]:
    """Best wall time of each function, run in interleaved rounds after one warm-up each, so that
    background load hits every contender alike."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def random_batches(n: int, batch: int, seq: int, vocab: int, device: str | torch.device = "cpu") -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        ids = torch.randint(0, vocab, (batch, seq), generator=g)
        out.append({"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)})
    return out
