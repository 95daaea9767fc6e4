"""Cross-lingual transfer on XNLI and XQuAD (Mondal et al. 2025): data, formats, training, evaluation."""

from .data import (
    NLI_LABELS,
    XNLI_LANGUAGES,
    XQUAD_LANGUAGES,
    encode_nli_classification,
    encode_nli_prompt,
    encode_qa_prompt,
    fit_qa_prompt,
    load_xnli,
    load_xquad,
    nli_prompt,
    paper_split,
    prompt_features,
    qa_prompt,
    require_last_token_pooling,
)
from .evaluation import evaluate_nli_classification, evaluate_nli_prompt, evaluate_qa, results_table

__all__ = [
    "NLI_LABELS",
    "XNLI_LANGUAGES",
    "XQUAD_LANGUAGES",
    "encode_nli_classification",
    "encode_nli_prompt",
    "encode_qa_prompt",
    "evaluate_nli_classification",
    "evaluate_nli_prompt",
    "evaluate_qa",
    "fit_qa_prompt",
    "load_xnli",
    "load_xquad",
    "nli_prompt",
    "paper_split",
    "prompt_features",
    "qa_prompt",
    "require_last_token_pooling",
    "results_table",
]
