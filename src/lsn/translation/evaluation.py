"""Translate with or without task masks and score every direction with sacrebleu."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from ..models import first_device
from .data import Pair, TranslationFormat
from .masks import TaskMasks
from .metrics import DirectionScore, group_averages, score_direction

__all__ = ["evaluate_directions", "results_table", "translate"]


def translate(
    model: nn.Module,
    tokenizer,
    fmt: TranslationFormat,
    direction: str,
    sources: Sequence[str],
    *,
    masks: TaskMasks | None = None,
    num_beams: int = 5,
    batch_size: int = 16,
    max_new_tokens: int = 128,
) -> list[str]:
    """Hypotheses for `sources`; with `masks`, the direction's mask is active during generation."""
    device = first_device(model)
    out: list[str] = []
    was_training = model.training
    model.eval()
    scope = masks.task_scope(direction) if masks is not None else nullcontext()
    try:
        with scope, torch.inference_mode():
            for i in tqdm(range(0, len(sources), batch_size), desc=f"translate {direction}", leave=False):
                inputs, extra = fmt.generation_inputs(tokenizer, direction, sources[i : i + batch_size])
                inputs = {k: v.to(device) for k, v in inputs.items()}
                generated = model.generate(
                    **inputs,
                    **extra,
                    num_beams=num_beams,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                )
                out += fmt.decode(tokenizer, generated, inputs)
    finally:
        model.train(was_training)
    return out


def evaluate_directions(
    model: nn.Module,
    tokenizer,
    fmt: TranslationFormat,
    pairs: Mapping[str, Sequence[Pair]],
    *,
    masks: TaskMasks | None = None,
    **translate_kwargs,
) -> dict[str, DirectionScore]:
    """BLEU and chrF++ per direction (masks, if given, must already be attached to `model`)."""
    scores = {}
    for direction, direction_pairs in pairs.items():
        hypotheses = translate(
            model, tokenizer, fmt, direction, [p[0] for p in direction_pairs], masks=masks, **translate_kwargs
        )
        scores[direction] = score_direction(direction, hypotheses, [p[1] for p in direction_pairs])
    return scores


def results_table(
    results: Mapping[str, Mapping[str, DirectionScore]],
    output_dir: str | os.PathLike | None = None,
    *,
    pivot: str = "en",
    resource_groups: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """Markdown table: direction x system (BLEU / chrF++), then group averages; also JSON when `output_dir`."""
    systems = list(results)
    directions = list(next(iter(results.values())))
    head = "| direction | " + " | ".join(f"{s} BLEU | {s} chrF++" for s in systems) + " |"
    lines = [head, "|---" * (1 + 2 * len(systems)) + "|"]
    for d in directions:
        lines.append(
            f"| {d} | " + " | ".join(f"{results[s][d].bleu:.2f} | {results[s][d].chrf:.2f}" for s in systems) + " |"
        )
    averages = {s: group_averages(results[s], pivot=pivot, resource_groups=resource_groups) for s in systems}
    for group in averages[systems[0]]:
        lines.append(
            f"| **{group}** | "
            + " | ".join(f"{averages[s][group]['bleu']:.2f} | {averages[s][group]['chrf']:.2f}" for s in systems)
            + " |"
        )
    signature = next(iter(results[systems[0]].values()))
    lines += ["", f"BLEU signature: `{signature.bleu_signature}`; chrF++ signature: `{signature.chrf_signature}`"]
    table = "\n".join(lines)
    if output_dir is not None:
        directory = Path(output_dir)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "results.md").write_text(table + "\n", encoding="utf-8")
        payload = {
            s: {"directions": {d: vars(v) for d, v in results[s].items()}, "averages": averages[s]} for s in systems
        }
        (directory / "results.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
    return table
