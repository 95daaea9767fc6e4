"""Classification accuracy (XNLI)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["accuracy"]


def accuracy(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Share of predictions equal to their reference, in [0, 1]."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references.")
    if not references:
        raise ValueError("No references to score.")
    return sum(int(p) == int(r) for p, r in zip(predictions, references, strict=True)) / len(references)
