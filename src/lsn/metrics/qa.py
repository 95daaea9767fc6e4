"""Extractive QA metrics: SQuAD exact match and token F1, standard and multilingual.

Standard (`lang=None` or `"en"`, the SQuAD v1.1 script's rules): lower-case, drop ASCII
punctuation, drop the articles a/an/the, split on whitespace.
Multilingual (any other `lang`): drop every Unicode punctuation character, no article rule
(English articles are not words of other languages), and for scripts written without spaces
(Han, Hiragana, Katakana, Thai, ...) every character of those scripts is its own token, as
MLQA's evaluation does.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence

__all__ = ["exact_match", "f1_score", "normalize_answer", "qa_scores", "token_id_scores", "tokens"]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ASCII_PUNCT = set(string.punctuation)
_NO_SPACE = re.compile(
    "([\u0e00-\u0e7f\u0e80-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u309f\u30a0-\u30ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af])"
)


def _english(lang: str | None) -> bool:
    return lang is None or lang == "en"


def normalize_answer(text: str, lang: str | None = None) -> str:
    """Lower-case, strip punctuation (and English articles for English), collapse whitespace."""
    text = text.lower()
    if _english(lang):
        text = "".join(ch for ch in text if ch not in _ASCII_PUNCT)
        text = _ARTICLES.sub(" ", text)
    else:
        text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    return " ".join(text.split())


def tokens(text: str, lang: str | None = None) -> list[str]:
    """Tokens of a normalised answer: whitespace words; characters of unspaced scripts alone."""
    normalized = normalize_answer(text, lang)
    if _english(lang):
        return normalized.split()
    return _NO_SPACE.sub(r" \1 ", normalized).split()


def exact_match(prediction: str, reference: str, lang: str | None = None) -> float:
    return float(normalize_answer(prediction, lang) == normalize_answer(reference, lang))


def f1_score(prediction: str, reference: str, lang: str | None = None) -> float:
    pred, ref = tokens(prediction, lang), tokens(reference, lang)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def qa_scores(
    predictions: Sequence[str], references: Sequence[Sequence[str]], lang: str | None = None
) -> dict[str, float]:
    """Mean exact match and F1 in percent; each prediction scores its best reference."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} reference lists.")
    if not predictions:
        raise ValueError("No predictions to score.")
    em = sum(max(exact_match(p, r, lang) for r in refs) for p, refs in zip(predictions, references, strict=True))
    f1 = sum(max(f1_score(p, r, lang) for r in refs) for p, refs in zip(predictions, references, strict=True))
    return {"exact_match": 100 * em / len(predictions), "f1": 100 * f1 / len(predictions)}


def token_id_scores(predictions: Sequence[Sequence[int]], references: Sequence[Sequence[int]]) -> dict[str, float]:
    """Exact match and F1 (percent) on token ids, as Mondal et al.'s released XQuAD evaluation: exact match when
    the id sequences are equal, F1 from the multiset overlap of ids (0 when either side is empty). No text
    normalisation: a different tokenization of the same answer scores lower."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references.")
    if not predictions:
        raise ValueError("No predictions to score.")
    em = f1 = 0.0
    for pred, ref in zip(predictions, references, strict=True):
        pred, ref = list(pred), list(ref)
        em += float(pred == ref)
        common = sum((Counter(pred) & Counter(ref)).values())
        precision = common / len(pred) if pred else 0.0
        recall = common / len(ref) if ref else 0.0
        f1 += 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"exact_match": 100 * em / len(predictions), "f1": 100 * f1 / len(predictions)}
