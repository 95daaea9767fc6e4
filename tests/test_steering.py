"""Language Arithmetics (`steer`) and the residual-stream DiffMean baseline."""

import pytest
import torch
from conftest import make_tiny_model, padded_batches

import lsn
from lsn import NeuronSet, apply_intervention, neuron_values, record_activations
from lsn.diffmean import add_direction, decoder_layers, diffmean_directions, record_residual_means
from lsn.models import find_neuron_sites
from lsn.steering import steer

GROUPS = ("en", "de", "ru")


@pytest.fixture(scope="module")
def setup():
    model = make_tiny_model("llama")
    corpora = {g: padded_batches(2, seed=i) for i, g in enumerate(GROUPS)}
    stats = record_activations(model, corpora, record_sums=True, progress=False)
    neurons = NeuronSet(
        {"en": [[1, 2, 3], [5]], "de": [[3, 4], [6, 7, 8]], "ru": [[], []]}, num_layers=2, num_neurons=64
    )
    ids = padded_batches(1, seed=9)[0]
    return model, stats, neurons, ids


def _logits(model, ids):
    with torch.no_grad():
        return model(**ids).logits


@pytest.mark.parametrize("kwargs", [{}, {"relative_to": None, "strength": 2.0}, {"deactivate_source": False}])
def test_steer_equals_interventions_by_hand(setup, kwargs):
    model, stats, neurons, ids = setup
    with steer(model, neurons, source="en", target="de", stats=stats, **kwargs):
        steered = _logits(model, ids)
    relative_to, strength = kwargs.get("relative_to", "others"), kwargs.get("strength", 4.0)
    by_hand = []
    if kwargs.get("deactivate_source", True):
        by_hand.append(apply_intervention(model, neurons, "zero", groups="en"))
    by_hand.append(
        apply_intervention(
            model,
            neurons,
            "add",
            neuron_values(stats, "de", relative_to=relative_to, strength=strength),
            groups="de",
        )
    )
    expected = _logits(model, ids)
    for i in by_hand:
        i.remove()
    torch.testing.assert_close(steered, expected)

    # And from first principles: act[en] = 0, then act[de] += s * (mean_de - mean(others)).
    means = stats.means()
    k = stats.group_index("de")
    shift = means[..., k] - (means[..., [0, 2]].mean(-1) if relative_to == "others" else 0)

    def edit(site):
        def hook(module, args, act):
            act = act.clone()
            if kwargs.get("deactivate_source", True):
                act[..., neurons["en"][site.index]] = 0
            idx = neurons["de"][site.index]
            act[..., idx] += strength * shift[site.index, idx].to(act.dtype)
            return act

        return hook

    handles = [s.activation.register_forward_hook(edit(s)) for s in find_neuron_sites(model)]
    try:
        independent = _logits(model, ids)
    finally:
        for h in handles:
            h.remove()
    torch.testing.assert_close(steered, independent)
    assert not any(s.activation._forward_hooks for s in find_neuron_sites(model))


def test_steer_multiplicative_and_errors(setup):
    model, stats, neurons, ids = setup
    with steer(model, neurons, source="en", target="de", stats=None, strength=3.0, multiplicative=True):
        steered = _logits(model, ids)
    a = apply_intervention(model, neurons, "zero", groups="en")
    b = apply_intervention(model, neurons, "scale", 3.0, groups="de")
    expected = _logits(model, ids)
    a.remove(), b.remove()
    torch.testing.assert_close(steered, expected)
    with (
        pytest.raises(ValueError, match="`ru` has no neurons"),
        steer(model, neurons, source="en", target="ru", stats=stats),
    ):
        pass
    with pytest.raises(ValueError, match="No group `fr`"), steer(model, neurons, source="fr", target="de", stats=stats):
        pass
    with (
        pytest.raises(ValueError, match="record_sums"),
        steer(
            model,
            neurons,
            source="en",
            target="de",
            stats=record_activations(model, {"en": [ids], "de": [ids]}, progress=False),
        ),
    ):
        pass
    with pytest.raises(RuntimeError), steer(model, neurons, source="en", target="de", stats=stats):
        raise RuntimeError
    assert not any(s.activation._forward_hooks for s in find_neuron_sites(model))


def test_diffmean_directions_equal_independent_mean(tmp_path):
    model = make_tiny_model("llama", num_hidden_layers=3)
    corpora = {g: padded_batches(2, seed=i) for i, g in enumerate(GROUPS)}
    means = record_residual_means(model, corpora, progress=False)
    assert means.means.shape == (3, 3, 32)
    # Independently: hidden_states[l + 1] is layer l's output (for all but the last, which is normed).
    expected = torch.zeros(2, 3, 32, dtype=torch.float64)
    for k, g in enumerate(GROUPS):
        total, count = 0, 0
        for batch in corpora[g]:
            with torch.no_grad():
                hs = model(**batch, output_hidden_states=True).hidden_states
            m = batch["attention_mask"].bool()
            total = total + torch.stack([hs[layer + 1][m].double().sum(0) for layer in range(2)])
            count += int(m.sum())
        expected[:, k] = total / count
    assert means.tokens.tolist() == [sum(int(b["attention_mask"].sum()) for b in corpora[g]) for g in GROUPS]
    torch.testing.assert_close(means.means[:2], expected)
    directions = diffmean_directions(means, "de", layers=[0, 1])
    for layer in (0, 1):
        d = expected[layer, 1] - (expected[layer, 0] + expected[layer, 2]) / 2
        torch.testing.assert_close(directions[layer], (d / d.norm()).float())
    with pytest.raises(ValueError, match="Layer 5"):
        diffmean_directions(means, "de", layers=[5])
    # the same pass as the neuron statistics: equal means, and the counts of a recording without it
    from lsn.diffmean import ResidualMeans

    both = record_activations(model, corpora, record_sums=True, residual_means=True, progress=False)
    alone = record_activations(model, corpora, record_sums=True, progress=False)
    assert torch.equal(both.counts, alone.counts) and torch.equal(both.sums, alone.sums)
    torch.testing.assert_close(ResidualMeans.from_stats(both).means[:2], expected)
    with pytest.raises(ValueError, match="residual_means=True"):
        ResidualMeans.from_stats(alone)
    both.save(tmp_path / "stats.safetensors")
    again = lsn.ActivationStats.load(tmp_path / "stats.safetensors")
    assert torch.equal(again.residual_sums, both.residual_sums)
    torch.testing.assert_close(again.select_groups(["de"]).residual_sums[..., 0], both.residual_sums[..., 1])


def test_add_direction_shifts_layer_output():
    model = make_tiny_model("llama", num_hidden_layers=3)
    ids = padded_batches(1, seed=4)[0]
    d = torch.randn(32)
    seen = []  # what layer 1 receives: layer 0's output, as the model passes it on

    def grab(module, args, kwargs):
        seen.append((args[0] if args else kwargs["hidden_states"]).clone())

    handle = decoder_layers(model)[1].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            plain = model(**ids).logits
            with add_direction(model, {0: d}, alpha=2.5):
                steered = model(**ids).logits
    finally:
        handle.remove()
    torch.testing.assert_close(seen[1], seen[0] + 2.5 * d)
    assert (steered - plain).abs().max() > 1e-3
    assert not any(layer._forward_hooks for layer in decoder_layers(model))
    with pytest.raises(ValueError, match="No direction"), add_direction(model, {0: d}, alpha=1.0, layers=[1]):
        pass
