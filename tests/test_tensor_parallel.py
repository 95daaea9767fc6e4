"""Tensor parallelism (transformers' `tp_plan`, 2 CPU ranks, gloo): recording equals one process exactly; every
intervention effect, steering, task masks, the NLL matrix and greedy generation equal one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from conftest import tiny_texts, tiny_tokenizer_for
from safetensors.torch import load_file

import lsn

WORKER = Path(__file__).with_name("tensor_parallel_worker.py")
sys.path.insert(0, str(WORKER.parent))
from tensor_parallel_worker import outputs, record, tiny_llama  # noqa: E402


def test_two_tensor_parallel_ranks_record_and_intervene_as_one_process(tmp_path):
    tokenizer = tiny_tokenizer_for(tiny_texts())
    assert len(tokenizer) <= tiny_llama().config.vocab_size
    tiny_llama().save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
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

    model = tiny_llama()
    single = record(model)
    assert single.counts.sum() > 0
    for r in range(2):
        stats = lsn.ActivationStats.load(tmp_path / f"rank{r}.safetensors")
        assert stats.metadata["tensor_parallel"] == 2
        assert torch.equal(stats.tokens, single.tokens)
        assert torch.equal(stats.counts, single.counts)
        assert torch.equal(stats.above_threshold, single.above_threshold)
        assert torch.equal(stats.above_quantile, single.above_quantile)
        torch.testing.assert_close(stats.sums, single.sums, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(stats.quantile_means, single.quantile_means, rtol=1e-12, atol=1e-12)

    expected, texts = outputs(model, tokenizer, single)
    for name in ("zero", "set", "scale", "add", "set_one_shard", "steer", "task_mask"):  # each edit has an effect
        assert (expected[name] - expected["plain"]).abs().max() > 1e-3, name
    assert texts["zero_a"] != texts["plain"] or texts["add_b"] != texts["plain"]
    for r in range(2):
        got = load_file(tmp_path / f"rank{r}_outputs.safetensors")
        assert set(got) == set(expected)
        for name, tensor in expected.items():
            torch.testing.assert_close(got[name], tensor, rtol=1e-9, atol=1e-9, msg=f"rank {r}: {name}")
        assert json.loads((tmp_path / f"rank{r}_texts.json").read_text(encoding="utf-8")) == texts
