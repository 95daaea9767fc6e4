"""The registry finds the FFN neurons of every supported family, and only there."""

import pytest
import torch
from conftest import TINY_CONFIGS, make_tiny_model
from torch import nn

import lsn
from lsn.hooks import activation_hooks
from lsn.models import MLPFamily, find_neuron_sites, model_shape

EXPECTED = {  # family -> (family entry, sites, neurons, encoder layers)
    "llama": ("gated", 2, 64, 0),
    "mistral": ("gated", 2, 64, 0),
    "qwen2": ("gated", 2, 64, 0),
    "gemma": ("gated", 2, 64, 0),
    "gemma2": ("gated", 2, 64, 0),
    "phi3": ("phi3", 2, 64, 0),
    "gpt2": ("gpt2", 2, 64, 0),
    "opt": ("fc", 2, 64, 0),
    "bloom": ("bloom", 2, 64, 0),
    "gpt_neox": ("gpt_neox", 2, 64, 0),
    "m2m100": ("fc", 4, 64, 2),
    "marian": ("fc", 4, 64, 2),
}


def _pre_activation_modules(site):
    """The module whose output is the pre-activation (independent of the activation hook)."""
    return site.input_modules[0]


@pytest.mark.parametrize("family", sorted(TINY_CONFIGS))
def test_sites_of_every_family(family):
    model = make_tiny_model(family)
    entry, n_sites, n_neurons, n_encoder = EXPECTED[family]
    sites = find_neuron_sites(model)
    assert [s.index for s in sites] == list(range(n_sites))
    assert {s.family.name for s in sites} == {entry}
    assert all(s.num_neurons == n_neurons for s in sites)
    assert [s.side for s in sites] == ["encoder"] * n_encoder + ["decoder"] * (n_sites - n_encoder)
    assert model_shape(model)["num_layers"] == n_sites
    assert model_shape(model)["num_encoder_layers"] == n_encoder


@pytest.mark.parametrize("family", sorted(TINY_CONFIGS))
def test_activation_hook_sees_every_layer_once_and_fires_iff_pre_activation_positive(family):
    """Hooked activation > 0 exactly where the input matrix's output (pre-activation) > 0."""
    model = make_tiny_model(family)
    sites = find_neuron_sites(model)
    seen, pre_seen = {}, {}

    def observe(site, pre, act):
        seen.setdefault(site.index, []).append(act.detach().reshape(-1, act.shape[-1]))

    handles = []
    for site in sites:

        def hook(module, args, out, _site=site):
            out = out.reshape(-1, out.shape[-1])[:, : _site.num_neurons]  # Phi-3: the gate half
            pre_seen.setdefault(_site.index, []).append(out.detach())

        handles.append(_pre_activation_modules(site).register_forward_hook(hook))
    ids = torch.randint(3, 100, (2, 7), generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": ids}
    if model.config.is_encoder_decoder:
        inputs["labels"] = ids
    try:
        with activation_hooks(sites, observe), torch.no_grad():
            model(**inputs)
    finally:
        for h in handles:
            h.remove()
    assert sorted(seen) == [s.index for s in sites]
    for i in seen:
        assert len(seen[i]) == 1
        assert torch.equal(seen[i][0] > 0, pre_seen[i][0] > 0)


def test_unsupported_architecture_error_names_model_families_and_fix():
    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4))

    with pytest.raises(lsn.UnsupportedModelError) as err:
        find_neuron_sites(Toy())
    message = str(err.value)
    assert "Toy" in message and "Llama" in message and "GPT-2" in message
    assert "register_mlp_family" in message


def test_register_a_new_family():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.w_in, self.nonlin, self.w_out = nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 4)

        def forward(self, x):
            return self.w_out(self.nonlin(self.w_in(x)))

    model = nn.Sequential(Block(), Block(), Block())
    family = MLPFamily("toy", activation="nonlin", inputs=("w_in",), output="w_out", description="Toy blocks")
    lsn.register_mlp_family(family)
    try:
        sites = find_neuron_sites(model)
        assert [(s.path, s.num_neurons) for s in sites] == [("0", 6), ("1", 6), ("2", 6)]
        with pytest.raises(ValueError, match="already registered"):
            lsn.register_mlp_family(family)
    finally:
        from lsn import models

        models._FAMILIES.remove(family)


def test_shared_activation_module_is_refused():
    act = nn.ReLU()

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.activation_fn, self.fc2 = nn.Linear(4, 6), act, nn.Linear(6, 4)

    with pytest.raises(lsn.UnsupportedModelError, match="shares one activation module"):
        find_neuron_sites(nn.Sequential(Block(), Block()))


def test_hooks_are_removed_after_an_exception():
    model = make_tiny_model("llama")
    sites = find_neuron_sites(model)
    with pytest.raises(RuntimeError, match="boom"), activation_hooks(sites, lambda *a: None):
        raise RuntimeError("boom")
    assert all(not s.activation._forward_hooks for s in sites)


def test_peft_wrapped_model_has_the_same_sites():
    import peft

    model = make_tiny_model("llama")
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj"]))
    assert [s.path for s in find_neuron_sites(wrapped)] == [s.path for s in find_neuron_sites(model)]
