"""Selection methods against plain reimplementations of DESIGN.md §3 on planted statistics."""

import math

import numpy as np
import pytest
import torch

from lsn import ActivationStats, NeuronSet, random_neurons, select_by_probability, select_lape, select_specialized


def make_stats(counts, tokens, groups=None, **kwargs):
    counts = torch.as_tensor(np.asarray(counts), dtype=torch.long)
    groups = groups or [f"g{k}" for k in range(counts.shape[-1])]
    return ActivationStats(
        counts=counts, tokens=torch.as_tensor(np.asarray(tokens), dtype=torch.long), groups=groups, **kwargs
    )


def planted_counts(layers, neurons, K, seed, zero_share=0.0, specific=0, specific_rate=0.9):
    """Random counts; a share of all-zero neurons; `specific` neurons per group firing in that group only.

    Returns counts, tokens and {group index: [flat indices of its planted neurons]}.
    """
    rng = np.random.default_rng(seed)
    tokens = rng.integers(500, 2000, K)
    counts = np.floor(rng.random((layers, neurons, K)) ** 2 * 0.6 * tokens).astype(np.int64)
    counts = np.maximum(counts, 1)  # noise neurons fire somewhere in every group
    flat = counts.reshape(-1, K)
    free = rng.permutation(layers * neurons)
    n_zero = int(zero_share * layers * neurons)
    flat[free[:n_zero]] = 0
    planted = {}
    for k in range(K):
        idx = free[n_zero + k * specific : n_zero + (k + 1) * specific]
        flat[idx] = 0
        flat[idx, k] = int(specific_rate * tokens[k])
        planted[k] = sorted(idx.tolist())
    return flat.reshape(layers, neurons, K), tokens, planted


def as_lists(ns):
    return {g: [t.tolist() for t in ns[g]] for g in ns.groups}


def per_layer(flat_indices, layers, neurons):
    out = [[] for _ in range(layers)]
    for f in sorted(flat_indices):
        out[f // neurons].append(f % neurons)
    return out


# ---------------------------------------------------------------- LAPE reference


def kth_smallest(values, rate):
    ordered = np.sort(values.ravel())
    return ordered[round(ordered.size * rate) - 1]  # 1-based rank


def lape_reference(counts, tokens, top_rate=0.01, filter_rate=0.95, activation_bar_ratio=0.95):
    counts = np.asarray(counts, dtype=np.float64)
    L, I, K = counts.shape
    p = counts / np.asarray(tokens, dtype=np.float64)
    entropy = np.zeros((L, I))
    for l in range(L):
        for j in range(I):
            total = p[l, j].sum()
            h = 0.0
            for k in range(K):
                q = p[l, j, k] / total if total > 0 else 0.0  # 0/0 -> 0
                if q > 0:  # 0 ln 0 = 0
                    h -= q * math.log(q)
            entropy[l, j] = h
    filter_bar = kth_smallest(p, filter_rate)
    entropy[~(p > filter_bar).any(-1)] = np.inf
    keep = round(L * I * top_rate)
    order = np.argsort(entropy.ravel(), kind="stable")[:keep]
    activation_bar = kth_smallest(p, activation_bar_ratio)
    flat_p = p.reshape(-1, K)
    chosen = {f"g{k}": per_layer([f for f in order if flat_p[f, k] > activation_bar], L, I) for k in range(K)}
    return chosen, filter_bar, activation_bar


LAPE_SETTINGS = [
    (0.01, 0.95, 0.95),
    (0.05, 0.9, 0.8),
    (0.02, 0.5, 0.99),
    (0.1, 0.99, 0.9),
    (0.3, 0.99, 0.5),  # activation bar below the filter bar: +inf neurons may be kept and assigned
    (0.004, 1.0, 1.0),  # nothing passes the filter; nothing is assigned
]


@pytest.mark.parametrize(
    "shape, seed, zero_share", [((4, 500, 5), 0, 0.0), ((3, 64, 2), 1, 0.2), ((2, 100, 7), 2, 0.5)]
)
@pytest.mark.parametrize("rates", LAPE_SETTINGS)
def test_lape_matches_reference(shape, seed, zero_share, rates):
    counts, tokens, _ = planted_counts(*shape, seed=seed, zero_share=zero_share)
    stats = make_stats(counts, tokens)
    ns = select_lape(stats, *rates)
    expected, filter_bar, activation_bar = lape_reference(counts, tokens, *rates)
    assert as_lists(ns) == expected
    assert ns.parameters["filter_bar"] == filter_bar
    assert ns.parameters["activation_bar"] == activation_bar
    assert ns.method == "lape"
    assert (ns.parameters["top_rate"], ns.parameters["filter_rate"], ns.parameters["activation_bar_ratio"]) == rates


def test_lape_check_figure_default_ratios():
    """With the default ratios the union holds exactly round(layers * neurons * 0.01) neurons."""
    counts, tokens, _ = planted_counts(4, 500, 5, seed=3, zero_share=0.1)
    ns = select_lape(make_stats(counts, tokens))
    union = sum(t.numel() for t in ns.union())
    assert union == round(4 * 500 * 0.01) == 20
    expected, _, _ = lape_reference(counts, tokens)
    assert as_lists(ns) == expected


def test_lape_finds_planted_language_neurons():
    L, I, K, n = 4, 500, 5, 3
    counts, tokens, planted = planted_counts(L, I, K, seed=4, zero_share=0.3, specific=n)
    stats = make_stats(counts, tokens, groups=["en", "fr", "de", "zh", "ja"], metadata={"model_name": "org/m"})
    ns = select_lape(stats)  # keeps 20 >= 5 * 3 planted neurons, which have entropy 0
    for k, g in enumerate(stats.groups):
        mine = {(l, j) for l, idx in enumerate(ns[g]) for j in idx.tolist()}
        wanted = {(f // I, f % I) for f in planted[k]}
        assert wanted <= mine, g
        # a planted neuron of another group never lands here (it never fires on g)
        others = {(f // I, f % I) for kk in planted if kk != k for f in planted[kk]}
        assert not (mine & others), g
    assert ns.model == {"model_name": "org/m"}
    assert ns.parameters["tokens"] == dict(zip(stats.groups, tokens.tolist(), strict=True))


def test_lape_ties_break_by_lower_flat_index():
    """Twelve neurons with entropy exactly 0 (firing in one group only); keep 5 -> the 5 lowest flat indices."""
    L, I, K = 2, 250, 2  # keep = round(500 * 0.01) = 5
    rng = np.random.default_rng(5)
    counts = np.stack([rng.integers(100, 120, (L, I)), rng.integers(100, 120, (L, I))], -1)
    zero_h = [7, 13, 260, 31, 499, 250, 3, 100, 101, 402, 249, 64]
    flat = counts.reshape(-1, K)
    for i, f in enumerate(zero_h):
        flat[f] = [900, 0] if i % 2 == 0 else [0, 900]
    ns = select_lape(make_stats(counts, [1000, 1000]))
    kept = sorted(zero_h)[:5]  # [3, 7, 13, 31, 64]
    got = {f for g in ns.groups for l, idx in enumerate(ns[g]) for f in (l * I + idx).tolist()}
    assert got == set(kept)
    assert [t.tolist() for t in ns["g0"]] == per_layer(
        [f for i, f in enumerate(zero_h) if i % 2 == 0 and f in kept], L, I
    )
    assert [t.tolist() for t in ns["g1"]] == per_layer(
        [f for i, f in enumerate(zero_h) if i % 2 == 1 and f in kept], L, I
    )
    expected, _, _ = lape_reference(counts, [1000, 1000])
    assert as_lists(ns) == expected


def test_lape_all_zero_neurons_never_selected():
    """All-zero neurons have 0/0 -> q = 0, entropy 0, but never pass the filter."""
    counts, tokens, _ = planted_counts(3, 200, 4, seed=6, zero_share=0.6)
    stats = make_stats(counts, tokens)
    ns = select_lape(stats, top_rate=0.05)
    zero = counts.sum(-1) == 0
    for g in ns.groups:
        for l, idx in enumerate(ns[g]):
            assert not zero[l, idx.numpy()].any()
    assert sum(t.numel() for t in ns.union()) == round(600 * 0.05)
    from lsn.selection import lape_entropy

    h = lape_entropy(stats).numpy()
    assert np.all(h[zero] == 0) and np.all(np.isfinite(h))


def test_lape_neuron_in_several_groups():
    # neuron 0 fires often on g0 and g1, rarely on g2: low entropy, above the bar on two groups
    counts = np.full((1, 100, 3), 10)
    counts[0, 0] = [900, 900, 1]
    counts[0, 1] = [0, 0, 950]
    ns = select_lape(make_stats(counts, [1000, 1000, 1000]), top_rate=0.02)
    assert as_lists(ns) == {"g0": [[0]], "g1": [[0]], "g2": [[1]]}


def test_lape_single_group_raises():
    with pytest.raises(ValueError, match="at least two"):
        select_lape(make_stats(np.ones((2, 10, 1)), [5]))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(top_rate=0),
        dict(top_rate=1.5),
        dict(filter_rate=-0.1),
        dict(activation_bar_ratio=0),
        dict(activation_bar_ratio=2),
    ],
)
def test_lape_invalid_ratios_raise(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        select_lape(make_stats(np.ones((2, 10, 2)), [5, 5]), **kwargs)


# ---------------------------------------------------------------- activation probability


def probability_reference(counts, tokens, score, top_k, min_score=0.0, above=None):
    counts = np.asarray(counts, dtype=np.float64)
    L, I, K = counts.shape
    num = counts if score != "faithful" else np.asarray(above, dtype=np.float64)
    p = (num / np.asarray(tokens, dtype=np.float64)).reshape(-1, K)
    out = {}
    for k in range(K):
        others = [j for j in range(K) if j != k]
        if score == "margin":
            s = p[:, k] - p[:, others].max(1)
        elif score == "contrast":
            s = p[:, k] - p[:, others].sum(1) / (K - 1)
        else:
            s = p[:, k]
        order = np.argsort(-s, kind="stable")[:top_k]
        floor = -np.inf if score == "faithful" else min_score
        out[f"g{k}"] = per_layer([f for f in order if s[f] > floor], L, I)
    return out


@pytest.mark.parametrize("score", ["margin", "contrast"])
@pytest.mark.parametrize(
    "shape, seed, top_k, min_score",
    [
        ((4, 500, 5), 0, 10, 0.0),
        ((3, 64, 2), 1, 20, 0.0),
        ((2, 100, 7), 2, 15, 0.05),
        ((2, 100, 3), 3, 200, 0.0),  # budget = every neuron: min_score decides
        ((2, 100, 3), 4, 50, 0.2),
    ],
)
def test_probability_pooled_scores_match_reference(score, shape, seed, top_k, min_score):
    counts, tokens, _ = planted_counts(*shape, seed=seed, zero_share=0.1, specific=2)
    ns = select_by_probability(make_stats(counts, tokens), score=score, top_k=top_k, min_score=min_score)
    assert as_lists(ns) == probability_reference(counts, tokens, score, top_k, min_score)
    assert ns.parameters["score"] == score and ns.parameters["top_k"] == top_k


def test_probability_margin_hand_numbers_and_ties():
    # 64 tokens each, so every p and margin is exact: g0 margins 32, 32, 32, 20, -12, 0 (/64)
    counts = np.array([[[40, 8], [48, 16], [36, 4], [30, 10], [8, 20], [16, 16]]])
    ns = select_by_probability(make_stats(counts, [64, 64]), score="margin", top_k=2)
    assert as_lists(ns) == {"g0": [[0, 1]], "g1": [[4]]}  # tie of three at 0.5: lowest indices; g1 keeps only > 0
    ns = select_by_probability(make_stats(counts, [64, 64]), score="margin", top_k=4, min_score=0.4)
    assert as_lists(ns) == {"g0": [[0, 1, 2]], "g1": [[]]}


def test_probability_contrast_hand_numbers():
    # tokens 100: p = [.9, .1, .5], [.2, .6, .6], [.3, .3, .3]
    counts = np.array([[[90, 10, 50], [20, 60, 60], [30, 30, 30]]])
    ns = select_by_probability(make_stats(counts, [100, 100, 100]), score="contrast", top_k=1)
    # g0: .9 - .3 = .6, .2 - .6, 0 -> [0]; g1: .1 - .7, .6 - .4 = .2 -> [1]; g2: .5 - .5 = 0, .6 - .4 = .2 -> [1]
    assert as_lists(ns) == {"g0": [[0]], "g1": [[1]], "g2": [[1]]}


def test_probability_default_budget():
    counts, tokens, _ = planted_counts(4, 1200, 3, seed=7)
    ns = select_by_probability(make_stats(counts, tokens))
    budget = round(0.00125 * 4 * 1200)
    assert budget == 6 and ns.parameters["top_k"] == 6
    assert ns.counts_per_layer().sum(1).tolist() == [6, 6, 6]
    assert as_lists(ns) == probability_reference(counts, tokens, "margin", 6)


def test_probability_faithful_scores_the_per_group_threshold_counts():
    counts, tokens, _ = planted_counts(3, 80, 4, seed=8)
    rng = np.random.default_rng(9)
    above = np.floor(rng.random(counts.shape) * 0.2 * tokens).astype(np.int64)
    stats = make_stats(
        counts,
        tokens,
        threshold=torch.randn(3, 80, 4),  # each group its own (pass 2 of Mondal et al.)
        above_threshold=torch.as_tensor(above),
        metadata={"threshold": {"group_quantile": 0.9}},
    )
    ns = select_by_probability(stats, score="faithful", top_k=7)
    assert as_lists(ns) == probability_reference(counts, tokens, "faithful", 7, above=above)
    assert ns.counts_per_layer().sum(1).tolist() == [7] * 4
    assert ns.parameters["threshold"] == {"group_quantile": 0.9}
    one_pass = make_stats(counts, tokens, quantile=0.9, above_quantile=torch.as_tensor(above))
    with pytest.raises(ValueError, match="second pass"):  # counting against the same batch's quantile is not it
        select_by_probability(one_pass, score="faithful", top_k=7)


@pytest.mark.parametrize("score", ["margin", "contrast"])
def test_probability_above_threshold_scores_the_threshold_counts(score):
    counts, tokens, _ = planted_counts(3, 80, 4, seed=10, specific=2)
    above, _, _ = planted_counts(3, 80, 4, seed=11, specific=3)
    above = np.minimum(above, tokens)  # tokens are drawn from the same seed-free range: keep p <= 1
    threshold = torch.randn(3, 80)
    stats = make_stats(
        counts,
        tokens,
        threshold=threshold,
        above_threshold=torch.as_tensor(above),
        metadata={"threshold": {"pooled_quantile": 0.9}},
    )
    ns = select_by_probability(stats, score=score, above="threshold", top_k=9)
    assert as_lists(ns) == probability_reference(above, tokens, score, 9)
    assert as_lists(ns) != probability_reference(counts, tokens, score, 9)  # not the firing counts
    assert ns.parameters["above"] == "threshold" and ns.parameters["threshold"] == {"pooled_quantile": 0.9}


def test_probability_above_threshold_needs_threshold_counts():
    stats = make_stats(np.ones((2, 10, 2)), [5, 5])
    with pytest.raises(ValueError, match="threshold="):
        select_by_probability(stats, above="threshold", top_k=1)
    with pytest.raises(ValueError, match="above"):
        select_by_probability(stats, above="median", top_k=1)


def test_probability_faithful_without_quantiles_raises():
    with pytest.raises(ValueError, match="quantile"):
        select_by_probability(make_stats(np.ones((2, 10, 2)), [5, 5]), score="faithful", top_k=1)


def test_probability_bad_arguments_raise():
    stats = make_stats(np.ones((2, 10, 2)), [5, 5])
    with pytest.raises(ValueError, match="Unknown"):
        select_by_probability(stats, score="entropy", top_k=1)
    with pytest.raises(ValueError, match="budget"):
        select_by_probability(stats)  # round(0.00125 * 20) = 0
    with pytest.raises(ValueError, match="compares groups"):
        select_by_probability(make_stats(np.ones((2, 10, 1)), [5]), top_k=1)


# ---------------------------------------------------------------- neuron specialization


def specialized_reference(counts, k_of_layer):
    """counts: (L, I) of one group; k_of_layer(l) -> share."""
    out = []
    for l, row in enumerate(np.asarray(counts).tolist()):
        total = sum(row)
        if total == 0:
            out.append([])
            continue
        order = sorted(range(len(row)), key=lambda j: -row[j])  # stable: ties keep lower index first
        kept, cumulative = [], 0
        for j in order:
            kept.append(j)
            cumulative += row[j]
            if cumulative >= k_of_layer(l) * total:
                break
        out.append(sorted(kept))
    return out


@pytest.mark.parametrize("k", [0.95, 0.7, 0.5, 1.0, 0.01])
@pytest.mark.parametrize("seed", [0, 1])
def test_specialized_matches_reference(k, seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 6, (3, 40, 2)) ** 2  # many ties and zeros
    counts[1, :, 0] = 0  # a layer that never fires keeps nothing
    ns = select_specialized(make_stats(counts, [100, 100]), k)
    for kk, g in enumerate(ns.groups):
        assert [t.tolist() for t in ns[g]] == specialized_reference(counts[..., kk], lambda l: k), g
    assert ns["g0"][1].numel() == 0
    assert ns.method == "specialized" and ns.parameters == {"k": k, "encoder_k": None}


def test_specialized_hand_numbers():
    # counts 50, 30, 10, 10 (total 100): k=.8 -> {0, 1}; k=.85 -> {0, 1, 2} (tie: lower index); k=1 -> all four
    counts = np.array([[[10], [50], [10], [30]]])
    for k, expected in ((0.8, [1, 3]), (0.85, [0, 1, 3]), (1.0, [0, 1, 2, 3]), (0.5, [1])):
        assert select_specialized(make_stats(counts, [60]), k)["g0"][0].tolist() == expected


def test_specialized_per_group_k_and_encoder_k():
    rng = np.random.default_rng(3)
    L, n_enc = 5, 2
    counts = rng.integers(0, 50, (L, 30, 3))
    stats = make_stats(
        counts,
        [100, 100, 100],
        groups=["en-de", "de-en", "en-fr"],
        encoder_tokens=torch.tensor([90, 90, 90]),
        metadata={"num_encoder_layers": n_enc},
    )
    k = {"en-de": 0.9, "de-en": 0.6, "en-fr": 0.75}
    enc = {"en-de": 0.5, "de-en": 0.95, "en-fr": 0.3}
    ns = select_specialized(stats, k, encoder_k=enc)
    for j, g in enumerate(stats.groups):
        expected = specialized_reference(counts[..., j], lambda layer, g=g: enc[g] if layer < n_enc else k[g])
        assert [t.tolist() for t in ns[g]] == expected, g
    # a single encoder_k with per-group k
    ns = select_specialized(stats, k, encoder_k=0.4)
    for j, g in enumerate(stats.groups):
        expected = specialized_reference(counts[..., j], lambda layer, g=g: 0.4 if layer < n_enc else k[g])
        assert [t.tolist() for t in ns[g]] == expected, g
    # without encoder_k every layer uses k
    ns = select_specialized(stats, 0.8)
    assert [t.tolist() for t in ns["de-en"]] == specialized_reference(counts[..., 1], lambda l: 0.8)
    assert ns.parameters == {"k": 0.8, "encoder_k": None}


def test_specialized_encoder_k_ignored_for_decoder_only():
    counts = np.random.default_rng(4).integers(0, 50, (3, 30, 2))
    stats = make_stats(counts, [100, 100])
    assert select_specialized(stats, 0.8, encoder_k=0.3) == select_specialized(stats, 0.8)


@pytest.mark.parametrize(
    "kwargs", [dict(k=0), dict(k=1.5), dict(k=-0.2), dict(k={"g0": 0.9, "g1": 0.0}), dict(k=0.9, encoder_k=1.2)]
)
def test_specialized_k_out_of_range_raises(kwargs):
    stats = make_stats(
        np.ones((2, 10, 2)), [5, 5], encoder_tokens=torch.tensor([5, 5]), metadata={"num_encoder_layers": 1}
    )
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        select_specialized(stats, **kwargs)


@pytest.mark.parametrize("kwargs", [dict(k={"g0": 0.9}), dict(k=0.9, encoder_k={"g1": 0.5})])
def test_specialized_missing_group_raises(kwargs):
    stats = make_stats(
        np.ones((2, 10, 2)), [5, 5], encoder_tokens=torch.tensor([5, 5]), metadata={"num_encoder_layers": 1}
    )
    with pytest.raises(ValueError, match="g1|g0"):
        select_specialized(stats, **kwargs)


# ---------------------------------------------------------------- random control


def some_set():
    rng = np.random.default_rng(11)
    neurons = {
        g: [sorted(rng.choice(100, size=n, replace=False).tolist()) for n in sizes]
        for g, sizes in (("en", [10, 0, 25]), ("fr", [5, 40, 1]), ("zh", [30, 30, 30]))
    }
    return NeuronSet(neurons, num_layers=3, num_neurons=100, method="lape", model={"model_name": "org/m"})


@pytest.mark.parametrize("exclude", [False, True])
def test_random_neurons_same_counts_and_seeded(exclude):
    ns = some_set()
    a = random_neurons(ns, seed=1, exclude_selected=exclude)
    assert a.groups == ns.groups
    assert torch.equal(a.counts_per_layer(), ns.counts_per_layer())
    for g in a.groups:
        for idx in a[g]:
            assert idx.numel() == 0 or (idx.min() >= 0 and idx.max() < 100)
    assert a == random_neurons(ns, seed=1, exclude_selected=exclude)
    assert a != random_neurons(ns, seed=2, exclude_selected=exclude)
    assert a.method == "random" and a.parameters == {"like": "lape", "seed": 1, "exclude_selected": exclude}
    assert a.model == ns.model


def test_random_neurons_exclude_selected_avoids_selected():
    ns = some_set()
    union = [set(t.tolist()) for t in ns.union()]
    for seed in range(5):
        r = random_neurons(ns, seed=seed, exclude_selected=True)
        for g in r.groups:
            for layer, idx in enumerate(r[g]):
                assert not (set(idx.tolist()) & union[layer]), (seed, g, layer)


def test_random_neurons_exclude_falls_back_when_too_few_remain():
    ns = NeuronSet({"a": [list(range(8))], "b": [[8]]}, num_layers=1, num_neurons=10)
    r = random_neurons(ns, seed=0, exclude_selected=True)
    assert r["a"][0].numel() == 8  # only 1 neuron outside the union: draws from all 10
    assert r["b"][0].tolist() == [9]
