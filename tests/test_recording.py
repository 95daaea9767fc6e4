"""Recorded counts equal an independent computation; resume and multi-process runs are exact."""

import math

import pytest
import torch
from conftest import make_tiny_model, padded_batches

import lsn
from lsn.hooks import activation_hooks
from lsn.models import find_neuron_sites
from lsn.recording import _Accumulators, _Recorder


def reference_stats(model, corpora, quantile=None, threshold=None, quantile_method="linear"):
    """Counts, activation sums and per-batch quantile data from hooks on the INPUT matrices.

    A neuron fires when its pre-activation is > 0 (SiLU, GELU and ReLU keep the sign), padding
    excluded by boolean indexing; the full model runs (LM head, labels) as a user would call it.
    """
    sites = find_neuron_sites(model)
    L, I, K = len(sites), sites[0].num_neurons, len(corpora)
    counts = torch.zeros(L, I, K, dtype=torch.long)
    sums = torch.zeros(L, I, K, dtype=torch.float64)
    qsum = torch.zeros(L, I, K, dtype=torch.float64)
    above = torch.zeros(L, I, K, dtype=torch.long)
    above_threshold = torch.zeros(L, I, K, dtype=torch.long)
    tokens = torch.zeros(K, dtype=torch.long)
    captured = {}
    handles = [
        s.input_modules[0].register_forward_hook(
            lambda m, a, out, i=s.index: captured.__setitem__(i, out.detach()[..., :I])
        )
        for s in sites
    ]
    acts = {}
    handles += [
        s.activation.register_forward_hook(lambda m, a, out, i=s.index: acts.__setitem__(i, out.detach()))
        for s in sites
    ]
    try:
        for k, batches in enumerate(corpora.values()):
            for batch in batches:
                with torch.no_grad():
                    model(**batch)
                masks = {"decoder": batch["attention_mask"].bool()}
                if model.config.is_encoder_decoder:
                    masks = {"encoder": batch["attention_mask"].bool(), "decoder": batch["labels"] != -100}
                tokens[k] += int(masks["decoder"].sum())
                for s in sites:
                    mask = masks[s.side].reshape(-1)
                    pre = captured[s.index].reshape(-1, I)[mask]
                    act = acts[s.index].reshape(-1, I)[mask]
                    counts[s.index, :, k] += (pre > 0).sum(0)
                    sums[s.index, :, k] += act.double().sum(0)
                    if quantile is not None:
                        if quantile_method == "linear":
                            q = torch.quantile(pre, quantile, dim=0, interpolation="linear")
                        else:
                            ordered = pre.sort(0).values
                            q = ordered[max(1, math.ceil(quantile * len(pre))) - 1]
                        qsum[s.index, :, k] += q
                        above[s.index, :, k] += (pre > q).sum(0)
                    if threshold is not None:
                        above_threshold[s.index, :, k] += (pre > threshold[s.index]).sum(0)
    finally:
        for h in handles:
            h.remove()
    if threshold is not None:
        return counts, tokens, above_threshold
    return counts, tokens, sums, qsum, above


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2", "phi3", "gpt2", "opt", "bloom", "gpt_neox"])
def test_counts_equal_independent_computation_on_padded_batches(family):
    model = make_tiny_model(family)
    corpora = {"en": padded_batches(3, seed=1), "fr": padded_batches(2, seed=2), "zh": padded_batches(2, seed=3)}
    stats = lsn.record_activations(model, corpora, record_sums=True, quantile=0.9, progress=False)
    counts, tokens, sums, qsum, above = reference_stats(model, corpora, quantile=0.9)
    assert stats.groups == ["en", "fr", "zh"]
    assert torch.equal(stats.tokens, tokens)
    assert torch.equal(stats.counts, counts)
    torch.testing.assert_close(stats.sums, sums, rtol=1e-5, atol=1e-5)
    assert torch.equal(stats.above_quantile, above)
    batches = torch.tensor([3, 2, 2])
    torch.testing.assert_close(stats.quantile_means, qsum / batches.double(), rtol=1e-6, atol=1e-6)
    assert stats.metadata["architecture"] == type(model).__name__


@pytest.mark.parametrize("quantile", [0.9, 0.5, 0.37])
def test_nearest_rank_quantile_option(quantile):
    model = make_tiny_model("llama")
    corpora = {"en": padded_batches(3, seed=1), "fr": padded_batches(2, seed=2)}
    stats = lsn.record_activations(model, corpora, quantile=quantile, quantile_method="nearest", progress=False)
    *_, qsum, above = reference_stats(model, corpora, quantile=quantile, quantile_method="nearest")
    torch.testing.assert_close(stats.quantile_means, qsum / torch.tensor([3.0, 2.0]).double(), rtol=1e-6, atol=1e-6)
    assert torch.equal(stats.above_quantile, above)
    assert stats.metadata["quantile_method"] == "nearest"
    linear = lsn.record_activations(model, corpora, quantile=quantile, progress=False)
    assert linear.metadata["quantile_method"] == "linear"
    assert not torch.allclose(linear.quantile_means, stats.quantile_means)  # the two rules differ here


@pytest.mark.parametrize("family", ["llama", "gpt2", "m2m100"])
def test_pooled_percentile_two_pass_counts(family):
    """Pass 1 estimates each neuron's P90 over all groups; pass 2 counts tokens above it."""
    model = make_tiny_model(family)
    corpora = {"en": padded_batches(3, seed=1), "fr": padded_batches(2, seed=2), "zh": padded_batches(1, seed=3)}
    if model.config.is_encoder_decoder:
        for batches in corpora.values():
            for b in batches:
                b["labels"] = b["input_ids"][:, :5].masked_fill(b["attention_mask"][:, :5] == 0, -100)
    first = lsn.record_activations(model, corpora, quantile=0.9, progress=False)
    *_, qsum, _ = reference_stats(model, corpora, quantile=0.9)
    pooled = first.pooled_quantile()
    torch.testing.assert_close(pooled, (qsum.sum(-1) / 6).float(), rtol=1e-6, atol=1e-6)  # 6 batches in all

    second = lsn.record_activations(model, corpora, threshold=pooled, progress=False)
    counts, tokens, above = reference_stats(model, corpora, threshold=pooled)
    assert torch.equal(second.above_threshold, above)
    assert torch.equal(second.counts, counts)
    assert torch.equal(second.threshold, pooled)
    # Pooled over all groups, ~10% of all tokens exceed it, but the groups differ.
    share = above.sum(-1).double() / second.token_counts().sum(-1)[:, None].double()
    assert 0.05 < share.mean() < 0.15


def test_threshold_of_another_model_shape_raises():
    model = make_tiny_model("llama")
    with pytest.raises(ValueError, match="compute it from statistics of this model"):
        lsn.record_activations(model, {"en": padded_batches(1, seed=1)}, threshold=torch.zeros(3, 7), progress=False)
    with pytest.raises(ValueError, match="1 groups are recorded"):  # per-group: one threshold per recorded group
        lsn.record_activations(
            model, {"en": padded_batches(1, seed=1)}, threshold=torch.zeros(2, 64, 2), progress=False
        )


@pytest.mark.parametrize("family", ["m2m100", "marian"])
def test_encoder_decoder_counts_per_side(family):
    model = make_tiny_model(family)

    def with_labels(batches, seed):
        g = torch.Generator().manual_seed(seed)
        for b in batches:
            labels = torch.randint(3, 100, (b["input_ids"].shape[0], 5), generator=g)
            labels[1:, 3:] = -100  # padded targets
            b["labels"] = labels
        return batches

    corpora = {"en-de": with_labels(padded_batches(2, seed=4), 5), "de-en": with_labels(padded_batches(2, seed=6), 7)}
    stats = lsn.record_activations(model, corpora, progress=False)
    counts, tokens, *_ = reference_stats(model, corpora)
    assert torch.equal(stats.counts, counts)
    assert torch.equal(stats.tokens, tokens)
    assert torch.equal(
        stats.encoder_tokens, torch.tensor([sum(int(b["attention_mask"].sum()) for b in v) for v in corpora.values()])
    )
    assert stats.num_encoder_layers == 2
    p = stats.probabilities()
    assert torch.equal(p[:2], stats.counts[:2].double() / stats.encoder_tokens.double())
    assert torch.equal(p[2:], stats.counts[2:].double() / stats.tokens.double())


def test_recording_hooks_do_not_change_the_model_output():
    model = make_tiny_model("llama")
    batch = padded_batches(1, seed=0)[0]
    with torch.no_grad():
        expected = model(**batch).logits
    sites = find_neuron_sites(model)
    recorder = _Recorder(sites, _Accumulators.create(sites, 1, record_sums=True, quantile=0.5), quantile=0.5)
    from lsn.corpora import Batch

    recorder.set_batch(Batch(batch, {"decoder": batch["attention_mask"].bool()}))
    with activation_hooks(sites, recorder), torch.no_grad():
        during = model(**batch).logits
    assert torch.equal(during, expected)
    assert int(recorder.acc.counts[0].sum()) > 0
    lsn.record_activations(model, {"en": [batch]}, progress=False)
    assert all(not s.activation._forward_hooks for s in sites)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, expected)


def test_model_mode_is_restored():
    model = make_tiny_model("llama").train()
    lsn.record_activations(model, {"en": padded_batches(1, seed=0)}, progress=False)
    assert model.training


@pytest.mark.parametrize(
    "corpora, error, match",
    [
        ({}, ValueError, "empty"),
        ({"en": []}, ValueError, "Group `en` is empty"),
        ({"en": "one long string"}, TypeError, "single string"),
        ({"en": [3, 4]}, TypeError, "expected texts"),
        ({"en": ["some text"]}, ValueError, "pass `tokenizer=`"),
    ],
)
def test_bad_corpora_raise_clear_errors(corpora, error, match):
    with pytest.raises(error, match=match):
        lsn.record_activations(make_tiny_model("llama"), corpora, progress=False)


def test_empty_group_is_found_before_any_work():
    model = make_tiny_model("llama")
    calls = []
    model.model.layers[0].register_forward_pre_hook(lambda *a: calls.append(1))
    with pytest.raises(ValueError, match="`de` is empty"):
        lsn.record_activations(model, {"en": padded_batches(2, 0), "de": iter([])}, progress=False)
    assert calls == []
