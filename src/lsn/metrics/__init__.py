"""Task metrics, computed locally: accuracy, SQuAD exact match / F1 and a multilingual variant.

The same functions are shipped as local `evaluate` modules (`lsn.metrics.load("squad")`),
since `evaluate.load("squad")` fetches its script from the hub and fails offline.
"""

from .classification import accuracy
from .modules import load
from .qa import exact_match, f1_score, normalize_answer, qa_scores, token_id_scores, tokens

__all__ = ["accuracy", "exact_match", "f1_score", "load", "normalize_answer", "qa_scores", "token_id_scores", "tokens"]
