"""Zero-shot cross-lingual evaluation: accuracy on XNLI, exact match / F1 on XQuAD, per language,
and the language x condition table."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

import datasets
import torch
from torch import nn
from tqdm.auto import tqdm

from ..metrics import accuracy, qa_scores, token_id_scores
from ..models import first_device
from ..scoring import token_nll
from .data import (
    NLI_LABELS,
    NLIFormat,
    PromptStyle,
    fit_qa_prompt,
    mondal_nli_features,
    mondal_qa_prompt,
    nli_prompt,
    prompt_features,
    require_last_token_pooling,
)

__all__ = ["evaluate_nli_classification", "evaluate_nli_prompt", "evaluate_qa", "results_table"]


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(map(len, rows))
    return torch.tensor([r + [value] * (width - len(r)) for r in rows])


def _rows(ds: datasets.Dataset, batch_size: int, desc: str) -> Iterator[dict]:
    """`ds` in slices of `batch_size` rows, with a progress bar."""
    for i in tqdm(range(0, len(ds), batch_size), desc=desc, leave=False):
        yield ds[i : i + batch_size]


def evaluate_nli_classification(
    model: nn.Module,
    tokenizer,
    ds: datasets.Dataset,
    batch_size: int = 16,
    max_length: int = 256,
    nli_format: NLIFormat = "lsn",
) -> dict[str, float]:
    """Accuracy of a sequence-classification model on premise + EOS + hypothesis.

    `nli_format="mondal"`: their input (`mondal_nli_features`, padded to `max_length`); rows of `max_length`
    tokens or more are left out of the accuracy, as their evaluation drops them (`dropped` in the result)."""
    require_last_token_pooling()
    device, predictions, labels, dropped = first_device(model), [], [], 0
    model.eval()
    with torch.inference_mode():
        for rows in _rows(ds, batch_size, "xnli"):
            if nli_format == "mondal":
                feats, n = mondal_nli_features(tokenizer, rows["premise"], rows["hypothesis"], max_length)
                dropped += n
                kept = [(f, y) for f, y in zip(feats, rows["label"], strict=True) if f is not None]
                if not kept:
                    continue
                enc = {k: torch.tensor([f[k] for f, _ in kept], device=device) for k in ("input_ids", "attention_mask")}
                labels += [y for _, y in kept]
            else:
                texts = [
                    f"{p}{tokenizer.eos_token}{h}" for p, h in zip(rows["premise"], rows["hypothesis"], strict=True)
                ]
                enc = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
                enc = enc.to(device)
                labels += list(rows["label"])
            predictions += model(**enc).logits.argmax(-1).tolist()
    if not predictions:
        raise ValueError(f"Every XNLI row has {max_length} tokens or more; raise `max_length`.")
    out = {"accuracy": accuracy(predictions, labels)}
    return out | ({"dropped": dropped} if nli_format == "mondal" else {})


def evaluate_nli_prompt(
    model: nn.Module, tokenizer, ds: datasets.Dataset, batch_size: int = 8, max_length: int = 256
) -> dict[str, float]:
    """Accuracy of a causal LM ranking the three label words by their log-likelihood after the prompt."""
    device, predictions = first_device(model), []
    model.eval()
    with torch.inference_mode():
        for rows in _rows(ds, batch_size, "xnli"):
            feats = [
                prompt_features(tokenizer, nli_prompt(p, h), label, max_length)
                for p, h in zip(rows["premise"], rows["hypothesis"], strict=True)
                for label in NLI_LABELS
            ]
            ids = _pad([f["input_ids"] for f in feats], tokenizer.pad_token_id).to(device)
            mask = _pad([f["attention_mask"] for f in feats], 0).to(device)
            labels = _pad([f["labels"] for f in feats], -100).to(device)
            # log-likelihood of the label word, the LM head applied in chunks (bounded memory at any vocabulary)
            scores = -token_nll(model, ids, mask, labels).sum(-1).reshape(-1, len(NLI_LABELS))
            predictions += scores.argmax(-1).tolist()
    return {"accuracy": accuracy(predictions, ds["label"])}


def evaluate_qa(
    model: nn.Module,
    tokenizer,
    ds: datasets.Dataset,
    lang: str | None = None,
    batch_size: int = 8,
    max_length: int = 512,
    max_new_tokens: int = 32,
    prompt_style: PromptStyle = "lsn",
    qa_metric: Literal["string", "token_ids"] = "string",
) -> dict[str, float]:
    """Exact match and F1 (percent) of greedy answers, cut at the first line break.

    `prompt_style="mondal"`: their prompt, uncut; a prompt of `max_length - 1` tokens or more is left out, as
    their evaluation drops it (`dropped` in the result). `qa_metric="token_ids"`: their metric
    (`lsn.metrics.token_id_scores`) on the generated ids up to and including the first EOS against
    `" " + answer + EOS` (the first gold answer), instead of SQuAD's string metrics over every gold answer.
    """
    device, predictions, ids, refs, dropped = first_device(model), [], [], [], 0
    eos = tokenizer.eos_token_id
    model.eval()
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        with torch.inference_mode():
            for rows in _rows(ds, batch_size, f"xquad {lang or ''}"):
                if prompt_style == "mondal":
                    pairs = [
                        (mondal_qa_prompt(c, q), a)
                        for c, q, a in zip(rows["context"], rows["question"], rows["answers"], strict=True)
                    ]
                    kept = [(p, a) for p, a in pairs if len(tokenizer(p)["input_ids"]) < max_length - 1]
                    dropped += len(pairs) - len(kept)
                else:
                    budget = max_length - max_new_tokens  # the context is cut, never the question or "Answer:"
                    kept = [
                        (fit_qa_prompt(tokenizer, c, q, budget), a)
                        for c, q, a in zip(rows["context"], rows["question"], rows["answers"], strict=True)
                    ]
                if not kept:
                    continue
                enc = tokenizer([p for p, _ in kept], padding=True, return_tensors="pt").to(device)
                out = model.generate(
                    **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
                )
                for row in out[:, enc["input_ids"].shape[1] :].tolist():
                    ids.append(row[: row.index(eos) + 1] if eos in row else row)
                texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
                predictions += [t.strip().split("\n")[0].strip() for t in texts]
                refs += [a["text"] for _, a in kept]
    finally:
        tokenizer.padding_side = side
    if not predictions:
        raise ValueError(f"Every XQuAD prompt has {max_length - 1} tokens or more; raise `max_length`.")
    if qa_metric == "token_ids":
        gold = [tokenizer(" " + r[0].strip(), add_special_tokens=False)["input_ids"] + [eos] for r in refs]
        scores = token_id_scores(ids, gold)
    else:
        scores = qa_scores(predictions, refs, lang)
    return scores | ({"dropped": dropped} if prompt_style == "mondal" else {})


def results_table(
    results: Mapping[str, Mapping[str, Mapping[str, float]]],
    metric: str,
    output_dir: str | os.PathLike | None = None,
    baseline: str | None = None,
) -> str:
    """Markdown: one row per language, one column per condition (the baseline first), and the mean;
    also `results.md` / `results.json` in `output_dir`."""
    conditions = list(results)
    if baseline is not None:
        if baseline not in results:
            raise ValueError(f"No results for the baseline `{baseline}`; conditions: {conditions}.")
        conditions = [baseline] + [c for c in conditions if c != baseline]
    languages = list(next(iter(results.values())))
    lines = ["| language | " + " | ".join(conditions) + " |", "|---" * (len(conditions) + 1) + "|"]
    for lang in languages:
        cells = []
        for c in conditions:
            value = results[c].get(lang, {}).get(metric)
            text = "—" if value is None else f"{value:.2f}" if metric != "accuracy" else f"{100 * value:.1f}"
            if baseline is not None and c != baseline and value is not None and lang in results[baseline]:
                diff = value - results[baseline][lang][metric]
                text += f" ({100 * diff:+.1f})" if metric == "accuracy" else f" ({diff:+.2f})"
            cells.append(text)
        lines.append(f"| {lang} | " + " | ".join(cells) + " |")
    means = []
    for c in conditions:
        values = [results[c][lang][metric] for lang in languages if lang in results[c]]
        mean = sum(values) / len(values)
        means.append(f"{100 * mean:.1f}" if metric == "accuracy" else f"{mean:.2f}")
    lines.append("| **mean** | " + " | ".join(means) + " |")
    table = "\n".join(lines)
    if output_dir is not None:
        directory = Path(output_dir)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "results.md").write_text(table + "\n", encoding="utf-8")
        (directory / "results.json").write_text(
            json.dumps({"metric": metric, "baseline": baseline, "results": results}, indent=2, ensure_ascii=False),
            encoding="utf-8",
        )
    return table
