"""The neuron adapter equals a dense LoRA/delta with zero rows (columns) outside the neurons, through every PEFT
route: forward and gradients, merging, saving and loading, LoRA export, several adapters, quantized bases."""

import copy
import json
import warnings
from pathlib import Path

import peft
import pytest
import torch
import torch.nn.functional as F
import transformers
from conftest import make_tiny_model
from huggingface_hub import HfApi
from safetensors.torch import load_file
from torch import nn

import lsn
import lsn.adapter
from lsn.adapter import NeuronConfig, NeuronLayer, to_lora

NEURONS = {0: [1, 5, 9, 40], 1: [0, 63]}
SEQ2SEQ_NEURONS = {0: [2, 7], 3: [1, 30, 31]}  # encoder layer 0 and decoder layer 1 (flat index 3)

# (description, tiny model family, config kwargs)
CASES = [
    ("llama, LoRA on gate/up/down", "llama", dict(r=4, lora_alpha=8)),
    ("llama, LoRA on gate only", "llama", dict(r=4, lora_alpha=8, target_modules=["gate_proj"])),
    ("llama, full on gate/up/down", "llama", dict(mode="full")),
    ("mistral, LoRA on down only", "mistral", dict(r=3, lora_alpha=6, target_modules=["down_proj"])),
    ("mistral, full on gate and down", "mistral", dict(mode="full", target_modules=["gate_proj", "down_proj"])),
    ("gpt2 Conv1D, LoRA", "gpt2", dict(r=4, lora_alpha=4)),
    ("gpt2 Conv1D, full", "gpt2", dict(mode="full")),
    ("opt fc1/fc2, LoRA", "opt", dict(r=2, lora_alpha=4, target_modules=["fc1", "fc2"])),
    ("m2m100 encoder + decoder, LoRA", "m2m100", dict(r=4, lora_alpha=8)),
    ("phi3 fused gate_up, LoRA on both halves", "phi3", dict(r=4, lora_alpha=8)),
    ("phi3 fused gate_up, full on the up half", "phi3", dict(mode="full", fused_gate_up="up")),
]
IDS = [c[0] for c in CASES]


def _neurons(family):
    return SEQ2SEQ_NEURONS if family == "m2m100" else NEURONS


def _inputs(family, seed=0):
    g = torch.Generator().manual_seed(seed)
    batch = {"input_ids": torch.randint(3, 128, (2, 6), generator=g)}
    if family == "m2m100":
        batch["decoder_input_ids"] = torch.randint(3, 128, (2, 5), generator=g)
    return batch


def _randomize(model, seed=1):
    """Non-zero adapter weights (a fresh adapter is the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lsn_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def _adapted(family, dtype=torch.float32, **kwargs):
    base = make_tiny_model(family).to(dtype)
    reference = copy.deepcopy(base)
    model = peft.get_peft_model(base, NeuronConfig(neurons=_neurons(family), **kwargs))
    _randomize(model)
    return model, reference


def _layers(model, adapter_name="default"):
    return {
        n.removeprefix("base_model.model."): m
        for n, m in model.named_modules()
        if isinstance(m, NeuronLayer) and adapter_name in m.lsn_indices
    }


def _dense_delta(layer, name):
    """The reference: the full [out, in] delta `s * B_dense @ A_dense` (or the dense delta), zero outside the
    neurons, built differentiably from the adapter's own parameters."""
    idx = layer.lsn_indices[name]
    out, inp = layer.out_features, layer.in_features
    if layer.lsn_mode[name] == "full":
        D = layer.lsn_delta[name]
        return D.new_zeros(out, inp).index_add(0 if layer.lsn_axis == "rows" else 1, idx, D)
    A, B, s = layer.lsn_A[name], layer.lsn_B[name], layer.lsn_scaling[name]
    if layer.lsn_axis == "rows":
        B = B.new_zeros(out, B.shape[1]).index_add(0, idx, B)
    else:
        A = A.new_zeros(A.shape[0], inp).index_add(1, idx, A)
    return s * B @ A


def _reference_weights(model, reference, name="default"):
    """Parameter name -> dense W + delta of every adapted matrix (Conv1D stores [in, out])."""
    weights = {}
    for path, layer in _layers(model, name).items():
        base = reference.get_submodule(path)
        W = base.dequantize() if hasattr(base, "dequantize") else base.weight
        delta = _dense_delta(layer, name)
        weights[f"{path}.weight"] = W + (delta.T if type(base).__name__ == "Conv1D" else delta)
    return weights


def _logits(model, batch):
    return model(**batch).logits


@pytest.mark.parametrize("desc,family,kwargs", CASES, ids=IDS)
def test_forward_and_gradients_equal_the_dense_reference(desc, family, kwargs):
    # float64: the tiny random models are ill-conditioned (RMSNorm of small embeddings), so float32 input
    # gradients differ in the 4th digit between any two summation orders; float64 shows the real agreement
    model, reference = _adapted(family, dtype=torch.float64, **kwargs)
    batch = _inputs(family)
    weights = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert weights and all(".lsn_" in n for n in weights)
    assert all(not p.requires_grad for n, p in model.named_parameters() if ".lsn_" not in n)

    # compact shapes only: r x H + k x r (LoRA) or k x H (full) per matrix, no tensor over all neurons
    for layer in _layers(model).values():
        k = len(layer.lsn_indices["default"])
        other = layer.in_features if layer.lsn_axis == "rows" else layer.out_features
        shapes = [tuple(p.shape) for p in layer.parameters() if p.requires_grad]
        if layer.lsn_mode["default"] == "full":
            assert shapes == [(k, other) if layer.lsn_axis == "rows" else (other, k)]
        else:
            r = kwargs["r"]
            assert sorted(shapes) == sorted([(r, other), (k, r)] if layer.lsn_axis == "rows" else [(r, k), (other, r)])

    embeds = model.get_input_embeddings()(batch["input_ids"]).detach().requires_grad_(True)
    extra = {k: v for k, v in batch.items() if k != "input_ids"}
    probe = torch.randn(
        _logits(reference, batch).shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )

    out = _logits(model, {"inputs_embeds": embeds, **extra})
    (out * probe).sum().backward()
    grads = {n: p.grad.clone() for n, p in weights.items()}
    grad_x = embeds.grad.clone()
    assert all(p.grad is None for n, p in model.named_parameters() if ".lsn_" not in n)

    for p in weights.values():
        p.grad = None
    embeds.grad = None
    ref_out = torch.func.functional_call(
        reference, _reference_weights(model, reference), kwargs={"inputs_embeds": embeds, **extra}
    ).logits
    (ref_out * probe).sum().backward()
    torch.testing.assert_close(out, ref_out, atol=1e-10, rtol=1e-10)
    assert not torch.allclose(out, _logits(reference, batch), atol=1e-3)  # the adapter does change the output
    for n, p in weights.items():
        torch.testing.assert_close(grads[n], p.grad, atol=1e-10, rtol=1e-10, msg=n)
    torch.testing.assert_close(grad_x, embeds.grad, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("desc,family,kwargs", CASES, ids=IDS)
def test_merge_unmerge_and_merge_and_unload_are_exact(desc, family, kwargs):
    model, reference = _adapted(family, **kwargs)
    batch = _inputs(family)
    with torch.no_grad():
        adapted = _logits(model, batch)
        expected = _reference_weights(model, reference)
    original = {n: p.detach().clone() for n, p in reference.named_parameters()}

    model.merge_adapter()
    for layer_path, layer in _layers(model).items():
        W = layer.get_base_layer().weight
        name = f"{layer_path}.weight"
        torch.testing.assert_close(W, expected[name].detach(), atol=1e-6, rtol=0)
        # only the neurons' rows (columns) changed; everything else is bit-identical
        view, orig = (
            (W.T, original[name].T) if type(layer.get_base_layer()).__name__ == "Conv1D" else (W, original[name])
        )
        keep = torch.ones(view.shape[0 if layer.lsn_axis == "rows" else 1], dtype=torch.bool)
        keep[layer.lsn_indices["default"]] = False
        if layer.lsn_axis == "rows":
            assert torch.equal(view[keep], orig[keep]) and not torch.equal(view[~keep], orig[~keep])
        else:
            assert torch.equal(view[:, keep], orig[:, keep]) and not torch.equal(view[:, ~keep], orig[:, ~keep])
    with torch.no_grad():
        torch.testing.assert_close(_logits(model, batch), adapted, atol=1e-5, rtol=1e-5)

    model.unmerge_adapter()
    for layer_path, layer in _layers(model).items():
        torch.testing.assert_close(layer.get_base_layer().weight, original[f"{layer_path}.weight"], atol=1e-6, rtol=0)

    merged = model.merge_and_unload(safe_merge=True)
    assert not any(isinstance(m, NeuronLayer) for m in merged.modules())
    with torch.no_grad():
        torch.testing.assert_close(_logits(merged, batch), adapted, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_fresh_adapter_is_the_identity(mode):
    base = make_tiny_model("llama")
    batch = _inputs("llama")
    with torch.no_grad():
        expected = _logits(base, batch)
        model = peft.get_peft_model(base, NeuronConfig(neurons=NEURONS, mode=mode))
        assert torch.equal(_logits(model, batch), expected)
    if mode == "lora":  # A kaiming-uniform, B zero, like PEFT's LoRA
        layer = next(iter(_layers(model).values()))
        assert layer.lsn_A["default"].abs().sum() > 0 and not layer.lsn_B["default"].any()


def test_safe_merge_refuses_nan():
    model, _ = _adapted("llama", r=4)
    layer = next(iter(_layers(model).values()))
    with torch.no_grad():
        layer.lsn_B["default"][0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaNs detected"):
        model.merge_adapter(safe_merge=True)


@pytest.mark.parametrize(
    "kwargs",
    [dict(r=4, lora_alpha=8), dict(mode="full", target_modules=["gate_proj", "down_proj"])],
    ids=["lora", "full"],
)
def test_save_and_reload_through_every_route(tmp_path, kwargs):
    base = make_tiny_model("llama")
    base.save_pretrained(tmp_path / "base")  # so base_model_name_or_path resolves offline
    base = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    model = peft.get_peft_model(base, NeuronConfig(neurons=NEURONS, task_type="CAUSAL_LM", **kwargs))
    _randomize(model)
    batch = _inputs("llama")
    with torch.no_grad():
        expected = _logits(model, batch)
    model.save_pretrained(tmp_path / "adapter")

    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LSN" and saved["neurons"] == {"0": [1, 5, 9, 40], "1": [0, 63]}
    assert (saved["num_layers"], saved["num_neurons"]) == (2, 64)
    tensors = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert tensors["base_model.model.model.layers.0.mlp.gate_proj.lsn_indices"].tolist() == [1, 5, 9, 40]
    assert all(".lsn_" in k for k in tensors)

    def fresh():
        return transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base")

    routes = {
        "PeftModel.from_pretrained": peft.PeftModel.from_pretrained(fresh(), tmp_path / "adapter"),
        "AutoPeftModelForCausalLM": peft.AutoPeftModelForCausalLM.from_pretrained(tmp_path / "adapter"),
    }
    loaded = fresh()
    info = loaded.load_adapter(str(tmp_path / "adapter"))
    assert not info.missing_keys and not info.unexpected_keys
    routes["transformers load_adapter"] = loaded
    for route, m in routes.items():
        with torch.no_grad():
            assert torch.equal(_logits(m, batch), expected), route


@pytest.mark.parametrize(
    "family,kwargs",
    [
        ("llama", dict(r=4, lora_alpha=8)),
        ("llama", dict(mode="full")),
        ("gpt2", dict(r=4, target_modules=["c_proj"])),
        ("phi3", dict(mode="full", fused_gate_up="gate")),
    ],
    ids=["llama-lora", "llama-full", "gpt2-lora", "phi3-full"],
)
def test_to_lora_export_gives_the_same_outputs_with_plain_peft(tmp_path, family, kwargs):
    model, reference = _adapted(family, **kwargs)
    batch = _inputs(family)
    with torch.no_grad():
        expected = _logits(model, batch)
    out = to_lora(model, tmp_path / "lora")
    config = peft.PeftConfig.from_pretrained(out)
    assert isinstance(config, peft.LoraConfig) and config.peft_type == peft.PeftType.LORA
    if kwargs.get("mode") == "full":
        assert config.r == max(len(m.lsn_indices["default"]) for m in _layers(model).values()) == config.lora_alpha
    lora = peft.PeftModel.from_pretrained(reference, out)
    with torch.no_grad():
        torch.testing.assert_close(_logits(lora, batch), expected, atol=1e-5, rtol=1e-5)
    assert "lsn.to_lora" in (out / "README.md").read_text()


def test_to_lora_from_a_saved_folder_restores_the_base_model(tmp_path):
    model, reference = _adapted("llama", r=4)
    batch = _inputs("llama")
    with torch.no_grad():
        expected = _logits(model, batch)
    model.save_pretrained(tmp_path / "adapter")
    base = copy.deepcopy(reference)
    with pytest.raises(ValueError, match="base_model"):
        to_lora(tmp_path / "adapter", tmp_path / "lora")
    to_lora(tmp_path / "adapter", tmp_path / "lora", base_model=base)
    assert not any(isinstance(m, NeuronLayer) for m in base.modules())
    with torch.no_grad():
        torch.testing.assert_close(
            _logits(peft.PeftModel.from_pretrained(base, tmp_path / "lora"), batch), expected, atol=1e-5, rtol=1e-5
        )


def test_several_adapters_switch_disable_delete_and_unload():
    base = make_tiny_model("llama")
    reference = copy.deepcopy(base)
    batch = _inputs("llama")
    with torch.no_grad():
        base_logits = _logits(reference, batch)
    model = peft.get_peft_model(base, NeuronConfig(neurons={0: [1, 2]}, r=4))
    model.add_adapter("fr", NeuronConfig(neurons={1: [3, 60]}, mode="full", target_modules=["up_proj"]))
    _randomize(model)
    assert [n for n, p in model.named_parameters() if p.requires_grad and ".fr" in n] == []  # added, not active

    def reference_logits(name):
        with torch.no_grad():
            return torch.func.functional_call(
                reference, _reference_weights(model, reference, name), kwargs=batch
            ).logits

    with torch.no_grad():
        for name in ("default", "fr", "default"):
            model.set_adapter(name)
            torch.testing.assert_close(_logits(model, batch), reference_logits(name), atol=1e-5, rtol=1e-5)
            assert {n.rsplit(".", 1)[1] for n, p in model.named_parameters() if p.requires_grad} == {name}
        with model.disable_adapter():
            assert torch.equal(_logits(model, batch), base_logits)

    model.delete_adapter("fr")
    assert list(model.peft_config) == ["default"]
    assert not [k for k in model.state_dict() if k.endswith(".fr")]
    assert not [n for n, _ in model.named_buffers() if n.endswith(".fr")]
    up = model.base_model.model.model.layers[1].mlp.up_proj
    assert isinstance(up, NeuronLayer) and not up.lsn_indices and not up.lsn_delta and not up.lsn_mode

    unloaded = model.unload()
    assert not any(isinstance(m, NeuronLayer) for m in unloaded.modules())
    state, original = unloaded.state_dict(), reference.state_dict()
    assert state.keys() == original.keys() and all(torch.equal(state[k], original[k]) for k in state)


def test_push_to_hub_uploads_adapter_files_and_model_card(monkeypatch):
    uploads = {}

    class Repo:
        repo_id = "me/neurons"

    def create_commit(self, repo_id, operations, **kwargs):
        uploads.update({op.path_in_repo: Path(op.path_or_fileobj).read_bytes() for op in operations})
        return "commit"

    def upload_folder(self, repo_id, folder_path, **kwargs):
        uploads.update({p.name: p.read_bytes() for p in Path(folder_path).iterdir()})
        return "commit"

    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: Repo())
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    model, _ = _adapted("llama", r=4)

    model.push_to_hub("me/neurons")  # PEFT's route: adapter files, but transformers writes a generic card
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(uploads)
    assert json.loads(uploads["adapter_config.json"])["peft_type"] == "LSN"

    uploads.clear()
    lsn.adapter.push_to_hub(model, "me/neurons")
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(uploads)
    card = uploads["README.md"].decode()
    assert "Language-specific neuron adapter (lsn)" in card and "| neurons | 6 | 4 | 2 |" in card


def test_neuron_set_input_and_model_card(tmp_path):
    ns = lsn.NeuronSet(
        {"fr": [[1, 2], [5]], "de": [[2, 3], []]},
        num_layers=2,
        num_neurons=64,
        method="lape",
        parameters={"top_rate": 0.01},
        model={"model_name": "tiny/llama"},
    )
    config = NeuronConfig(neurons=ns, groups=["fr", "de"])
    assert config.neurons == {"0": [1, 2, 3], "1": [5]}
    assert (config.num_layers, config.num_neurons, config.neuron_method, config.neuron_model) == (
        2,
        64,
        "lape",
        "tiny/llama",
    )
    ns.save(tmp_path / "neurons.json")
    from_path = NeuronConfig(neurons=str(tmp_path / "neurons.json"), groups="fr")
    assert from_path.neurons == {"0": [1, 2], "1": [5]} and from_path.groups == ["fr"]

    model = peft.get_peft_model(make_tiny_model("llama"), config)
    model.save_pretrained(tmp_path / "adapter")
    model.save_pretrained(tmp_path / "adapter")  # saving twice keeps one lsn section
    card = (tmp_path / "adapter" / "README.md").read_text()
    assert card.count("Language-specific neuron adapter (lsn)") == 1
    assert "library_name: peft" in card and "- lsn" in card  # PEFT's card, with lsn's section and tags
    for words in ("**lape**", "`top_rate`: `0.01`", "tiny/llama", "groups: fr, de", "| neurons | 4 | 3 | 1 |"):
        assert words in card


@pytest.mark.parametrize(
    "kwargs,words",
    [
        (dict(neurons={0: [64]}), ["Layer 0", "indices [64] are outside [0, 64)"]),
        (dict(neurons={0: [-1]}), ["Layer 0", "indices [-1] are outside [0, 64)"]),
        (dict(neurons={2: [1]}), ["Layer 2 does not exist", "FFN layers 0..1"]),
        (dict(neurons=lsn.NeuronSet({"x": [[1]] * 3}, num_layers=3, num_neurons=64)), ["3 layers x 64", "2 x 64"]),
        (
            dict(neurons={0: [1]}, target_modules=["q_proj"]),
            ["`target_modules`", "q_proj", "not FFN matrices", "down_proj"],
        ),
    ],
    ids=["index out of range", "negative index", "layer out of range", "other model shape", "not an FFN matrix"],
)
def test_bad_inputs_fail_clearly_at_get_peft_model(kwargs, words):
    with pytest.raises(ValueError) as err:
        peft.get_peft_model(make_tiny_model("llama"), NeuronConfig(**kwargs))
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize(
    "kwargs,words",
    [
        (dict(), ["`neurons` is required"]),
        (dict(neurons={}), ["selects no neuron"]),
        (dict(neurons={0: ["a"]}), ["`neurons`", "integer indices"]),
        (dict(neurons={0: [1]}, mode="half"), ["`mode`", "'half'"]),
        (dict(neurons={0: [1]}, r=0), ["`r`", "positive"]),
        (dict(neurons={0: [1]}, lora_dropout=1.5), ["`lora_dropout`", "1.5"]),
        (
            dict(neurons=lsn.NeuronSet({"a": [[1]], "b": [[2]]}, num_layers=1, num_neurons=8)),
            ["`groups` is required", "'a'"],
        ),
    ],
    ids=["missing", "empty", "not integers", "mode", "rank", "dropout", "groups"],
)
def test_bad_configs_fail_clearly(kwargs, words):
    with pytest.raises(ValueError) as err:
        NeuronConfig(**kwargs)
    for word in words:
        assert word in str(err.value)


def test_ignored_options_warn():
    with pytest.warns(UserWarning, match="ignored in mode='full'"):
        NeuronConfig(neurons={0: [1]}, mode="full", r=16)
    with pytest.warns(UserWarning, match="`fused_gate_up`='up' is ignored"):
        peft.get_peft_model(make_tiny_model("llama"), NeuronConfig(neurons={0: [1]}, fused_gate_up="up"))


def test_fused_gate_up_rows_and_encoder_decoder_targets():
    phi3, _ = _adapted("phi3", fused_gate_up="both")
    gate_up = _layers(phi3)["model.layers.0.mlp.gate_up_proj"]
    assert gate_up.lsn_indices["default"].tolist() == [1, 5, 9, 40, 65, 69, 73, 104]  # j and I + j, I = 64
    m2m, _ = _adapted("m2m100")
    assert sorted(_layers(m2m)) == [
        "model.decoder.layers.1.fc1",
        "model.decoder.layers.1.fc2",
        "model.encoder.layers.0.fc1",
        "model.encoder.layers.0.fc2",
    ]


class Int8Linear(nn.Module):
    """A stand-in for a bitsandbytes quantized linear: an int8 weight with per-row scales, dequantized in forward."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        scale = linear.weight.detach().abs().amax(1, keepdim=True) / 127
        self.register_buffer("scale", scale)
        self.weight = nn.Parameter((linear.weight.detach() / scale).round().to(torch.int8), requires_grad=False)

    def dequantize(self) -> torch.Tensor:
        return self.weight.float() * self.scale

    def forward(self, x):
        return F.linear(x, self.dequantize().to(x.dtype))


def test_quantized_base_forward_works_and_merging_is_refused():
    base = make_tiny_model("llama")
    for layer in base.model.layers:
        for name in ("gate_proj", "up_proj", "down_proj"):
            setattr(layer.mlp, name, Int8Linear(getattr(layer.mlp, name)))
    reference = copy.deepcopy(base)
    model = peft.get_peft_model(base, NeuronConfig(neurons=NEURONS, r=4))
    _randomize(model)
    assert all(layer.lsn_quantized for layer in _layers(model).values())
    batch = _inputs("llama")
    with torch.no_grad():  # reference: float linears holding dequantized W + the dense delta
        weights = _reference_weights(model, reference)
        dense = copy.deepcopy(reference)
        for path in _layers(model):
            parent, _, child = path.rpartition(".")
            linear = nn.Linear(*weights[f"{path}.weight"].shape[::-1], bias=False)
            linear.weight.copy_(weights[f"{path}.weight"])
            setattr(dense.get_submodule(parent), child, linear)
        torch.testing.assert_close(_logits(model, batch), _logits(dense, batch), atol=1e-5, rtol=1e-5)
    _logits(model, batch).sum().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if ".lsn_" in n)
    for call in (model.merge_adapter, model.merge_and_unload):
        with pytest.raises(TypeError, match="quantized base layer"):
            call()
    assert not any(layer.merged for layer in _layers(model).values())
    assert isinstance(model.unload().model.layers[0].mlp.gate_proj, Int8Linear)  # unloading needs no merge


def test_registration_is_idempotent():
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lsn.adapter.register()
        lsn.adapter.register()
    assert PEFT_TYPE_TO_CONFIG_MAPPING["LSN"] is NeuronConfig
    assert PEFT_TYPE_TO_TUNER_MAPPING["LSN"] is lsn.adapter.NeuronModel
    assert PEFT_TYPE_TO_PREFIX_MAPPING["LSN"] == "lsn_" == lsn.adapter.LsnPeftType.LSN.value.lower() + "_"
    assert lsn.NeuronConfig is NeuronConfig and lsn.to_lora is to_lora


# ---------------------------------------------------------------- real bitsandbytes bases (CPU backend)


def _bnb_model(tmp_path, bits):
    """A tiny Llama (widths a multiple of bitsandbytes' 64-value blocks) loaded in 4-bit NF4 or 8-bit."""
    path = tmp_path / "base"
    if not path.exists():
        make_tiny_model("llama", hidden_size=64, intermediate_size=128).save_pretrained(path)
    quantization = (
        transformers.BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
        )
        if bits == 4
        else transformers.BitsAndBytesConfig(load_in_8bit=True)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.AutoModelForCausalLM.from_pretrained(
            path, quantization_config=quantization, device_map="cpu", dtype=torch.float32
        )


@pytest.mark.parametrize("bits", [4, 8])
def test_bitsandbytes_base_layers_add_exactly_the_delta(tmp_path, bits):
    bnb = pytest.importorskip("bitsandbytes")
    quantized = bnb.nn.Linear4bit if bits == 4 else bnb.nn.Linear8bitLt
    model = peft.get_peft_model(_bnb_model(tmp_path, bits), NeuronConfig(neurons={0: [1, 5, 100], 1: [127]}, r=4))
    _randomize(model)
    # Saved before any forward: bitsandbytes' CPU backend repacks 4-bit weights at the first inference
    # forward, and a state_dict() taken after that changes the base's outputs (upstream bug).
    model.save_pretrained(tmp_path / "adapter")
    reloaded = peft.PeftModel.from_pretrained(_bnb_model(tmp_path, bits), tmp_path / "adapter")
    batch = _inputs("llama")
    _logits(model, batch).sum().backward()  # training first: inference forwards repack the CPU weights
    trained = {n for n, p in model.named_parameters() if p.grad is not None}
    assert trained and all(".lsn_" in n for n in trained)
    layers = _layers(model)
    assert len(layers) == 6 and all(isinstance(layer.get_base_layer(), quantized) for layer in layers.values())
    assert all(
        layer.lsn_quantized and (layer.in_features, layer.out_features) in {(64, 128), (128, 64)}
        for layer in layers.values()
    )
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for path, layer in layers.items():
            x = torch.randn(2, 3, layer.in_features, generator=g)
            expected = layer.get_base_layer()(x) + x @ _dense_delta(layer, "default").T
            torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5, msg=path)
        torch.testing.assert_close(_logits(reloaded, batch), _logits(model, batch), atol=0, rtol=0)
    with pytest.raises(TypeError, match="quantized base layer"):
        model.merge_and_unload()


def test_recording_on_a_4bit_base_equals_an_independent_count(tmp_path):
    pytest.importorskip("bitsandbytes")
    from conftest import padded_batches
    from test_recording import reference_stats

    model = _bnb_model(tmp_path, 4)
    corpora = {"en": padded_batches(2, seed=1), "zh": padded_batches(1, seed=2)}
    stats = lsn.record_activations(model, corpora, progress=False)
    counts, tokens, *_ = reference_stats(model, corpora)
    assert stats.num_neurons == 128  # the packed 4-bit weight's shape is not the matrix's
    assert torch.equal(stats.counts, counts) and torch.equal(stats.tokens, tokens)
