"""`evaluate` module: classification accuracy."""

import datasets
import evaluate

from lsn.metrics.classification import accuracy

_DESCRIPTION = "Share of predictions equal to their reference label."
_INPUTS = """
Args:
    predictions: list of predicted label ids.
    references: list of gold label ids.
Returns:
    accuracy (in [0, 1]).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class LsnAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        return {"accuracy": accuracy(predictions, references)}
