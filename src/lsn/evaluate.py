"""The zero-shot cross-lingual results table: language x condition, with the baseline beside each.

    python -m lsn.evaluate runs/xnli-lora runs/xnli-neuron-lora runs/xnli-random --baseline lora --output results/

Each run directory is one `python -m lsn.train` run (its `lsn_run.json` and `eval_results.json`);
the table is printed and saved as `results.md` / `results.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .crosslingual import results_table

__all__ = ["collect", "main"]


def collect(runs: list[str]) -> tuple[dict[str, dict], str]:
    """{condition: {language: metrics}} and the metric name, from run directories."""
    results, tasks = {}, set()
    for run in runs:
        directory = Path(run)
        try:
            info = json.loads((directory / "lsn_run.json").read_text(encoding="utf-8"))
            scores = json.loads((directory / "eval_results.json").read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise FileNotFoundError(f"`{run}` is not a finished `lsn.train` run ({err.filename} is missing).") from err
        name = info["condition"] if info["condition"] not in results else f"{info['condition']} ({directory.name})"
        results[name] = scores
        tasks.add(info["task"])
    if len(tasks) != 1:
        raise ValueError(f"The runs mix tasks {sorted(tasks)}; tabulate one task at a time.")
    return results, "accuracy" if tasks.pop() == "xnli" else "f1"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m lsn.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories written by `python -m lsn.train`")
    parser.add_argument("--baseline", default=None, help="the condition shown first, with differences to it")
    parser.add_argument("--metric", default=None, help="metric to tabulate (default: accuracy for XNLI, f1 for XQuAD)")
    parser.add_argument("--output", default=None, help="directory for results.md and results.json")
    args = parser.parse_args(argv)
    results, metric = collect(args.runs)
    table = results_table(results, args.metric or metric, args.output, baseline=args.baseline)
    print(table)
    return table


def _cli(argv: list[str] | None = None) -> int:
    """`python -m lsn.evaluate`: the table, or one line naming what is wrong (`LSN_DEBUG=1`: the traceback)."""
    try:
        main(argv)
    except (ValueError, KeyError, OSError) as err:
        if os.environ.get("LSN_DEBUG"):
            raise
        print(f"python -m lsn.evaluate: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(_cli())
