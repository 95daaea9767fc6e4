"""`make bench`: every benchmark, one table of ratios measured in this run (targets are reported, not asserted).

On a GPU machine the same scripts run at full size (a Llama-3.1-8B shape); on CPU at a reduced size.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import adapter  # noqa: E402
import masks  # noqa: E402
import quantiles  # noqa: E402
import recording  # noqa: E402
import scoring  # noqa: E402
import tensor_parallel  # noqa: E402

TARGETS = {
    "record_over_backbone": "<= 1.05 CPU, <= 1.02 GPU",
    "nan_check_over_backbone": "~1",
    "hooks_must_fire_over_backbone": "~1",
    "per_token_cost_4_groups_over_1": "~1 (flat)",
    "per_token_cost_8_groups_over_1": "~1 (flat)",
    "time_4x_tokens_over_1x_div_4": "~1 (linear)",
    "time_lsn_1pct_over_lora": "<= 1",
    "time_lsn_10pct_over_lora": "<= 1",
    "memory_lsn_1pct_over_lora": "<= 1",
    "memory_lsn_10pct_over_lora": "<= 1",
    "time_lsn_1pct_over_masked": "<= 1",
    "memory_lsn_1pct_over_masked": "<= 1",
    "masked_step_over_plain": "<= 1.05",
    "merge_time_lsn_1pct_over_lora": "<= 1",
    "merge_time_lsn_10pct_over_lora": "<= 1",
    "nll_peak_growth_mib_vocab128k_4x1024": "< 700 MiB",
    "tp2_record_over_1proc": "reported (CPU: communication cost)",
}


def main() -> None:
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    name = torch.cuda.get_device_name() if cuda else (platform.processor() or platform.machine())
    print(f"device: {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    rows = [("recording", k, v) for k, v in recording.measure(device=device).items()]
    if cuda:
        rows += [("recording", k, v) for k, v in recording.measure_llama8b_shape().items()]
        rows += [
            ("adapter", k, v)
            for k, v in adapter.measure(
                device=device, hidden=4096, intermediate=14336, layers=4, batch=4, seq=512
            ).items()
        ]
    else:
        rows += [("adapter", k, v) for k, v in adapter.measure(device=device).items()]
    rows += [("masks", k, v) for k, v in masks.measure(device=device).items()]
    rows += [("nll", k, v) for k, v in scoring.measure(device=device).items()]
    rows += [("quantiles", k, v) for k, v in quantiles.measure(device=device).items()]
    if not cuda:  # 2 CPU ranks over gloo; on a GPU machine run the same script under torchrun by hand
        rows += [("tp", k, v) for k, v in tensor_parallel.measure().items()]
    width = max(len(r[1]) for r in rows)
    print(f"{'benchmark':<11}{'measure':<{width + 2}}{'value':>12}  target")
    for bench, key, value in rows:
        print(f"{bench:<11}{key:<{width + 2}}{value:>12.3f}  {TARGETS.get(key, '')}", flush=True)


if __name__ == "__main__":
    main()
