"""Interventions equal hand computations, compose, and always clean up; the NLL matrix is sound."""

import copy

import pytest
import torch
from conftest import make_tiny_model, padded_batches

import lsn
from lsn.models import find_neuron_sites

NEURONS = {0: [1, 5, 9], 1: [0, 63]}


def neuron_set(model, groups):
    return lsn.NeuronSet(groups, num_layers=2, num_neurons=64, method="test", model={"model_name": ""})


def capture(model, layer):
    """Record the input of `down_proj` (act * up) of one layer."""
    seen = {}
    mlp = find_neuron_sites(model)[layer].block
    handle = mlp.down_proj.register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0].detach().clone()))
    return seen, handle


def run(model, batch):
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize("family", ["llama", "mistral"])
def test_zero_equals_zeroed_gate_rows_and_model_is_restored(family):
    model = make_tiny_model(family)
    batch = padded_batches(1, seed=0)[0]
    before = run(model, batch)
    edited = copy.deepcopy(model)
    for layer, idx in NEURONS.items():
        edited.model.layers[layer].mlp.gate_proj.weight.data[idx] = 0  # silu(0) = 0: neuron off
    with lsn.intervene(model, NEURONS, "zero"):
        during = run(model, batch)
    torch.testing.assert_close(during, run(edited, batch), rtol=0, atol=1e-6)
    assert not torch.allclose(during, before)
    assert torch.equal(run(model, batch), before)
    assert all(not s.activation._forward_hooks for s in find_neuron_sites(model))


def _expected_act(model, batch, layer, transform):
    """act * up at `layer`, with `transform(act)` applied to the plain activation."""
    mlp = find_neuron_sites(model)[layer].block
    inputs = {}
    handle = mlp.register_forward_pre_hook(lambda m, a: inputs.__setitem__("x", a[0].detach().clone()))
    run(model, batch)
    handle.remove()
    x = inputs["x"]
    act = mlp.act_fn(mlp.gate_proj(x))
    return transform(act.clone()) * mlp.up_proj(x)


def test_every_mode_against_a_hand_computation():
    model = make_tiny_model("llama")
    batch = padded_batches(1, seed=1)[0]
    stats = lsn.record_activations(
        model, {"en": padded_batches(2, 2), "fr": padded_batches(2, 3)}, record_sums=True, quantile=0.5, progress=False
    )
    means, quant = stats.means(), stats.quantile_means
    idx = torch.tensor(NEURONS[1])
    others = means[..., 0]  # only one other group

    cases = [
        ("zero", {}, lambda a: a.index_fill(-1, idx, 0.0)),
        ("set", {"value": -1.5}, lambda a: a.index_fill(-1, idx, -1.5)),
        ("scale", {"value": 3.0}, lambda a: a.index_copy(-1, idx, a[..., idx] * 3)),
        ("add", {"value": 0.25}, lambda a: a.index_copy(-1, idx, a[..., idx] + 0.25)),
        (
            "set",
            {"value": lsn.neuron_values(stats, "fr")},
            lambda a: a.index_copy(-1, idx, torch.zeros_like(a[..., idx]) + means[1, idx, 1].float()),
        ),
        (
            "set",
            {"value": lsn.neuron_values(stats, "en", statistic="quantile")},
            lambda a: a.index_copy(-1, idx, torch.zeros_like(a[..., idx]) + quant[1, idx, 0].float()),
        ),
        (
            "add",
            {"value": lsn.neuron_values(stats, "fr", strength=2.0)},
            lambda a: a.index_copy(-1, idx, a[..., idx] + 2 * means[1, idx, 1].float()),
        ),
        (
            "add",
            {"value": lsn.neuron_values(stats, "fr", relative_to="others")},
            lambda a: a.index_copy(-1, idx, a[..., idx] + (means[1, idx, 1] - others[1, idx]).float()),
        ),
    ]
    for mode, kwargs, transform in cases:
        value = kwargs.pop("value", None)
        expected = _expected_act(model, batch, 1, transform)
        seen, handle = capture(model, 1)
        with lsn.intervene(model, {1: NEURONS[1]}, mode, value):
            run(model, batch)
        handle.remove()
        torch.testing.assert_close(seen["x"], expected, rtol=1e-5, atol=1e-6, msg=f"{mode} {kwargs}")


def test_nested_interventions_compose_and_unwind():
    model = make_tiny_model("llama")
    batch = padded_batches(1, seed=4)[0]
    base = run(model, batch)
    idx = torch.tensor(NEURONS[0])
    expected = _expected_act(model, batch, 0, lambda a: a.index_copy(-1, idx, a[..., idx] * 2 + 1))
    seen, handle = capture(model, 0)
    with lsn.intervene(model, {0: NEURONS[0]}, "scale", 2.0):
        with lsn.intervene(model, {0: NEURONS[0]}, "add", 1.0):
            run(model, batch)
        nested = seen["x"]
        inner_gone = run(model, batch)
    handle.remove()
    torch.testing.assert_close(nested, expected, rtol=1e-5, atol=1e-6)
    with lsn.intervene(model, {0: NEURONS[0]}, "scale", 2.0):
        torch.testing.assert_close(inner_gone, run(model, batch))
    assert torch.equal(run(model, batch), base)


def test_hooks_removed_after_an_exception_and_permanent_apply():
    model = make_tiny_model("llama")
    batch = padded_batches(1, seed=5)[0]
    base = run(model, batch)
    with pytest.raises(RuntimeError, match="inside"), lsn.intervene(model, NEURONS, "zero"):
        raise RuntimeError("inside")
    assert torch.equal(run(model, batch), base)
    handle = lsn.apply_intervention(model, NEURONS, "zero")
    with lsn.intervene(model, NEURONS, "zero"):
        zeroed = run(model, batch)
    assert torch.equal(run(model, batch), zeroed)  # still applied
    handle.remove()
    assert torch.equal(run(model, batch), base)


def test_neuron_specs_are_equivalent_and_checked():
    model = make_tiny_model("llama")
    batch = padded_batches(1, seed=6)[0]
    ns = neuron_set(model, {"fr": [[1, 5, 9], [0]], "de": [[], [63]]})
    with lsn.intervene(model, NEURONS, "zero"):
        a = run(model, batch)
    with lsn.intervene(model, ns, "zero"):
        b = run(model, batch)
    with lsn.intervene(model, ns["fr"], "zero"), lsn.intervene(model, ns, "zero", groups="de"):
        c = run(model, batch)
    assert torch.equal(a, b) and torch.equal(a, c)
    with pytest.raises(ValueError, match=r"indices \[64\] are outside \[0, 64\)"):
        lsn.intervene(model, {0: [64]}).__enter__()
    with pytest.raises(ValueError, match="Layer 5 does not exist"):
        lsn.intervene(model, {5: [1]}).__enter__()
    with pytest.raises(ValueError, match="2 x 64"):
        other = lsn.NeuronSet({"fr": [[1]] * 3}, num_layers=3, num_neurons=64)
        lsn.intervene(model, other).__enter__()
    with pytest.raises(ValueError, match="needs `value=`"):
        lsn.intervene(model, NEURONS, "scale").__enter__()
    with pytest.raises(ValueError, match="record_sums"):
        stats = lsn.record_activations(model, {"en": padded_batches(1, 0), "fr": padded_batches(1, 1)}, progress=False)
        lsn.intervene(model, NEURONS, "set", lsn.neuron_values(stats, "fr")).__enter__()
    with pytest.raises(ValueError, match=r"scalar or a `\(layers, neurons\)` table \(2, 64\)"):
        lsn.intervene(model, NEURONS, "add", torch.ones(3, 64)).__enter__()
    with pytest.raises(ValueError, match="Unknown `mode='value'`"):
        lsn.intervene(model, NEURONS, "value", 1.0).__enter__()
    assert all(not s.activation._forward_hooks for s in find_neuron_sites(model))


def test_works_on_peft_wrapped_and_plain_mlp_models():
    import peft

    for family in ("gpt2", "opt"):
        model = make_tiny_model(family)
        batch = padded_batches(1, seed=7)[0]
        base = run(model, batch)
        with lsn.intervene(model, NEURONS, "zero"):
            changed = run(model, batch)
        assert not torch.allclose(base, changed)
        assert torch.equal(run(model, batch), base)
    model = make_tiny_model("llama")
    batch = padded_batches(1, seed=8)[0]
    with lsn.intervene(model, NEURONS, "zero"):
        expected = run(model, batch)
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj"]))
    with lsn.intervene(wrapped, NEURONS, "zero"):
        torch.testing.assert_close(run(wrapped, batch), expected)  # LoRA B = 0: same function


def reference_nll(model, batches):
    total, count = 0.0, 0
    for b in batches:
        logits = run(model, b)
        for row in range(b["input_ids"].shape[0]):
            n = int(b["attention_mask"][row].sum())
            logp = torch.log_softmax(logits[row, : n - 1].double(), -1)
            total -= logp.gather(-1, b["input_ids"][row, 1:n, None]).sum().item()
            count += n - 1
    return total / count


def test_nll_matrix_shape_baseline_and_rows(tmp_path):
    model = make_tiny_model("llama")
    heldout = {"en": padded_batches(2, 10), "fr": padded_batches(2, 11), "zh": padded_batches(1, 12)}
    ns = neuron_set(model, {"en": [[1, 2, 3], [4]], "fr": [[10], [11, 12, 13, 14]]})
    matrix = lsn.nll_matrix(model, ns, heldout, random_control=0, progress=False)
    assert matrix.rows == ["en", "fr", "random:en", "random:fr"]
    assert matrix.columns == ["en", "fr", "zh"]
    assert matrix.nll.shape == (4, 3)
    assert matrix.neurons == {"en": 4, "fr": 5, "random:en": 4, "random:fr": 5}
    for j, column in enumerate(matrix.columns):
        assert matrix.baseline[j].item() == pytest.approx(reference_nll(model, heldout[column]), abs=1e-5)
        with lsn.intervene(model, ns, "zero", groups="fr"):
            assert matrix.nll[1, j].item() == pytest.approx(reference_nll(model, heldout[column]), abs=1e-5)
    torch.testing.assert_close(matrix.delta, matrix.nll - matrix.baseline)
    assert matrix.tokens == [
        sum(int(b["attention_mask"].sum()) - b["input_ids"].shape[0] for b in heldout[c]) for c in matrix.columns
    ]

    files = matrix.save(tmp_path)
    assert [f.name for f in files] == ["nll_matrix.json", "nll_matrix.csv", "nll_matrix.png"]
    assert len((tmp_path / "nll_matrix.csv").read_text().splitlines()) == 1 + 4 * 3
    again = lsn.NLLMatrix.load(tmp_path)
    torch.testing.assert_close(again.delta, matrix.delta)
    assert "| en (4) |" in matrix.to_markdown()


def test_generate_with_steering(multilingual_texts, tiny_tokenizer):
    model = make_tiny_model("llama", vocab_size=len(tiny_tokenizer))
    plain = lsn.generate(model, tiny_tokenizer, ["Anna", "David reads"], max_new_tokens=5)
    again = lsn.generate(model, tiny_tokenizer, ["Anna", "David reads"], max_new_tokens=5)
    everything = {0: list(range(64)), 1: list(range(64))}
    off = lsn.generate(model, tiny_tokenizer, ["Anna", "David reads"], everything, "scale", 50.0, max_new_tokens=5)
    assert plain == again and len(plain) == 2
    assert off != plain
    assert all(not s.activation._forward_hooks for s in find_neuron_sites(model))


def test_random_control_rows_differ_between_groups():
    model = make_tiny_model("llama")
    heldout = {"en": padded_batches(1, 20)}
    ns = neuron_set(model, {"a": [[1, 2, 3], [4]], "b": [[5, 6, 7], [8]]})  # same counts per layer
    matrix = lsn.nll_matrix(model, ns, heldout, random_control=0, progress=False)
    assert matrix.nll[2, 0] != matrix.nll[3, 0]
