"""The harness version of the NLL matrix: each group's neurons deactivated, any lm-eval tasks' metrics.

The model loads once; the baseline is evaluated once; each row attaches a `zero` intervention
(through `spec.attach`, as the `lsn` model does), evaluates the same tasks, and detaches it.
`random_control=SEED` adds, per group, a row of as many random neurons per layer.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..measurement import delta_markdown
from ..selection import random_neurons
from .spec import LSN_KEYS, LsnArgs, attach, parse_lsn_args

__all__ = ["HarnessMatrix", "harness_matrix", "metric_columns"]

logger = logging.getLogger("lsn.harness")


def metric_columns(results: Mapping, metrics: Sequence[str] | None = None) -> dict[str, float]:
    """`{"task/metric": value}` from `simple_evaluate(...)["results"]`, standard errors left out."""
    out = {}
    for task, values in results.items():
        for key, value in values.items():
            if "," not in key or "_stderr" in key or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            metric, filter_name = key.split(",", 1)
            if metrics is not None and metric not in metrics:
                continue
            out[f"{task}/{metric}" + ("" if filter_name == "none" else f"[{filter_name}]")] = float(value)
    return out


@dataclass
class HarnessMatrix:
    """Task metrics with each row's neurons deactivated.

    Attributes:
        rows: deactivated groups (`"random:G"` rows use random neurons, as many per layer as G's).
        columns: `task/metric` names.
        baseline: metrics of the unmodified model, shape `(columns,)`.
        values: shape `(rows, columns)`.
        neurons: neurons deactivated per row.
    """

    rows: list[str]
    columns: list[str]
    baseline: torch.Tensor
    values: torch.Tensor
    neurons: dict[str, int] = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    @property
    def delta(self) -> torch.Tensor:
        """Metric change vs the baseline."""
        return self.values - self.baseline[None, :]

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "columns": self.columns,
            "baseline": self.baseline.tolist(),
            "values": self.values.tolist(),
            "delta": self.delta.tolist(),
            "neurons": self.neurons,
            "metadata": self.metadata,
        }

    def to_markdown(self) -> str:
        """Metric change per row and column; the baseline as the first row."""
        return delta_markdown(self, corner="deactivated \\ metric", baseline_label="(baseline)", digits=4)

    def save(self, directory: str | os.PathLike, plot: bool = True) -> list[Path]:
        """`harness_matrix.{json,csv,md}` and, with `plot`, the heatmap `harness_matrix.png`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = [directory / f"harness_matrix.{ext}" for ext in ("json", "csv", "md")]
        written[0].write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")
        with written[1].open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["deactivated", "metric", "neurons", "value", "delta", "baseline"])
            for i, row in enumerate(self.rows):
                for j, column in enumerate(self.columns):
                    writer.writerow(
                        [
                            row,
                            column,
                            self.neurons.get(row, 0),
                            f"{float(self.values[i, j]):.6f}",
                            f"{float(self.delta[i, j]):.6f}",
                            f"{float(self.baseline[j]):.6f}",
                        ]
                    )
        written[2].write_text(self.to_markdown() + "\n", encoding="utf-8")
        if plot:
            written.append(plot_harness_matrix(self, directory / "harness_matrix.png"))
        return written

    @classmethod
    def load(cls, path: str | os.PathLike) -> HarnessMatrix:
        path = Path(path)
        data = json.loads((path / "harness_matrix.json" if path.is_dir() else path).read_text(encoding="utf-8"))
        return cls(
            data["rows"],
            data["columns"],
            torch.tensor(data["baseline"], dtype=torch.float64),
            torch.tensor(data["values"], dtype=torch.float64),
            data["neurons"],
            data["metadata"],
        )


def plot_harness_matrix(matrix: HarnessMatrix, path: str | os.PathLike, title: str | None = None) -> Path:
    """Heatmap of the metric change: rows the deactivated group, columns the task metrics."""
    from ..plotting import plot_delta_matrix

    return plot_delta_matrix(
        matrix,
        path,
        title=title or "Metric change when deactivating each group's neurons",
        xlabel="task / metric",
        colorbar_label="delta (vs baseline)",
        cmap="RdBu",
        digits=3,
    )


def harness_matrix(
    model_args: str | Mapping,
    tasks: Sequence[str],
    *,
    groups: Sequence[str] | None = None,
    random_control: int | None = None,
    metrics: Sequence[str] | None = None,
    include_path: str | os.PathLike | None = None,
    progress: bool = True,
    **evaluate_kwargs,
) -> HarnessMatrix:
    """For each group (rows), deactivate its neurons and evaluate `tasks` with lm-eval.

    `model_args`: the `lsn` model's, holding `neurons=` and no other lsn key (the rows choose the
    interventions). `metrics` keeps only those metric names (e.g. `["acc"]`); `include_path` is a
    folder of extra task YAMLs; `evaluate_kwargs` go to `lm_eval.simple_evaluate` (`limit`,
    `num_fewshot`, `batch_size`, `device`, ...). Every row is evaluated on the same documents.
    """
    import lm_eval
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import simple_parse_args_string

    from .model import LsnLM

    args = dict(simple_parse_args_string(model_args) if isinstance(model_args, str) else model_args)
    others = sorted(k for k in args if k in LSN_KEYS and k != "neurons")
    if "neurons" not in args or others:
        raise ValueError(
            "`model_args` of the eval matrix need `neurons=` and no other lsn key "
            f"(got {others or 'no neurons'}): each row deactivates one group's neurons."
        )
    spec, _ = parse_lsn_args({"neurons": args["neurons"]})
    neuron_set = spec.neurons
    rows = list(groups) if groups is not None else neuron_set.groups
    missing = [g for g in rows if g not in neuron_set]
    if missing:
        raise ValueError(f"`groups` {missing} not in the neuron set (groups: {', '.join(neuron_set.groups)}).")
    if not tasks:
        raise ValueError("Give at least one lm-eval task.")
    task_manager = TaskManager(include_path=str(include_path) if include_path is not None else None)
    unknown = [t for t in tasks if t not in task_manager.all_tasks]
    if unknown:
        raise ValueError(f"Unknown lm-eval task(s) {unknown}; list them with `python -m lsn.harness ls tasks`.")

    lm_kwargs = {k: v for k, v in args.items() if k != "neurons"}
    for key in ("batch_size", "max_batch_size", "device"):
        if evaluate_kwargs.get(key) is not None:
            lm_kwargs.setdefault(key, evaluate_kwargs[key])
    lm = LsnLM(**lm_kwargs)
    neuron_set.check_compatible(lm.model)

    def evaluate(label: str) -> dict[str, float]:
        logger.info("eval matrix: %s", label)
        out = lm_eval.simple_evaluate(model=lm, tasks=list(tasks), task_manager=task_manager, **evaluate_kwargs)
        return metric_columns(out["results"], metrics)

    baseline = evaluate("baseline")
    columns = list(baseline)
    if not columns:
        raise ValueError(f"The tasks gave no metrics{f' named {list(metrics)}' if metrics else ''}.")
    plans = [(row, neuron_set.subset(row)) for row in rows]
    if random_control is not None:  # one draw for all rows, so each row gets its own random neurons
        control = random_neurons(neuron_set.subset(rows), seed=random_control)
        plans += [(f"random:{row}", control.subset(row)) for row in rows]
    values, neurons = [], {}
    for label, subset in tqdm(plans, desc="eval matrix", disable=not progress):
        neurons[label] = int(subset.counts_per_layer().sum())
        applied = attach(lm.model, LsnArgs(neurons=subset, mode="zero"))
        try:
            result = evaluate(label)
        finally:
            for intervention in applied:
                intervention.remove()
        values.append([result.get(c, math.nan) for c in columns])
    return HarnessMatrix(
        rows=[label for label, _ in plans],
        columns=columns,
        baseline=torch.tensor([baseline[c] for c in columns], dtype=torch.float64),
        values=torch.tensor(values, dtype=torch.float64).reshape(len(plans), len(columns)),
        neurons=neurons,
        metadata={
            "tasks": list(tasks),
            "method": neuron_set.method,
            "parameters": neuron_set.parameters,
            "model": neuron_set.model,
            "model_args": {k: str(v) for k, v in args.items()},
            "random_control": random_control,
            "evaluate": {k: str(v) for k, v in evaluate_kwargs.items()},
        },
    )
