"""Recording: overhead over a plain forward, scaling with groups and tokens, memory beyond the model.

- `record_over_backbone`: `record_activations` / a plain inference forward of the same backbone over
  the same batches (the counting hooks' cost; target <= 1.05 on CPU, <= 1.02 on GPU), the median over
  interleaved rounds of each round's ratio; `record_over_full_forward` compares with the full model (LM head
  included), which recording skips. Its parts: `hooks_must_fire_over_backbone` (a no-op hook on every
  activation plus the must-fire checks) and `nan_check_over_backbone` (a hook doing only recording's NaN/inf
  check, one `act.sum` per layer per batch folded into a device flag).
- `per_token_cost_{K}_groups_over_1`: the same tokens split into K groups (target: flat, ~1.0).
- `time_4x_tokens_over_1x / 4`: linearity in tokens (target ~1.0).
- memory: the counters are `layers x neurons x groups` int64 (plus float64 sums when asked), whatever
  the corpus size; on GPU the measured peak beyond the model is reported for 1x and 4x the tokens.
"""

from __future__ import annotations

import statistics

import torch
from common import interleaved_times, median_ratio, random_batches, tiny_llama

import lsn
from lsn.hooks import activation_hooks


def measure(
    hidden=512, intermediate=2048, layers=4, batch=4, seq=256, n_batches=8, repeats=7, device="cpu", dtype=torch.float32
) -> dict[str, float]:
    model = tiny_llama(hidden, intermediate, layers, device=device, dtype=dtype)
    dev = next(model.parameters()).device
    vocab = model.config.vocab_size
    batches = random_batches(n_batches, batch, seq, vocab, "cpu")
    tokens = n_batches * batch * seq

    def forward(module):
        def run():
            with torch.inference_mode():
                for b in batches:
                    module(**{k: v.to(dev) for k, v in b.items()}, use_cache=False)

        return run

    def record(groups: int, data=batches):
        per = len(data) // groups
        corpora = {f"g{k}": data[k * per : (k + 1) * per] for k in range(groups)}
        return lambda: lsn.record_activations(model, corpora, progress=False)

    sites = lsn.find_neuron_sites(model)
    flags = [torch.ones((), dtype=torch.bool, device=s.device) for s in sites]

    def nan_check(site, pre, act):  # exactly recording's check
        flags[site.index] &= torch.isfinite(act.sum(dtype=torch.float32))

    def hooked(fn, check: bool):
        def run():
            with activation_hooks(sites, fn, check=check):
                forward(model.model)()

        return run

    overhead = interleaved_times(
        {
            "backbone": forward(model.model),
            "full": forward(model),
            "must_fire": hooked(lambda site, pre, act: None, check=True),
            "nan_check": hooked(nan_check, check=False),
            "record_1": record(1),
        },
        dev,
        repeats,
    )
    quadruple = batches * 4
    scaling = interleaved_times(
        {"record_1": record(1), "record_4": record(4), "record_8": record(8), "record_4x_tokens": record(1, quadruple)},
        dev,
        max(1, repeats // 2),
    )
    out = {
        "record_over_backbone": median_ratio(overhead, "record_1", "backbone"),
        "record_over_backbone_best": min(overhead["record_1"]) / min(overhead["backbone"]),
        "hooks_must_fire_over_backbone": median_ratio(overhead, "must_fire", "backbone"),
        "nan_check_over_backbone": median_ratio(overhead, "nan_check", "backbone"),
        "record_over_full_forward": median_ratio(overhead, "record_1", "full"),
        "tokens_per_s": tokens / statistics.median(overhead["record_1"]),
        "per_token_cost_4_groups_over_1": median_ratio(scaling, "record_4", "record_1"),
        "per_token_cost_8_groups_over_1": median_ratio(scaling, "record_8", "record_1"),
        "time_4x_tokens_over_1x_div_4": median_ratio(scaling, "record_4x_tokens", "record_1") / 4,
        "counter_mib_per_group": layers * intermediate * 8 / 2**20,
    }
    if dev.type == "cuda":
        for label, data in (("1x", batches), ("4x", quadruple)):
            torch.cuda.synchronize(dev)
            base = torch.cuda.memory_allocated(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            record(1, data)()
            out[f"peak_mib_beyond_model_{label}_tokens"] = (torch.cuda.max_memory_allocated(dev) - base) / 2**20
    return out


def measure_llama8b_shape(
    seq: int = 4096, batch: int = 1, n_batches: int = 4, peak_tflops: float = 989.0
) -> dict[str, float]:
    """GPU only: recording throughput of a Llama-3.1-8B-shaped model (random bf16 weights) and its
    model-FLOPs utilisation, 2 x parameters FLOPs per token over the GPU's bf16 dense peak."""
    model = tiny_llama(4096, 14336, 32, vocab=128256, device="cuda", dtype=torch.bfloat16, heads=32)
    params = sum(p.numel() for p in model.parameters())
    batches = random_batches(n_batches, batch, seq, model.config.vocab_size, "cpu")
    run = lambda: lsn.record_activations(model, {"en": batches}, progress=False)  # noqa: E731
    seconds = min(interleaved_times({"record": run}, torch.device("cuda"), 2)["record"])
    tokens_per_s = n_batches * batch * seq / seconds
    return {
        "llama8b_record_tokens_per_s": tokens_per_s,
        "llama8b_record_mfu": 2 * params * tokens_per_s / (peak_tflops * 1e12),
    }


if __name__ == "__main__":
    for key, value in measure().items():
        print(f"{key:>36}: {value:.3f}")
