"""Measuring an intervention's effect: mean token NLL, and the deactivation NLL matrix.

The validation experiment of Tang et al. 2024: deactivate group i's neurons, measure the mean
token NLL on held-out text of every group j. The baseline and every row use the same
evaluation tokens (batches are built once), so differences are the intervention's alone.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .corpora import Batch, CorpusSpec, iter_batches, open_corpus
from .intervention import intervene
from .models import first_device, unwrap_model
from .neuron_set import NeuronSet
from .scoring import token_nll
from .selection import random_neurons

__all__ = ["NLLMatrix", "delta_markdown", "evaluation_batches", "mean_token_nll", "nll_matrix"]


def evaluation_batches(
    corpora: Mapping[str, CorpusSpec],
    *,
    tokenizer=None,
    seq_len: int = 512,
    batch_size: int = 8,
    max_tokens: int | None = None,
    text_column: str = "text",
) -> dict[str, list[Batch]]:
    """Each group's packed batches, built once so every measurement sees the same tokens."""
    if seq_len < 1 or batch_size < 1:
        raise ValueError(f"`seq_len` and `batch_size` must be positive, got {seq_len} and {batch_size}.")
    opened = {g: open_corpus(g, src, text_column) for g, src in corpora.items()}
    return {
        g: list(iter_batches(c, tokenizer=tokenizer, seq_len=seq_len, batch_size=batch_size, max_tokens=max_tokens))
        for g, c in opened.items()
    }


def mean_token_nll(model: nn.Module, batches: Iterable[Batch], *, desc: str | None = None) -> tuple[float, int]:
    """(mean next-token NLL in nats, predicted tokens) over real tokens of `batches`."""
    device = first_device(model)
    total, count = 0.0, 0
    with torch.inference_mode():
        for batch in tqdm(list(batches), desc=desc, disable=desc is None, leave=False):
            ids = batch.inputs["input_ids"].to(device)
            mask = batch.inputs["attention_mask"].to(device)
            nll = token_nll(model, ids, mask)  # chunked over positions: no [batch, seq, vocab] float32 logits
            total += float(nll.double().sum())
            count += int(mask[:, 1:].sum())
    if count == 0:
        raise ValueError("No tokens to predict: every evaluation sequence is a single token.")
    return total / count, count


def delta_markdown(matrix, *, corner: str, baseline_label: str, digits: int) -> str:
    """A deactivation matrix (`.rows`, `.columns`, `.baseline`, `.delta`, `.neurons`) as a markdown table of the
    change per row, with the baseline as the first row."""
    head = f"| {corner} | " + " | ".join(matrix.columns) + " |"
    rule = "|---" * (len(matrix.columns) + 1) + "|"
    base = f"| {baseline_label} | " + " | ".join(f"{v:.{digits}f}" for v in matrix.baseline.tolist()) + " |"
    rows = [
        f"| {row} ({matrix.neurons.get(row, 0)}) | "
        + " | ".join(f"{v:+.{digits}f}" for v in matrix.delta[i].tolist())
        + " |"
        for i, row in enumerate(matrix.rows)
    ]
    return "\n".join([head, rule, base, *rows])


@dataclass
class NLLMatrix:
    """Mean token NLL with each row's neurons deactivated, on each column's held-out text.

    Attributes:
        rows: the deactivated groups (`"random:G"` rows use random neurons, as many per layer as G's).
        columns: the evaluated groups.
        baseline: NLL of the unmodified model per column, shape `(columns,)`.
        nll: shape `(rows, columns)`.
        tokens: predicted tokens per column.
        neurons: neurons deactivated per row.
    """

    rows: list[str]
    columns: list[str]
    baseline: torch.Tensor
    nll: torch.Tensor
    tokens: list[int]
    neurons: dict[str, int] = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    @property
    def delta(self) -> torch.Tensor:
        """NLL change vs the baseline (nats)."""
        return self.nll - self.baseline[None, :]

    @property
    def ppl(self) -> torch.Tensor:
        return self.nll.exp()

    @property
    def delta_ppl(self) -> torch.Tensor:
        return self.ppl - self.baseline.exp()[None, :]

    def specificity(self) -> dict[str, bool]:
        """For each group row that is also a column: does its own column rise most?"""
        delta = self.delta
        out = {}
        for i, row in enumerate(self.rows):
            if row in self.columns:
                own = delta[i, self.columns.index(row)]
                out[row] = bool(all(own > delta[i, j] for j, c in enumerate(self.columns) if c != row))
        return out

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "columns": self.columns,
            "baseline_nll": self.baseline.tolist(),
            "baseline_ppl": self.baseline.exp().tolist(),
            "nll": self.nll.tolist(),
            "ppl": self.ppl.tolist(),
            "delta_nll": self.delta.tolist(),
            "delta_ppl": self.delta_ppl.tolist(),
            "tokens": self.tokens,
            "neurons": self.neurons,
            "metadata": self.metadata,
        }

    def to_markdown(self) -> str:
        """Delta NLL table, rows deactivated, columns evaluated; the baseline as the first row."""
        return delta_markdown(self, corner="deactivated \\ evaluated", baseline_label="(baseline NLL)", digits=3)

    def save(self, directory: str | os.PathLike, plot: bool = True) -> list[Path]:
        """`nll_matrix.json`, `nll_matrix.csv` (long form) and, with `plot`, `nll_matrix.png`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = [directory / "nll_matrix.json", directory / "nll_matrix.csv"]
        written[0].write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")
        with written[1].open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(
                ["deactivated", "evaluated", "neurons", "nll", "ppl", "delta_nll", "delta_ppl", "baseline_nll"]
            )
            for i, row in enumerate(self.rows):
                for j, column in enumerate(self.columns):
                    writer.writerow(
                        [
                            row,
                            column,
                            self.neurons.get(row, 0),
                            f"{float(self.nll[i, j]):.6f}",
                            f"{float(self.ppl[i, j]):.6f}",
                            f"{float(self.delta[i, j]):.6f}",
                            f"{float(self.delta_ppl[i, j]):.6f}",
                            f"{float(self.baseline[j]):.6f}",
                        ]
                    )
        if plot:
            from .plotting import plot_nll_matrix

            written.append(plot_nll_matrix(self, directory / "nll_matrix.png"))
        return written

    @classmethod
    def load(cls, path: str | os.PathLike) -> NLLMatrix:
        path = Path(path)
        data = json.loads((path / "nll_matrix.json" if path.is_dir() else path).read_text(encoding="utf-8"))
        return cls(
            data["rows"],
            data["columns"],
            torch.tensor(data["baseline_nll"], dtype=torch.float64),
            torch.tensor(data["nll"], dtype=torch.float64),
            data["tokens"],
            data["neurons"],
            data["metadata"],
        )


def nll_matrix(
    model: nn.Module,
    neuron_set: NeuronSet,
    heldout_corpora: Mapping[str, CorpusSpec] | Mapping[str, list[Batch]],
    *,
    tokenizer=None,
    groups: Sequence[str] | None = None,
    seq_len: int = 512,
    batch_size: int = 8,
    max_tokens: int | None = None,
    random_control: int | None = None,
    progress: bool = True,
) -> NLLMatrix:
    """For each group i (rows), deactivate its neurons; measure mean token NLL on every held-out group j.

    `heldout_corpora` holds texts (packed as in recording) or batch dicts; `random_control=SEED`
    adds, per group, a row of as many random neurons per layer, to show whether the effect is specific.
    """
    if getattr(getattr(unwrap_model(model), "config", None), "is_encoder_decoder", False):
        raise ValueError("The NLL matrix scores decoder LMs; for translation models use `lsn.translate` evaluation.")
    neuron_set.check_compatible(model)
    rows = list(groups) if groups is not None else neuron_set.groups
    eval_sets = evaluation_batches(
        heldout_corpora, tokenizer=tokenizer, seq_len=seq_len, batch_size=batch_size, max_tokens=max_tokens
    )
    columns = list(eval_sets)

    def measure(label: str) -> list[float]:
        return [mean_token_nll(model, eval_sets[c], desc=f"{label} | {c}" if progress else None)[0] for c in columns]

    was_training = model.training
    model.eval()
    try:
        baseline = measure("baseline")
        plans = [(row, neuron_set.subset(row)) for row in rows]
        if random_control is not None:  # one draw for all rows, so each row gets its own random neurons
            control = random_neurons(neuron_set.subset(rows), seed=random_control)
            plans += [(f"random:{row}", control.subset(row)) for row in rows]
        nll, neurons = [], {}
        for label, subset in tqdm(plans, desc="nll matrix", disable=not progress):
            neurons[label] = int(subset.counts_per_layer().sum())
            with intervene(model, subset, "zero"):
                nll.append(measure(label))
    finally:
        model.train(was_training)
    counts = [sum(int(b.inputs["attention_mask"][:, 1:].sum()) for b in eval_sets[c]) for c in columns]
    return NLLMatrix(
        rows=[label for label, _ in plans],
        columns=columns,
        baseline=torch.tensor(baseline, dtype=torch.float64),
        nll=torch.tensor(nll, dtype=torch.float64).reshape(len(plans), len(columns)),
        tokens=counts,
        neurons=neurons,
        metadata={
            "method": neuron_set.method,
            "parameters": neuron_set.parameters,
            "model": neuron_set.model,
            "seq_len": seq_len,
            "max_tokens": max_tokens,
            "random_control": random_control,
        },
    )
