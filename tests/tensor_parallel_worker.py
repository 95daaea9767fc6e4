"""Run by test_tensor_parallel under `torchrun --nproc_per_node 2`: record a tensor-parallel model.

argv: model directory, output directory. Each rank loads the model with transformers' `tp_plan="auto"`
on a CPU mesh of 2 (gloo), records, and saves its own result as `rank{R}.safetensors`; it also checks
that an intervention on the sharded model is refused before any forward.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import transformers  # noqa: E402
from conftest import fixed_threshold, padded_batches  # noqa: E402
from torch.distributed.device_mesh import init_device_mesh  # noqa: E402

import lsn  # noqa: E402


def record(model):
    corpora = {"a": padded_batches(3, seed=11), "b": padded_batches(2, seed=12)}
    return lsn.record_activations(
        model, corpora, record_sums=True, quantile=0.75, threshold=fixed_threshold(model), progress=False
    )


if __name__ == "__main__":
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    model = transformers.AutoModelForCausalLM.from_pretrained(
        sys.argv[1], tp_plan="auto", device_mesh=mesh, dtype=torch.float64
    ).eval()
    sites = lsn.find_neuron_sites(model)
    assert sites[0].neuron_range != (0, sites[0].num_neurons), "the FFN is not sharded"
    stats = record(model)
    stats.save(Path(sys.argv[2]) / f"rank{dist.get_rank()}.safetensors")
    try:
        with lsn.intervene(model, {0: [1]}, "zero"):
            pass
    except lsn.UnsupportedModelError as err:
        assert "tensor parallelism" in str(err)
    else:
        raise AssertionError("an intervention on a sharded FFN was not refused")
    dist.destroy_process_group()
