"""XNLI and XQuAD: loading by hub name or from local files of the same schema, the paper's splits,
and the features each task format needs (Mondal et al. 2025; DESIGN.md §6).

Schemas (as on the hub):
- XNLI (`facebook/xnli`, config = language): `premise`, `hypothesis`, `label` (0 entailment,
  1 neutral, 2 contradiction); splits train / validation / test.
- XQuAD (`google/xquad`, config `xquad.<lang>`): `id`, `context`, `question`,
  `answers = {"text": [...], "answer_start": [...]}`; one split, validation.
Local files: `<data_dir>/xnli.<lang>.<split>.jsonl` and `<data_dir>/xquad.<lang>.jsonl`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import datasets
import transformers
from packaging.version import Version

logger = logging.getLogger(__name__)

__all__ = [
    "NLI_LABELS",
    "XNLI_LANGUAGES",
    "XQUAD_LANGUAGES",
    "encode_nli_classification",
    "encode_nli_prompt",
    "encode_qa_prompt",
    "fit_qa_prompt",
    "mondal_nli_features",
    "mondal_nli_text",
    "mondal_qa_features",
    "mondal_qa_prompt",
    "load_xnli",
    "load_xquad",
    "nli_prompt",
    "paper_split",
    "prompt_features",
    "qa_prompt",
    "require_last_token_pooling",
]

XNLI_LANGUAGES = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
XQUAD_LANGUAGES = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
NLI_LABELS = ("entailment", "neutral", "contradiction")
PromptStyle = Literal["lsn", "mondal"]
LossOn = Literal["answer", "sequence"]
NLIFormat = Literal["lsn", "mondal"]
MONDAL_NLI_PAD_LENGTH = 512  # their XNLI features are padded (and truncated) to 512 tokens, then cut

# Mondal et al.'s released XQuAD prompt (an Alpaca template), as their code builds it: a triple-quoted template
# indented by 12 spaces and `.strip()`-ed, so every line after the first keeps that indentation.
_MONDAL_INDENT = " " * 12
_MONDAL_QA = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    f"{_MONDAL_INDENT}### Instruction:\n{_MONDAL_INDENT}Answer the question based on the given context.\n\n"
    f"{_MONDAL_INDENT}### Input:\n{_MONDAL_INDENT}Context: {{context}} \n{_MONDAL_INDENT}Question: {{question}}\n\n"
    f"{_MONDAL_INDENT}### Response:"
)

_XNLI_COLUMNS = {"premise", "hypothesis", "label"}
_XQUAD_COLUMNS = {"id", "context", "question", "answers"}


def _check(ds: datasets.Dataset, columns: set[str], what: str) -> datasets.Dataset:
    missing = columns - set(ds.column_names)
    if missing:
        raise ValueError(f"{what} lacks the column(s) {sorted(missing)} of its hub schema (has {ds.column_names}).")
    if len(ds) == 0:
        raise ValueError(f"{what} is empty.")
    return ds


def _local(path: Path, what: str) -> datasets.Dataset:
    if not path.is_file():
        raise FileNotFoundError(f"No {what} file at `{path}`.")
    return datasets.load_dataset("json", data_files=str(path), split="train")


def load_xnli(
    lang: str,
    split: Literal["train", "validation", "test"] = "test",
    *,
    data_dir: str | Path | None = None,
    name: str = "facebook/xnli",
    limit: int | None = None,
) -> datasets.Dataset:
    """One language's XNLI split from the hub (or `data_dir`), at most `limit` rows."""
    what = f"XNLI {lang}/{split}"
    if data_dir is not None:
        ds = _local(Path(data_dir) / f"xnli.{lang}.{split}.jsonl", what)
    else:
        if lang not in XNLI_LANGUAGES:
            raise ValueError(f"XNLI has no language `{lang}`; it has {', '.join(XNLI_LANGUAGES)}.")
        ds = datasets.load_dataset(name, lang, split=split)
    ds = _check(ds, _XNLI_COLUMNS, what)
    return ds.select(range(min(limit, len(ds)))) if limit is not None else ds


def load_xquad(
    lang: str, *, data_dir: str | Path | None = None, name: str = "google/xquad", limit: int | None = None
) -> datasets.Dataset:
    """One language's XQuAD (its only split, validation) from the hub (or `data_dir`)."""
    what = f"XQuAD {lang}"
    if data_dir is not None:
        ds = _local(Path(data_dir) / f"xquad.{lang}.jsonl", what)
    else:
        if lang not in XQUAD_LANGUAGES:
            raise ValueError(f"XQuAD has no language `{lang}`; it has {', '.join(XQUAD_LANGUAGES)}.")
        ds = datasets.load_dataset(name, f"xquad.{lang}", split="validation")
    ds = _check(ds, _XQUAD_COLUMNS, what)
    return ds.select(range(min(limit, len(ds)))) if limit is not None else ds


def paper_split(ds: datasets.Dataset, train_fraction: float = 0.8) -> tuple[datasets.Dataset, datasets.Dataset]:
    """The paper's XQuAD split: the first `train_fraction` of rows to train, the rest to test (no shuffle),
    so every language splits at the same parallel items."""
    if not 0 < train_fraction < 1:
        raise ValueError(f"`train_fraction` must lie in (0, 1), got {train_fraction}.")
    cut = int(len(ds) * train_fraction)
    return ds.select(range(cut)), ds.select(range(cut, len(ds)))


# ---------------------------------------------------------------- formats
def nli_prompt(premise: str, hypothesis: str) -> str:
    return (
        f"Premise: {premise}\nHypothesis: {hypothesis}\n"
        "Does the premise entail the hypothesis? Answer entailment, neutral or contradiction.\nAnswer:"
    )


def qa_prompt(context: str, question: str) -> str:
    return (
        f"Answer the question with a span copied from the context.\nContext: {context}\nQuestion: {question}\nAnswer:"
    )


def mondal_qa_prompt(context: str, question: str) -> str:
    """Mondal et al.'s XQuAD prompt (their released code, whitespace included); the answer follows after a space."""
    return _MONDAL_QA.format(context=context.strip(), question=question.strip())


def mondal_nli_text(premise: str, hypothesis: str, eos_token: str) -> str:
    """Mondal et al.'s XNLI input: `premise + " " + eos + " " + hypothesis`."""
    return f"{premise} {eos_token} {hypothesis}"


def mondal_nli_features(tokenizer, premises, hypotheses, max_length: int = 256) -> tuple[list[dict], int]:
    """Their XNLI features: padded and truncated to 512 tokens, kept only when shorter than `max_length` real
    tokens, then cut to `max_length` (so every kept row is `max_length` long, padding included).
    Returns (rows of `input_ids` / `attention_mask`, number of rows dropped); row order follows the input."""
    texts = [mondal_nli_text(p, h, tokenizer.eos_token) for p, h in zip(premises, hypotheses, strict=True)]
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    try:
        enc = tokenizer(texts, padding="max_length", truncation=True, max_length=MONDAL_NLI_PAD_LENGTH)
    finally:
        tokenizer.padding_side = side
    rows, dropped = [], 0
    for ids, mask in zip(enc["input_ids"], enc["attention_mask"], strict=True):
        if sum(mask) < max_length:
            rows.append({"input_ids": ids[:max_length], "attention_mask": mask[:max_length]})
        else:
            rows.append(None)
            dropped += 1
    return rows, dropped


def fit_qa_prompt(tokenizer, context: str, question: str, max_tokens: int) -> str:
    """`qa_prompt` of at most `max_tokens` tokens (special tokens included), cut in the context only.

    A tokenizer's own truncation cuts on the right and would drop the question and the "Answer:"
    cue of a long context (most often in languages that need more tokens); here the context
    loses its end instead, so the instruction, the question and the cue always stay.
    """
    prompt = qa_prompt(context, question)
    length = len(tokenizer(prompt)["input_ids"])
    if length <= max_tokens:
        return prompt
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    fixed = len(tokenizer(qa_prompt("", question))["input_ids"])
    keep = max(0, min(len(context_ids), max_tokens - fixed))
    while True:  # tokens may merge at the cut: shorten until the whole prompt fits
        prompt = qa_prompt(tokenizer.decode(context_ids[:keep], skip_special_tokens=True), question)
        length = len(tokenizer(prompt)["input_ids"])
        if length <= max_tokens or keep == 0:
            break
        keep = max(0, keep - max(1, length - max_tokens))
    if length > max_tokens:
        logger.warning(
            "The question alone needs %d tokens, more than the %d allowed; the context is left out.", length, max_tokens
        )
    return prompt


def require_last_token_pooling() -> None:
    """Refuse transformers < 4.49 for premise + EOS + hypothesis classification.

    With pad = EOS (as Llama-type tokenizers are set up), older sequence-classification heads
    pool on the token before the FIRST pad id, which is the premise's end: the head would never
    see the hypothesis. From 4.49 they pool on the last token that is not a pad id.
    """
    if Version(transformers.__version__) < Version("4.49"):
        raise RuntimeError(
            f"transformers {transformers.__version__} pools XNLI's premise + EOS + hypothesis on the premise's "
            "end (the first EOS, which is also the pad token); upgrade: pip install 'transformers>=4.49'."
        )


def encode_nli_classification(tokenizer, max_length: int = 256, nli_format: NLIFormat = "lsn"):
    """Batched map function: premise + EOS + hypothesis, the label as `labels` (a linear head on the last token).

    `nli_format="mondal"`: their features (`mondal_nli_features`); rows of `max_length` or more tokens are dropped.
    """
    require_last_token_pooling()

    def encode(batch: dict) -> dict:
        if nli_format == "mondal":
            rows, dropped = mondal_nli_features(tokenizer, batch["premise"], batch["hypothesis"], max_length)
            if dropped:
                logger.info("XNLI (mondal format): dropped %d rows of >= %d tokens.", dropped, max_length)
            kept = [(r, y) for r, y in zip(rows, batch["label"], strict=True) if r is not None]
            return {
                "input_ids": [r["input_ids"] for r, _ in kept],
                "attention_mask": [r["attention_mask"] for r, _ in kept],
                "labels": [int(y) for _, y in kept],
            }
        texts = [f"{p}{tokenizer.eos_token}{h}" for p, h in zip(batch["premise"], batch["hypothesis"], strict=True)]
        out = tokenizer(texts, truncation=True, max_length=max_length)
        out["labels"] = list(batch["label"])
        return out

    return encode


def _answer_ids(tokenizer, answer: str) -> list[int]:
    return tokenizer(" " + answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def prompt_features(
    tokenizer, prompt: str, answer: str, max_length: int, loss_on: LossOn = "answer"
) -> dict[str, list[int]]:
    """Prompt + answer + EOS, with the loss on the answer only (`loss_on="sequence"`: on every token, as Mondal
    et al.'s code); a prompt still too long is cut from the left (after the first token), so its end (the
    question and the answer cue) stays."""
    answer_ids = _answer_ids(tokenizer, answer)
    prompt_ids = tokenizer(prompt)["input_ids"]
    budget = max(1, max_length - len(answer_ids))
    if len(prompt_ids) > budget:
        prompt_ids = prompt_ids[:1] + prompt_ids[len(prompt_ids) - budget + 1 :]
    ids = prompt_ids + answer_ids
    labels = list(ids) if loss_on == "sequence" else [-100] * len(prompt_ids) + answer_ids
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def mondal_qa_features(
    tokenizer, context: str, question: str, answer: str, max_length: int = 512, loss_on: LossOn = "sequence"
) -> dict[str, list[int]] | None:
    """Mondal et al.'s XQuAD training row: their prompt, a space, the stripped answer and EOS, tokenized as one
    text; `None` (dropped, as their code does) when it has `max_length - 1` tokens or more. The loss covers the
    whole sequence (their code) or, with `loss_on="answer"`, the tokens after the prompt only."""
    prompt = mondal_qa_prompt(context, question)
    ids = tokenizer(f"{prompt} {answer.strip()}{tokenizer.eos_token}")["input_ids"]
    if len(ids) >= max_length - 1:
        return None
    if loss_on == "sequence":
        labels = list(ids)
    else:
        cut = min(len(tokenizer(prompt)["input_ids"]), len(ids) - 1)
        labels = [-100] * cut + ids[cut:]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def encode_nli_prompt(tokenizer, max_length: int = 256, loss_on: LossOn = "answer"):
    """Batched map function: an instruction prompt whose answer is the label word (loss on it only, or on the
    whole sequence)."""

    def encode(batch: dict) -> dict:
        rows = [
            prompt_features(tokenizer, nli_prompt(p, h), NLI_LABELS[int(y)], max_length, loss_on)
            for p, h, y in zip(batch["premise"], batch["hypothesis"], batch["label"], strict=True)
        ]
        return {k: [r[k] for r in rows] for k in ("input_ids", "attention_mask", "labels")}

    return encode


def encode_qa_prompt(tokenizer, max_length: int = 512, prompt_style: PromptStyle = "lsn", loss_on: LossOn = "answer"):
    """Batched map function: an instruction prompt whose answer is the first gold span (loss on it only, or on
    the whole sequence); a long context is cut (`fit_qa_prompt`), never the question or the answer cue.
    `prompt_style="mondal"`: their prompt, rows of `max_length - 1` tokens or more dropped (`mondal_qa_features`)."""

    def encode(batch: dict) -> dict:
        rows = []
        for c, q, a in zip(batch["context"], batch["question"], batch["answers"], strict=True):
            answer = a["text"][0]
            if prompt_style == "mondal":
                if (row := mondal_qa_features(tokenizer, c, q, answer, max_length, loss_on)) is not None:
                    rows.append(row)
                continue
            budget = max(1, max_length - len(_answer_ids(tokenizer, answer)))
            prompt = fit_qa_prompt(tokenizer, c, q, budget)
            rows.append(prompt_features(tokenizer, prompt, answer, max_length, loss_on))
        return {k: [r[k] for r in rows] for k in ("input_ids", "attention_mask", "labels")}

    return encode
