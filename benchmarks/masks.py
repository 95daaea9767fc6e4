"""Task masks (Neuron Specialization): train-step time with the direction's mask active vs without.

The mask multiplies each FFN activation by a 0/1 vector (target: <= 1.05 of the unmasked step).
"""

from __future__ import annotations

import torch
from common import best_times, random_batches, tiny_llama

import lsn
from lsn.translation import TaskMasks


def measure(
    hidden=512, intermediate=2048, layers=4, batch=4, seq=128, keep=0.8, repeats=5, device="cpu"
) -> dict[str, float]:
    model = tiny_llama(hidden, intermediate, layers, device=device).train()
    dev = next(model.parameters()).device
    g = torch.Generator().manual_seed(0)
    kept = [torch.randperm(intermediate, generator=g)[: int(keep * intermediate)] for _ in range(layers)]
    masks = TaskMasks(lsn.NeuronSet({"en-de": kept}, num_layers=layers, num_neurons=intermediate))
    inputs = random_batches(1, batch, seq, model.config.vocab_size, dev)[0]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(**inputs, labels=inputs["input_ids"]).loss.backward()
        optimizer.step()

    def masked_step() -> None:
        with masks.attached(model), masks.task_scope("en-de"):
            step()

    times = best_times({"plain": step, "masked": masked_step}, dev, repeats)
    return {"masked_step_over_plain": times["masked"] / times["plain"], "plain_step_s": times["plain"]}


if __name__ == "__main__":
    for key, value in measure().items():
        print(f"{key:>28}: {value:.3f}")
