"""Tensor parallelism (transformers' `tp_plan`, 2 CPU ranks, gloo): recording equals one process exactly."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from conftest import make_tiny_model

import lsn

WORKER = Path(__file__).with_name("tensor_parallel_worker.py")


def test_two_tensor_parallel_ranks_record_exactly_what_one_process_does(tmp_path):
    model = make_tiny_model("llama").double()
    model.save_pretrained(tmp_path / "model")
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(Path(lsn.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = subprocess.run(
        [*cmd, str(WORKER), str(tmp_path / "model"), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [lsn.ActivationStats.load(tmp_path / f"rank{r}.safetensors") for r in range(2)]

    sys.path.insert(0, str(WORKER.parent))
    from tensor_parallel_worker import record

    single = record(make_tiny_model("llama").double())
    for stats in ranks:
        assert stats.metadata["tensor_parallel"] == 2
        assert torch.equal(stats.tokens, single.tokens)
        assert torch.equal(stats.counts, single.counts)
        assert torch.equal(stats.above_threshold, single.above_threshold)
        assert torch.equal(stats.above_quantile, single.above_quantile)
        torch.testing.assert_close(stats.sums, single.sums, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(stats.quantile_means, single.quantile_means, rtol=1e-12, atol=1e-12)
    assert single.counts.sum() > 0
