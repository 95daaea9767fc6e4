"""Hooks that must fire: a block computing its activation without the activation module is an error,
never zero counts or a silent no-op; NaN / inf activations stop recording with the layer's name."""

import pytest
import torch
from conftest import make_tiny_model, padded_batches

import lsn
from lsn.hooks import HookNotFiredError
from lsn.models import find_neuron_sites
from lsn.recording import NonFiniteActivationError
from lsn.translation import TaskMasks


def fused_silu(layer: int, split: int | None = None):
    """A model whose layer `layer` computes SiLU with `F.silu` (all channels, or those from `split` on)."""
    model = make_tiny_model("llama")
    mlp = model.model.layers[layer].mlp

    def forward(x):
        gate = mlp.gate_proj(x)
        act = torch.nn.functional.silu(gate) if split is None else torch.cat(
            [mlp.act_fn(gate[..., :split]), torch.nn.functional.silu(gate[..., split:])], -1
        )  # fmt: skip
        return mlp.down_proj(act * mlp.up_proj(x))

    mlp.forward = forward
    return model


def no_hooks_left(model):
    return all(not s.activation._forward_hooks and not s.block._forward_hooks for s in find_neuron_sites(model))


def test_recording_a_fused_activation_names_the_module_and_the_fix():
    model = fused_silu(layer=1)
    with pytest.raises(HookNotFiredError, match=r"model\.layers\.1\.mlp\.act_fn.*register_mlp_family"):
        lsn.record_activations(model, {"en": padded_batches(1, seed=0)}, progress=False)
    assert no_hooks_left(model)


def test_an_activation_of_the_wrong_width_is_an_error():
    model = fused_silu(layer=0, split=32)
    with pytest.raises(HookNotFiredError, match=r"model\.layers\.0\.mlp\.act_fn` produced 32 channels.*expects 64"):
        lsn.record_activations(model, {"en": padded_batches(1, seed=0)}, progress=False)


def test_interventions_and_task_masks_on_a_fused_activation_raise():
    model = fused_silu(layer=0)
    batch = padded_batches(1, seed=0)[0]
    zeroed = lsn.intervene(model, {0: [1, 2]}, "zero")
    with pytest.raises(HookNotFiredError, match=r"model\.layers\.0\.mlp\.act_fn"), zeroed, torch.no_grad():
        model(**batch)
    assert no_hooks_left(model)
    with lsn.intervene(model, {1: [1, 2]}, "zero"), torch.no_grad():  # layer 1 is hooked normally: no error
        model(**batch)
    ns = lsn.NeuronSet({"en-de": [[1], [2]]}, num_layers=2, num_neurons=64, method="test", model={"model_name": ""})
    masks = TaskMasks(ns)
    error = pytest.raises(HookNotFiredError, match=r"model\.layers\.0\.mlp\.act_fn")
    with error, masks.attached(model), masks.task_scope("en-de"), torch.no_grad():
        model(**batch)
    assert no_hooks_left(model)


def test_a_plain_model_passes_the_check_and_records_as_before():
    model = make_tiny_model("llama")
    stats = lsn.record_activations(model, {"en": padded_batches(2, seed=1)}, progress=False)
    sites = find_neuron_sites(model)
    expected = torch.zeros(len(sites), 64, dtype=torch.int64)
    for batch in padded_batches(2, seed=1):
        seen = {}
        handles = [
            s.block.gate_proj.register_forward_hook(lambda m, a, o, i=s.index, d=seen: d.__setitem__(i, o))
            for s in sites
        ]
        with torch.no_grad():
            model(**batch)
        for h in handles:
            h.remove()
        real = batch["attention_mask"].bool()
        for i, gate in seen.items():
            expected[i] += (gate[real] > 0).sum(0)
    assert torch.equal(stats.counts[..., 0], expected)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_activations_stop_recording_naming_the_layer(bad):
    model = make_tiny_model("llama")

    def poison(module, args, output):
        output = output.clone()
        output[0, 2, 5] = bad  # one real token of the first (unpadded) row
        return output

    model.model.layers[1].mlp.gate_proj.register_forward_hook(poison)
    with pytest.raises(NonFiniteActivationError, match=r"model\.layers\.1\.mlp\.act_fn.*layer 1"):
        lsn.record_activations(model, {"en": padded_batches(2, seed=0)}, progress=False, quantile=0.5)
