"""Shared benchmark helpers: a Llama of a given shape, device sync, best-of-N and median-of-N timing."""

from __future__ import annotations

import pathlib
import statistics
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


def peak_rss_mib() -> float:
    """This process's peak resident memory (MiB): `VmHWM`, which starts afresh at `exec` (unlike `ru_maxrss`, which
    a child started from a large parent inherits, so its growth would read 0)."""
    status = pathlib.Path("/proc/self/status")
    for line in status.read_text(encoding="ascii").splitlines() if status.exists() else []:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: KiB elsewhere may differ


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(fns: dict[str, Callable[[], None]], device: torch.device, repeats: int) -> dict[str, list[float]]:
    """Every wall time of each function, run in interleaved rounds after one warm-up each, so that
    background load hits every contender alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def best_times(fns: dict[str, Callable[[], None]], device: torch.device, repeats: int) -> dict[str, float]:
    """Best of `interleaved_times`."""
    return {name: min(t) for name, t in interleaved_times(fns, device, repeats).items()}


def median_ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    """Median over rounds of the per-round ratio `num / den`: each round's two runs saw the same load."""
    return statistics.median(a / b for a, b in zip(times[num], times[den], strict=True))


def random_batches(n: int, batch: int, seq: int, vocab: int, device: str | torch.device = "cpu") -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        ids = torch.randint(0, vocab, (batch, seq), generator=g)
        out.append({"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)})
    return out
