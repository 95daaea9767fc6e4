"""`evaluate` module: SQuAD exact match and F1, with lsn's multilingual variant (`lang=`)."""

import datasets
import evaluate

from lsn.metrics.qa import qa_scores

_DESCRIPTION = """SQuAD v1.1 exact match and token F1 (percent). With `lang` other than English: Unicode
punctuation removed, no article rule, characters of unspaced scripts (zh, ja, th, ...) as tokens."""

_INPUTS = """
Args:
    predictions: list of predicted answer strings.
    references: list of lists of gold answer strings.
    lang: language code of the answers (default: English rules).
Returns:
    exact_match, f1 (percent).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class LsnSquad(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Rajpurkar et al. 2016 (SQuAD); Lewis et al. 2020 (MLQA)",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
            ),
        )

    def _compute(self, predictions, references, lang=None):
        return qa_scores(predictions, references, lang)
