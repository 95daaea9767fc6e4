"""Translation quality with sacrebleu: BLEU and chrF++ per direction, and group averages.

BLEU uses sacrebleu's defaults (signature `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp`), as
Tan et al. report; for Chinese and Japanese targets the matching tokenizer (`zh`, `ja-mecab` if
installed, else `char`) is used and named in the signature. chrF++ is chrF with word order 2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sacrebleu

from .data import parse_direction

__all__ = ["DirectionScore", "group_averages", "score_direction"]

_TARGET_TOKENIZE = {"zh": "zh", "ja": "char", "th": "char"}


@dataclass
class DirectionScore:
    direction: str
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    sentences: int


def score_direction(direction: str, hypotheses: Sequence[str], references: Sequence[str]) -> DirectionScore:
    """Corpus BLEU and chrF++ of one direction (one reference per sentence)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{direction}: {len(hypotheses)} hypotheses for {len(references)} references.")
    _, target = parse_direction(direction)
    bleu = sacrebleu.metrics.BLEU(tokenize=_TARGET_TOKENIZE.get(target, "13a"))
    chrf = sacrebleu.metrics.CHRF(word_order=2)
    b = bleu.corpus_score(list(hypotheses), [list(references)])
    c = chrf.corpus_score(list(hypotheses), [list(references)])
    return DirectionScore(
        direction, b.score, c.score, str(bleu.get_signature()), str(chrf.get_signature()), len(references)
    )


def group_averages(
    scores: Mapping[str, DirectionScore],
    *,
    pivot: str = "en",
    resource_groups: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, dict[str, float]]:
    """Mean BLEU / chrF++ over all directions, `pivot`->x, x->`pivot`, and each resource group of languages
    (a direction belongs to a group when its non-pivot language does)."""
    groups: dict[str, list[DirectionScore]] = {"all": list(scores.values()), f"{pivot}->x": [], f"x->{pivot}": []}
    for s in scores.values():
        src, tgt = parse_direction(s.direction)
        if src == pivot:
            groups[f"{pivot}->x"].append(s)
        if tgt == pivot:
            groups[f"x->{pivot}"].append(s)
        for name, langs in (resource_groups or {}).items():
            if (tgt if src == pivot else src) in langs:
                groups.setdefault(name, []).append(s)
    return {
        name: {
            "bleu": sum(s.bleu for s in members) / len(members),
            "chrf": sum(s.chrf for s in members) / len(members),
            "directions": len(members),
        }
        for name, members in groups.items()
        if members
    }
