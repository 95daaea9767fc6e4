"""Selection methods: from `ActivationStats` to a `NeuronSet` (DESIGN.md §3).

- `select_lape`: language activation probability entropy (Tang et al. 2024), exactly the
  reference algorithm, with deterministic tie-breaking (lower flat index first).
- `select_by_probability`: per-group activation-probability scores with a fixed budget
  (Mondal et al. 2025): their per-language-percentile score, or the pooled default.
- `select_specialized`: Neuron Specialization's cumulative-activation rule (Tan et al. 2024).
- `random_neurons`: a seeded control with the same count per group and layer.

Methods that select from statistics are registered by name (`selection_method`): the name is what
`lsn select --method NAME` takes, what `NeuronSet.method` stores, and the CLI's flags are built from the
function's keyword parameters and the help texts given at registration. Adding a method is one function, one
`@selection_method(...)` line and its test (docs/architecture.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import torch

from .neuron_set import NeuronSet
from .stats import ActivationStats

__all__ = [
    "SelectionMethod",
    "random_neurons",
    "select_by_probability",
    "select_lape",
    "select_specialized",
    "selected_neurons",
    "selection_method",
    "selection_methods",
]


@dataclass(frozen=True)
class SelectionMethod:
    """A registered selection method: `fn(source, **options) -> NeuronSet`, with a help text per option.

    `reads`: the class of its input (`ActivationStats`, or e.g. `SentenceResponses`), whose `.load(path)` the CLI
    calls on `lsn select PATH`."""

    name: str
    fn: Callable[..., NeuronSet]
    description: str
    options: dict[str, str]
    reads: type = ActivationStats


_METHODS: dict[str, SelectionMethod] = {}


def selection_method(name: str, description: str, *, reads: type = ActivationStats, **options: str) -> Callable:
    """Register `fn(stats, ..., option=default, ...) -> NeuronSet` as method `name`.

    `options` maps each parameter the command line exposes to its help text; each must be a parameter of `fn`
    (its default, if any, is the one default shared by Python and the CLI; without one the flag is required).
    `fn` builds its result with `selected_neurons(stats, chosen, name, parameters)`. `reads`: the input's class.
    """

    def register(fn: Callable[..., NeuronSet]) -> Callable[..., NeuronSet]:
        import inspect

        if name in _METHODS:
            raise ValueError(f"A selection method named `{name}` is already registered.")
        parameters = inspect.signature(fn).parameters
        if missing := [o for o in options if o not in parameters]:
            raise ValueError(f"Options {missing} of `{name}` are not parameters of {fn.__name__}.")
        _METHODS[name] = SelectionMethod(name, fn, description, dict(options), reads)
        return fn

    return register


def selection_methods() -> dict[str, SelectionMethod]:
    """The registered methods by name, in registration order."""
    return dict(_METHODS)


def _model_info(stats: ActivationStats) -> dict:
    keys = ("model_name", "revision", "architecture", "num_encoder_layers")
    return {k: stats.metadata[k] for k in keys if k in stats.metadata}


def _kth_smallest(values: torch.Tensor, rate: float) -> float:
    """The value at 1-based rank `round(N * rate)` of the flattened tensor (the reference's bar)."""
    flat = values.flatten()
    k = min(max(round(flat.numel() * rate), 1), flat.numel())
    return flat.kthvalue(k).values.item()


def _linear_quantile(values: torch.Tensor, q: float) -> float:
    """`torch.quantile(values.flatten(), q)` (linear interpolation between ranks), with no size limit."""
    flat = values.flatten().double()
    pos = q * (flat.numel() - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    low = flat.kthvalue(lo + 1).values.item()
    high = flat.kthvalue(hi + 1).values.item() if hi != lo else low
    return low + (high - low) * (pos - lo)


def _per_layer(flat_index: torch.Tensor, num_layers: int, num_neurons: int) -> list[torch.Tensor]:
    flat_index = torch.sort(flat_index).values
    layers = flat_index // num_neurons
    return [flat_index[layers == layer] % num_neurons for layer in range(num_layers)]


def selected_neurons(
    stats: ActivationStats,
    chosen: Mapping[str, torch.Tensor | list[torch.Tensor]],
    method: str,
    parameters: dict,
) -> NeuronSet:
    """The `NeuronSet` every selection method returns. `chosen`: group -> flat indices `layer * neurons + neuron`
    (a tensor), or one index tensor per layer; the set carries the stats' model facts and the method's name."""
    return NeuronSet(
        {
            g: _per_layer(idx, stats.num_layers, stats.num_neurons) if isinstance(idx, torch.Tensor) else idx
            for g, idx in chosen.items()
        },
        num_layers=stats.num_layers,
        num_neurons=stats.num_neurons,
        method=method,
        parameters=parameters,
        model=_model_info(stats),
    )


def lape_entropy(stats: ActivationStats) -> torch.Tensor:
    """Entropy over groups of each neuron's normalised activation probability, `(layers, neurons)`."""
    p = stats.probabilities()
    total = p.sum(-1, keepdim=True)
    q = torch.where(total > 0, p / total.clamp_min(torch.finfo(p.dtype).tiny), torch.zeros_like(p))  # 0/0 -> 0
    plogp = torch.where(q > 0, q * q.log(), torch.zeros_like(q))  # 0 * ln 0 = 0
    return -plogp.sum(-1)


@selection_method(
    "lape",
    "Language activation probability entropy (Tang et al. 2024).",
    top_rate="share of all neurons kept (the paper: 0.01; small models need more)",
    filter_rate="rank of the filter bar among all probabilities",
    activation_bar_ratio="rank of the bar a group's probability must exceed to own a neuron",
    variant="tang (Tang et al.'s code, the default) or mondal (Mondal et al.'s code: torch.quantile bars, "
    "every neuron tied with the cutoff entropy kept)",
)
def select_lape(
    stats: ActivationStats,
    top_rate: float = 0.01,
    filter_rate: float = 0.95,
    activation_bar_ratio: float = 0.95,
    variant: Literal["tang", "mondal"] = "tang",
) -> NeuronSet:
    """Language activation probability entropy (Tang et al. 2024).

    Keeps the `round(layers * neurons * top_rate)` neurons of lowest entropy across groups,
    among those firing above the `filter_rate` bar in some group, and gives each to every
    group where its probability exceeds the `activation_bar_ratio` bar. Small models need a
    larger `top_rate` (e.g. 0.05-0.1) to find neurons with a measurable effect.

    `variant="mondal"` reproduces Mondal et al.'s code: the bars are `torch.quantile` values (linear
    interpolation, not a rank), the entropy is `-sum q ln(q + 1e-10)` with `q = p / (sum p + 1e-10)`, and every
    neuron whose entropy is `<=` the cutoff (the largest of the `round(...)` lowest) is kept, so ties at the
    cutoff can keep more than the budget (and, when fewer neurons pass the filter, every neuron).
    """
    for name, value in (
        ("top_rate", top_rate),
        ("filter_rate", filter_rate),
        ("activation_bar_ratio", activation_bar_ratio),
    ):
        if not 0 < value <= 1:
            raise ValueError(f"`{name}` must lie in (0, 1], got {value}.")
    if len(stats.groups) < 2:
        raise ValueError(f"LAPE compares groups; these statistics hold only {stats.groups}. Record at least two.")
    if variant not in ("tang", "mondal"):
        raise ValueError(f"`variant` must be 'tang' or 'mondal', got {variant!r}.")
    p = stats.probabilities()
    if variant == "mondal":
        q = p / (p.sum(-1, keepdim=True) + 1e-10)
        entropy = -(q * torch.log(q + 1e-10)).sum(-1)
        filter_bar, activation_bar = _linear_quantile(p, filter_rate), _linear_quantile(p, activation_bar_ratio)
    else:
        entropy = lape_entropy(stats)
        filter_bar, activation_bar = _kth_smallest(p, filter_rate), _kth_smallest(p, activation_bar_ratio)
    entropy[(p > filter_bar).sum(-1) == 0] = torch.inf

    flat_entropy = entropy.flatten()
    keep = round(flat_entropy.numel() * top_rate)
    order = torch.sort(flat_entropy, stable=True).indices[:keep]  # ties: lower flat index first
    if variant == "mondal" and keep > 0:  # every neuron tied with the cutoff (flat order, as torch.nonzero)
        order = torch.nonzero(flat_entropy <= flat_entropy[order].max()).flatten()
    selected_p = p.reshape(-1, len(stats.groups))[order]  # [keep, groups]
    chosen = {g: order[selected_p[:, k] > activation_bar] for k, g in enumerate(stats.groups)}
    parameters = {
        "top_rate": top_rate,
        "filter_rate": filter_rate,
        "activation_bar_ratio": activation_bar_ratio,
        "variant": variant,
        "filter_bar": filter_bar,
        "activation_bar": activation_bar,
        "tokens": dict(zip(stats.groups, stats.tokens.tolist(), strict=True)),
    }
    return selected_neurons(stats, chosen, "lape", parameters)


@selection_method(
    "probability",
    "Activation-probability scores with a fixed budget per group (Mondal et al. 2025).",
    score="margin / contrast (pooled) or faithful (each group against its own percentile)",
    above="margin / contrast: the event scored, pre-activation > 0 (fires, the default) or > the threshold recorded "
    "with --threshold-from; faithful always scores the per-group threshold",
    top_k="neurons per group (default: rate x layers x neurons)",
    rate="neurons per group as a share of all neurons",
    min_score="pooled scores: keep only neurons scoring above this",
)
def select_by_probability(
    stats: ActivationStats,
    *,
    score: Literal["margin", "contrast", "faithful"] = "margin",
    above: Literal["zero", "threshold"] | None = None,
    top_k: int | None = None,
    rate: float = 0.00125,
    min_score: float = 0.0,
) -> NeuronSet:
    """Activation-probability thresholding: a score per neuron and group, a fixed budget per group.

    Scores (`p[k]` is the probability that the neuron's pre-activation exceeds a threshold on
    group k: 0 with `above="zero"` (the default), i.e. it fires, as LAPE; the per-neuron
    threshold given to `record_activations` with `above="threshold"`, e.g. the percentile
    pooled over all groups):
    - `"margin"` (default, pooled): `p[k] - max_{j != k} p[j]`; high when the neuron fires
      on group k and on no other group.
    - `"contrast"` (pooled): `p[k] - mean_{j != k} p[j]`.
    - `"faithful"`: Mondal et al. 2025, two passes over different data: pass 1 records
      `quantile=0.9`; pass 2 records `threshold=first.group_quantiles()` (each group against
      its own `P90_k`); the score is pass 2's share of group k's tokens with `h > P90_k`.
      It stays close to `1 - q` by construction (it ranks how a neuron's percentile differs
      between the two samples), so it is weakly specific; offered for reproduction.

    Each group keeps its `top_k` best neurons (default `round(rate * layers * neurons)`,
    573 for Llama-3.1-8B) whose score exceeds `min_score` (pooled scores only).
    """
    budget = top_k if top_k is not None else round(rate * stats.num_layers * stats.num_neurons)
    if budget < 1:
        raise ValueError(f"The per-group budget is {budget}; raise `rate` ({rate}) or pass `top_k`.")
    K = len(stats.groups)
    if score == "faithful":
        if above is not None:
            raise ValueError(
                "`score='faithful'` always scores the tokens above each group's own threshold; leave `above` unset."
            )
        if not stats.per_group_threshold:
            raise ValueError(
                "`score='faithful'` scores a second pass counted against each group's own percentile: record "
                "`first = record_activations(..., quantile=0.9)`, then "
                "`record_activations(other_corpora, threshold=first.group_quantiles())` and select on that."
            )
        scores = stats.threshold_probabilities()
        floor = -torch.inf
    elif score in ("margin", "contrast"):
        if K < 2:
            raise ValueError(f"`score={score!r}` compares groups; these statistics hold only {stats.groups}.")
        above = above or "zero"
        if above == "zero":
            p = stats.probabilities()
        elif above == "threshold":
            if stats.per_group_threshold:
                raise ValueError(
                    f"`score={score!r}` compares groups against one shared threshold, but these counts use a "
                    "threshold per group; record with `threshold=first.pooled_quantile()`, or use `score='faithful'`."
                )
            p = stats.threshold_probabilities()
        else:
            raise ValueError(f"Unknown `above={above!r}`; choose 'zero' or 'threshold'.")
        others = p.unsqueeze(-1).expand(*p.shape, K).clone()  # [..., group k, other j]
        eye = torch.eye(K, dtype=torch.bool)
        if score == "margin":
            rival = others.masked_fill(eye, -torch.inf).amax(-2)
        else:
            rival = others.masked_fill(eye, 0).sum(-2) / (K - 1)
        scores = p - rival
        floor = min_score
    else:
        raise ValueError(f"Unknown `score={score!r}`; choose 'margin', 'contrast' or 'faithful'.")

    flat = scores.reshape(-1, K)
    chosen = {}
    for k, g in enumerate(stats.groups):
        order = torch.sort(flat[:, k], descending=True, stable=True).indices[:budget]
        chosen[g] = order[flat[order, k] > floor]
    faithful = score == "faithful"
    parameters = {
        "score": score,
        "above": None if faithful else above,
        "top_k": budget,
        "min_score": None if faithful else min_score,
        "threshold": stats.metadata.get("threshold") if (faithful or above == "threshold") else None,
    }
    return selected_neurons(stats, chosen, "probability", parameters)


def _cumulative_keep(counts: torch.Tensor, k: float) -> torch.Tensor:
    """Indices of the smallest set of neurons whose counts reach `k` of the layer's total."""
    total = counts.sum()
    if total == 0:
        return torch.empty(0, dtype=torch.long)
    order = torch.sort(counts, descending=True, stable=True).indices
    cumulative = counts[order].cumsum(0)
    n = int(torch.searchsorted(cumulative.double(), k * total.double(), side="left")) + 1
    return torch.sort(order[: min(n, counts.numel())]).values


@selection_method(
    "specialized",
    "Neuron Specialization (Tan et al. 2024): per group and layer, the most active neurons up to a share k.",
    k="cumulative share of the layer's firing counts kept",
    encoder_k="share for encoder layers (default: k)",
)
def select_specialized(
    stats: ActivationStats,
    k: float | Mapping[str, float] = 0.95,
    *,
    encoder_k: float | Mapping[str, float] | None = None,
) -> NeuronSet:
    """Neuron Specialization (Tan et al. 2024): per group and layer, the most active neurons
    whose firing counts add up to a share `k` of the layer's total.

    `k` may be one value or a value per group (e.g. per direction family en->x / x->en);
    `encoder_k` sets a separate share for the encoder layers of encoder-decoder models.
    """

    def share(value: float | Mapping[str, float], group: str) -> float:
        v = value[group] if isinstance(value, Mapping) else value
        if not 0 < v <= 1:
            raise ValueError(f"Neuron Specialization's `k` must lie in (0, 1], got {v} for `{group}`.")
        return float(v)

    if isinstance(k, Mapping) or isinstance(encoder_k, Mapping):
        missing = [g for g in stats.groups for m in (k, encoder_k) if isinstance(m, Mapping) and g not in m]
        if missing:
            raise ValueError(f"No `k` given for group(s) {sorted(set(missing))}.")
    n_enc = stats.num_encoder_layers
    neurons = {}
    for j, g in enumerate(stats.groups):
        per_layer = []
        for layer in range(stats.num_layers):
            kk = share(encoder_k if (layer < n_enc and encoder_k is not None) else k, g)
            per_layer.append(_cumulative_keep(stats.counts[layer, :, j], kk))
        neurons[g] = per_layer
    parameters = {
        "k": dict(k) if isinstance(k, Mapping) else k,
        "encoder_k": dict(encoder_k) if isinstance(encoder_k, Mapping) else encoder_k,
    }
    return selected_neurons(stats, neurons, "specialized", parameters)


def random_neurons(neuron_set: NeuronSet, seed: int = 0, *, exclude_selected: bool = False) -> NeuronSet:
    """A control set: for each group and layer, as many neurons as `neuron_set`, drawn uniformly.

    With `exclude_selected`, the draw avoids every neuron of `neuron_set` (where enough remain).
    """
    generator = torch.Generator().manual_seed(seed)
    taken = neuron_set.union() if exclude_selected else None
    neurons = {}
    for g in neuron_set.groups:
        layers = []
        for layer, idx in enumerate(neuron_set[g]):
            pool = torch.arange(neuron_set.num_neurons)
            if taken is not None and neuron_set.num_neurons - taken[layer].numel() >= idx.numel():
                pool = pool[~torch.isin(pool, taken[layer])]
            layers.append(pool[torch.randperm(pool.numel(), generator=generator)[: idx.numel()]])
        neurons[g] = layers
    parameters = {"like": neuron_set.method, "seed": seed, "exclude_selected": exclude_selected}
    return NeuronSet(
        neurons,
        num_layers=neuron_set.num_layers,
        num_neurons=neuron_set.num_neurons,
        method="random",
        parameters=parameters,
        model=neuron_set.model,
    )


from . import selection_ap  # noqa: E402, F401  (registers `average_precision`, which imports this module)
