"""Kojima et al. 2024: neurons as detectors of a language, scored by average precision.

Each neuron's sentence responses (`lsn.responses`) are the scores of a one-vs-rest classifier
of "this sentence is in group k"; its average precision is exactly scikit-learn's
`average_precision_score`: AP = sum over distinct thresholds t (descending) of
(R_t - R_prev) * P_t, so tied scores form one step. Per group, the `top_n` highest and
`bottom_n` lowest AP over all layers together are kept; the intervention that forces the
language sets them to the median response on the group's sentences (their "on_p50").
"""

from __future__ import annotations

import torch

from .neuron_set import NeuronSet
from .responses import SentenceResponses
from .selection import selected_neurons, selection_method

__all__ = ["average_precision", "median_responses", "select_average_precision"]

_CHUNK_ELEMENTS = 1 << 24  # sentences x neurons per step, so large models fit in memory


def _average_precision_columns(scores: torch.Tensor, labels: torch.Tensor, num_groups: int) -> torch.Tensor:
    """`scores` `(S, C)`, `labels` `(S,)` -> AP `(C, groups)` in float64."""
    n = scores.shape[0]
    ordered, order = scores.double().sort(dim=0, descending=True, stable=True)
    # Each position's tie block ends at the last position holding the same score.
    last = torch.ones_like(ordered, dtype=torch.bool)
    last[:-1] = ordered[:-1] != ordered[1:]
    positions = torch.arange(n).unsqueeze(1).expand_as(ordered)
    ends = torch.where(last, positions, torch.full_like(positions, n))
    ends = ends.flip(0).cummin(0).values.flip(0)  # [S, C]: index of the block's last position
    ranked_labels = labels[order]  # [S, C]
    out = torch.empty(scores.shape[1], num_groups, dtype=torch.float64)
    for k in range(num_groups):
        positive = (ranked_labels == k).double()
        tp = positive.cumsum(0)
        precision = tp / (positions + 1)  # at every cut; read at block ends only
        at_end = precision.gather(0, ends)
        total = tp[-1].clamp_min(1)
        # sum over blocks of (new positives / P) * precision at the block's end
        out[:, k] = (positive * at_end).sum(0) / total
    return out


def average_precision(responses: SentenceResponses) -> torch.Tensor:
    """Each neuron's AP as a one-vs-rest detector of each group: `(layers, neurons, groups)` float64."""
    s, layers, neurons = responses.values.shape
    flat = responses.values.reshape(s, layers * neurons)
    step = max(1, _CHUNK_ELEMENTS // max(s, 1))
    chunks = [
        _average_precision_columns(flat[:, i : i + step], responses.labels, len(responses.groups))
        for i in range(0, flat.shape[1], step)
    ]
    return torch.cat(chunks).reshape(layers, neurons, len(responses.groups))


def median_responses(responses: SentenceResponses, group: str | None = None) -> torch.Tensor:
    """Median response on each group's sentences (numpy's median: the mean of the two middle values).

    `(layers, neurons, groups)`, or `(layers, neurons)` for one `group`: the value Kojima et al. set
    the selected neurons to when forcing that group.
    """
    groups = responses.groups if group is None else [group]
    tables = []
    for g in groups:
        values = responses.values[responses.labels == responses.group_index(g)]
        ordered = values.sort(dim=0).values
        n = ordered.shape[0]
        tables.append((ordered[(n - 1) // 2] + ordered[n // 2]) / 2)
    return tables[0] if group is not None else torch.stack(tables, -1)


@selection_method(
    "average_precision",
    "Kojima et al. 2024: neurons as detectors of a group, by average precision over sentence responses "
    "(the input is a responses file from `record_sentence_responses`).",
    reads=SentenceResponses,
    top_n="neurons of highest AP per group, over all layers",
    bottom_n="neurons of lowest AP per group",
)
def select_average_precision(responses: SentenceResponses, top_n: int, bottom_n: int = 0) -> NeuronSet:
    """Per group, the `top_n` neurons of highest and `bottom_n` of lowest AP over all layers together."""
    total = responses.num_layers * responses.num_neurons
    for name, value in (("top_n", top_n), ("bottom_n", bottom_n)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}.")
    if top_n + bottom_n > total:
        raise ValueError(f"`top_n + bottom_n` = {top_n + bottom_n} exceeds the model's {total} neurons.")
    ap = average_precision(responses).reshape(total, -1)
    chosen = {}
    for k, g in enumerate(responses.groups):
        order = ap[:, k].argsort(descending=True, stable=True)
        chosen[g] = torch.cat([order[:top_n], order[total - bottom_n :] if bottom_n else order[:0]])
    return selected_neurons(responses, chosen, "average_precision", {"top_n": top_n, "bottom_n": bottom_n})
