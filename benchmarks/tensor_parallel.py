"""Tensor-parallel recording: 2 CPU ranks (torchrun, gloo, `tp_plan="auto"`) vs 1 process, same model and batches.

Both sides run in fresh processes on the same saved random Llama: `tp2_record_over_1proc` is the median
recording time of the 2-rank run (each rank 1 thread) over that of one process with 2 threads, so both use
the same cores. On CPU this shows the cost of the all-reduces and the sharded matmuls, not a speed-up:
tensor parallelism is there for models that do not fit one device.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def _child(model_dir: str, repeats: int) -> None:
    import torch
    import transformers
    from common import random_batches

    import lsn

    world = int(os.environ.get("WORLD_SIZE", "1"))
    kwargs = {}
    if world > 1:
        import torch.distributed as dist
        from torch.distributed.device_mesh import init_device_mesh

        dist.init_process_group("gloo")
        kwargs = {"tp_plan": "auto", "device_mesh": init_device_mesh("cpu", (world,))}
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, **kwargs).eval()
    batches = random_batches(4, 4, 128, model.config.vocab_size)
    times = []
    for k in range(repeats + 1):  # the first is the warm-up
        start = time.perf_counter()
        stats = lsn.record_activations(model, {"g": batches}, progress=False)
        if k:
            times.append(time.perf_counter() - start)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"seconds": statistics.median(times), "tokens": int(stats.tokens.sum())}))
    if world > 1:
        torch.distributed.destroy_process_group()


def _run(cmd: list[str], threads: int) -> dict:
    env = os.environ | {
        "OMP_NUM_THREADS": str(threads),
        "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(hidden=512, intermediate=2048, layers=4, repeats=3, device="cpu") -> dict[str, float]:
    from common import tiny_llama

    with tempfile.TemporaryDirectory() as tmp:
        tiny_llama(hidden, intermediate, layers, heads=8).save_pretrained(tmp)
        child = [str(HERE), "--child", tmp, str(repeats)]
        single = _run([sys.executable, *child], threads=2)
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        tp = _run([*torchrun, *child], threads=1)
    return {
        "tp2_record_over_1proc": tp["seconds"] / single["seconds"],
        "tp2_tokens_per_s": tp["tokens"] / tp["seconds"],
        "1proc_tokens_per_s": single["tokens"] / single["seconds"],
    }


if __name__ == "__main__":
    if "--child" in sys.argv:
        i = sys.argv.index("--child")
        _child(sys.argv[i + 1], int(sys.argv[i + 2]))
    else:
        print(measure())
