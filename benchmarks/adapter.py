"""Train-step cost of the neuron adapter vs PEFT's LoRA and vs a dense-masked LoRA, same rank and modules.

Three ways to train LoRA-style deltas on gate/up/down of a Llama, rank r:
- `lsn`: lsn's neuron adapter (compact factors, gather/scatter on the k selected neurons),
- `lora`: PEFT's LoRA on the same matrices (all neurons; the usual cost to beat),
- `masked`: PEFT's LoRA whose B rows (gate/up) or A columns (down) outside the neurons are multiplied by a 0/1
  mask in every forward (the reference code's approach: dense factors, masked).
For 1% and 10% of the neurons in every layer: the best train-step time (forward + backward + AdamW step, after a
warm-up) and the memory a step needs beyond the frozen model. On GPU that is `torch.cuda.max_memory_allocated`
minus the base model; on CPU it is counted exactly: trainable parameters + their gradients + optimizer state +
the storages autograd saves for backward (seen through `saved_tensors_hooks`, parameters excluded).

    python benchmarks/adapter.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import peft
import torch
from torch import nn
from torch.nn.utils import parametrize

sys.path.insert(0, str(Path(__file__).parent))

from common import best_times, tiny_llama  # noqa: E402

import lsn  # noqa: E402  (registers the neuron adapter with PEFT)

MODULES = ["gate_proj", "up_proj", "down_proj"]


class _Mask(nn.Module):
    """Multiply a weight by a fixed 0/1 mask in every forward (a parametrization)."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def _masked_lora(model: nn.Module, neurons: dict[int, list[int]], r: int) -> nn.Module:
    """PEFT LoRA on gate/up/down whose factors are masked to the neurons (rows of B, columns of A for down)."""
    model = peft.get_peft_model(model, peft.LoraConfig(r=r, lora_alpha=2 * r, target_modules=MODULES))
    for site in lsn.find_neuron_sites(model):
        keep = torch.zeros(site.num_neurons, device=lsn.models.first_device(model))
        keep[neurons[site.index]] = 1
        for name in MODULES:
            layer = getattr(site.block, name)
            if name == "down_proj":
                parametrize.register_parametrization(layer.lora_A["default"], "weight", _Mask(keep[None, :]))
            else:
                parametrize.register_parametrization(layer.lora_B["default"], "weight", _Mask(keep[:, None]))
    return model


def _build(kind: str, fraction: float, r: int, device: str, **shape) -> nn.Module:
    model = tiny_llama(**shape, device=device)
    num_neurons, layers = shape["intermediate"], shape["layers"]
    g = torch.Generator().manual_seed(0)
    k = max(1, round(fraction * num_neurons))
    neurons = {layer: torch.randperm(num_neurons, generator=g)[:k].sort().values.tolist() for layer in range(layers)}
    if kind == "lsn":
        return peft.get_peft_model(model, lsn.NeuronConfig(neurons=neurons, r=r, lora_alpha=2 * r))
    if kind == "lora":
        return peft.get_peft_model(model, peft.LoraConfig(r=r, lora_alpha=2 * r, target_modules=MODULES))
    return _masked_lora(model, neurons, r)


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _cpu_step_bytes(model: nn.Module, batch: dict, optimizer: torch.optim.Optimizer) -> int:
    """Trainable parameters + gradients + optimizer state + storages saved for backward (non-parameters)."""
    frozen = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in frozen:
            saved[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    state = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    return 2 * _nbytes(trainable) + _nbytes(state) + sum(saved.values())


def measure(
    device: str = "cpu",
    hidden: int = 512,
    intermediate: int = 2048,
    layers: int = 4,
    batch: int = 4,
    seq: int = 128,
    r: int = 8,
    fractions: tuple[float, ...] = (0.01, 0.10),
    repeats: int = 3,
) -> dict[str, float]:
    """Best train-step seconds and step memory of lsn, LoRA and masked LoRA; ratios of lsn to the others.

    All models are built first and timed in interleaved rounds, so background load hits them alike.
    """
    shape = dict(hidden=hidden, intermediate=intermediate, layers=layers)
    dev = torch.device(device)
    ids = torch.randint(0, 4096, (batch, seq), generator=torch.Generator().manual_seed(0)).to(dev)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    runs = {"lora": ("lora", fractions[0])}
    for fraction in fractions:
        runs |= {f"{kind}_{round(fraction * 100)}pct": (kind, fraction) for kind in ("lsn", "masked")}
    models = {name: _build(kind, fraction, r, device, **shape).train() for name, (kind, fraction) in runs.items()}
    optimizers = {
        name: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4) for name, m in models.items()
    }

    def step(name: str) -> None:
        optimizers[name].zero_grad(set_to_none=True)
        models[name](**inputs, labels=inputs["input_ids"]).loss.backward()
        optimizers[name].step()

    results: dict[str, float] = {}
    best = best_times({name: (lambda name=name: step(name)) for name in models}, dev, repeats)
    for name, model in models.items():
        optimizer = optimizers[name]
        if dev.type == "cuda":
            optimizer.zero_grad(set_to_none=True)
            trainable = [p for p in model.parameters() if p.requires_grad]
            state = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
            before = torch.cuda.memory_allocated(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            step(name)
            memory = torch.cuda.max_memory_allocated(dev) - before + _nbytes(trainable) + _nbytes(state)
        else:
            memory = _cpu_step_bytes(model, inputs, optimizer)
        results[f"step_s_{name}"] = best[name]
        results[f"step_mib_{name}"] = memory / 2**20
    for fraction in fractions:
        pct = f"{round(fraction * 100)}pct"
        for other, label in (("lora", "lora"), (f"masked_{pct}", "masked")):
            results[f"time_lsn_{pct}_over_{label}"] = results[f"step_s_lsn_{pct}"] / results[f"step_s_{other}"]
            results[f"memory_lsn_{pct}_over_{label}"] = results[f"step_mib_lsn_{pct}"] / results[f"step_mib_{other}"]
    merging = [name for name in models if not name.startswith("masked")]  # parametrized LoRA cannot merge

    def merge_round_trip(name: str) -> None:
        with torch.no_grad():
            models[name].merge_adapter()
            models[name].unmerge_adapter()

    merge = best_times({name: (lambda name=name: merge_round_trip(name)) for name in merging}, dev, repeats)
    for name in merging:
        results[f"merge_unmerge_s_{name}"] = merge[name]
    for fraction in fractions:
        pct = f"{round(fraction * 100)}pct"
        results[f"merge_time_lsn_{pct}_over_lora"] = merge[f"lsn_{pct}"] / merge["lora"]
    return results


if __name__ == "__main__":
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    for key, value in measure(device=device).items():
        print(f"{key:>32}: {value:.3f}")
