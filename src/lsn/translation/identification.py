"""Identification (Tan et al. 2024): per direction, count neuron firing over its validation pairs,
teacher-forced, in eval mode; then keep each layer's most active neurons up to a share `k`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..corpora import COUNT_PADDING
from ..neuron_set import NeuronSet
from ..recording import record_activations
from ..selection import select_specialized
from ..stats import ActivationStats
from .data import Pair, TaskCollator, TranslationFormat, parse_direction

__all__ = ["direction_batches", "direction_k", "identify"]


def direction_batches(
    tokenizer,
    fmt: TranslationFormat,
    direction: str,
    pairs: Sequence[Pair],
    batch_size: int,
    model: nn.Module | None = None,
) -> list[dict[str, torch.Tensor]]:
    """Padded teacher-forcing batches of one direction (`labels` are -100 on padding and prompts)."""
    collate = TaskCollator(tokenizer, model=model)
    features = fmt.encode(tokenizer, direction, pairs)
    return [collate(features[i : i + batch_size]) for i in range(0, len(features), batch_size)]


def direction_k(
    directions: Sequence[str], k: float, *, pivot: str = "en", k_to_pivot: float | None = None
) -> dict[str, float]:
    """Per-direction share: `k`, or `k_to_pivot` for x->pivot directions (a per-family setting)."""
    return {d: (k_to_pivot if k_to_pivot is not None and parse_direction(d)[1] == pivot else k) for d in directions}


def identify(
    model: nn.Module,
    tokenizer,
    fmt: TranslationFormat,
    pairs: Mapping[str, Sequence[Pair]],
    *,
    k: float | Mapping[str, float] = 0.95,
    encoder_k: float | Mapping[str, float] | None = None,
    batch_size: int = 16,
    progress: bool = True,
    count_padding: bool = False,
) -> tuple[ActivationStats, NeuronSet]:
    """Record each direction's firing counts (teacher-forced) and select its specialized neurons.

    `count_padding=True` counts padding positions too, as Tan et al.'s code does (lsn counts real tokens only)."""
    encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
    corpora = {
        d: direction_batches(tokenizer, fmt, d, p, batch_size, model=model if encoder_decoder else None)
        for d, p in pairs.items()
    }
    if count_padding:
        corpora = {d: [dict(b) | {COUNT_PADDING: True} for b in batches] for d, batches in corpora.items()}
    stats = record_activations(model, corpora, progress=progress)
    return stats, select_specialized(stats, k, encoder_k=encoder_k)
