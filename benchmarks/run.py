"""`make bench`: every benchmark, one table of ratios measured in this run (no asserted targets)."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import recording  # noqa: E402

TARGETS = {"record_over_backbone": "<= 1.05 (CPU), <= 1.02 (GPU)"}


def main() -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine()
    print(f"device: {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    rows = []
    for key, value in recording.measure(device=device).items():
        rows.append(("recording", key, value, TARGETS.get(key, "")))
    width = max(len(r[1]) for r in rows)
    print(f"{'benchmark':<12}{'measure':<{width + 2}}{'value':>12}  target")
    for bench, key, value, target in rows:
        print(f"{bench:<12}{key:<{width + 2}}{value:>12.3f}  {target}")


if __name__ == "__main__":
    main()
