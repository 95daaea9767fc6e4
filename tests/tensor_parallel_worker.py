"""Run by test_tensor_parallel under `torchrun --nproc_per_node 2`: record on and intervene in a tensor-parallel model.

argv: model directory (with its tokenizer), output directory. Each rank loads the model with transformers'
`tp_plan="auto"` on a CPU mesh of 2 (gloo), records (`rank{R}.safetensors`), then runs every intervention
effect, steering, task masks, the NLL matrix and greedy generation (`rank{R}_outputs.safetensors` and
`rank{R}_texts.json`). The test runs the same functions in one process on the unsharded model and compares.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import transformers  # noqa: E402
from conftest import fixed_threshold, make_tiny_model, padded_batches  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from torch.distributed.device_mesh import init_device_mesh  # noqa: E402

import lsn  # noqa: E402
from lsn.translation import TaskMasks  # noqa: E402

VOCAB = 384  # the tiny tokenizer's size; even, so the LM head splits evenly over 2 ranks
# 64 neurons a layer, 32 a rank: group a's layer 1 lives on rank 0 only, b's layer 1 on rank 1 only
NEURONS = {"a": [[1, 5, 40, 63], [2, 3]], "b": [[0, 31, 32], [33, 50, 60]]}
PROMPTS = ["the cat sat", "le chat est sur"]


def tiny_llama() -> transformers.PreTrainedModel:
    return make_tiny_model("llama", vocab_size=VOCAB).double()


def record(model):
    corpora = {"a": padded_batches(3, seed=11), "b": padded_batches(2, seed=12)}
    return lsn.record_activations(
        model, corpora, record_sums=True, quantile=0.75, threshold=fixed_threshold(model), progress=False
    )


def outputs(model, tokenizer, stats: lsn.ActivationStats) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """Logits under every effect, steering and task masks; the NLL matrix; greedy continuations."""
    neuron_set = lsn.NeuronSet(NEURONS, num_layers=2, num_neurons=64)
    table = torch.randn(2, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    batch = padded_batches(1, seed=13)[0]

    def logits() -> torch.Tensor:
        with torch.inference_mode():
            return model(**batch).logits.clone()

    out = {"plain": logits()}
    for mode, value in [("zero", None), ("set", table), ("scale", 1.5), ("add", table)]:
        with lsn.intervene(model, neuron_set, mode, value):
            out[mode] = logits()
    with lsn.intervene(model, {1: [2, 3]}, "set", 2.0):  # rank 1 holds none of these: it hooks nothing
        out["set_one_shard"] = logits()
    with lsn.steer(model, neuron_set, source="a", target="b", stats=stats, strength=2.0):
        out["steer"] = logits()
    masks = TaskMasks(neuron_set)
    with masks.attached(model), masks.task_scope("b"):
        out["task_mask"] = logits()
    heldout = {"a": padded_batches(2, seed=14), "b": padded_batches(1, seed=15)}
    matrix = lsn.nll_matrix(model, neuron_set, heldout, random_control=0, progress=False)
    out["nll_baseline"], out["nll"] = matrix.baseline, matrix.nll
    texts = {
        "plain": lsn.generate(model, tokenizer, PROMPTS, max_new_tokens=6),
        "zero_a": lsn.generate(model, tokenizer, PROMPTS, neuron_set, "zero", groups="a", max_new_tokens=6),
        "add_b": lsn.generate(model, tokenizer, PROMPTS, neuron_set, "add", table, groups="b", max_new_tokens=6),
    }
    return out, texts


if __name__ == "__main__":
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    model = transformers.AutoModelForCausalLM.from_pretrained(
        sys.argv[1], tp_plan="auto", device_mesh=mesh, dtype=torch.float64
    ).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(sys.argv[1])
    sites = lsn.find_neuron_sites(model)
    assert sites[0].neuron_range != (0, sites[0].num_neurons), "the FFN is not sharded"
    rank, directory = dist.get_rank(), Path(sys.argv[2])
    stats = record(model)
    stats.save(directory / f"rank{rank}.safetensors")
    tensors, texts = outputs(model, tokenizer, stats)
    save_file({k: v.contiguous() for k, v in tensors.items()}, directory / f"rank{rank}_outputs.safetensors")
    (directory / f"rank{rank}_texts.json").write_text(json.dumps(texts), encoding="utf-8")
    dist.destroy_process_group()
