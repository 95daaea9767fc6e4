"""The flow resolves neuron indices once, and adding a selection method is one function plus one registry line."""

import sys

import peft
import pytest
import torch
from conftest import make_tiny_model, padded_batches
from transformers import TrainingArguments

import lsn
from lsn import models
from lsn.cli import main
from lsn.selection import selected_neurons, selection_method, selection_methods
from lsn.translation import TaskMasks

NEURONS = lsn.NeuronSet({"en": [[1, 2, 3], [4, 5]], "de": [[10], [11, 12]]}, num_layers=2, num_neurons=64)


@pytest.fixture
def site_calls(monkeypatch):
    """Counts `find_neuron_sites` calls, wherever lsn imported it from."""
    calls = []
    original = models.find_neuron_sites

    def counted(model):
        calls.append(type(model).__name__)
        return original(model)

    for name, module in list(sys.modules.items()):
        if name.startswith("lsn") and getattr(module, "find_neuron_sites", None) is original:
            monkeypatch.setattr(module, "find_neuron_sites", counted)
    return calls


def test_get_peft_model_finds_sites_once(site_calls):
    peft.get_peft_model(make_tiny_model("llama"), lsn.NeuronConfig(neurons=NEURONS, groups=["en"]))
    assert len(site_calls) == 1


def test_intervene_finds_sites_once(site_calls):
    model = make_tiny_model("llama")
    with lsn.intervene(model, NEURONS, "zero", groups="de"):
        pass
    assert len(site_calls) == 1


def test_neuron_trainer_finds_sites_once(site_calls, tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    lsn.NeuronTrainer(make_tiny_model("llama"), args, neurons=NEURONS, neuron_groups="en")
    assert len(site_calls) == 1
    site_calls.clear()
    config = lsn.NeuronConfig(neurons=NEURONS, groups=["de"], target_modules=["gate_proj"])
    trainer = lsn.NeuronTrainer(make_tiny_model("llama"), args, peft_config=config)
    assert len(site_calls) == 1
    assert trainer.model.peft_config["default"] is config


def test_task_masks_find_sites_once(site_calls):
    model = make_tiny_model("llama")
    masks = TaskMasks(NEURONS)
    with masks.attached(model):
        masks.set_task("en")
        model(**padded_batches(1, seed=0)[0])
    assert len(site_calls) == 1


def test_neuron_trainer_accepts_a_lora_config(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    trainer = lsn.NeuronTrainer(
        make_tiny_model("llama"), args, peft_config=peft.LoraConfig(r=2, target_modules=["q_proj"])
    )
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and "q_proj" in n for n in trainable)


def test_a_toy_method_through_the_registry_and_the_cli(tmp_path, capsys):
    @selection_method("toy-top-count", "The n most-firing neurons per group.", n="neurons per group")
    def select_toy(stats, *, n: int = 2):
        flat = stats.counts.reshape(-1, len(stats.groups))  # [layers * neurons, groups]
        chosen = {
            g: torch.sort(flat[:, k], descending=True, stable=True).indices[:n] for k, g in enumerate(stats.groups)
        }
        return selected_neurons(stats, chosen, "toy-top-count", {"n": n})

    try:
        model = make_tiny_model("llama")
        stats = lsn.record_activations(model, {"en": padded_batches(2, 1), "de": padded_batches(2, 2)}, progress=False)
        stats.save(tmp_path / "stats.safetensors")
        out = tmp_path / "toy.json"
        argv = ["select", str(tmp_path / "stats.safetensors"), "--method", "toy-top-count", "--n", "3"]
        assert main([*argv, "--output", str(out)]) == 0
        saved = lsn.NeuronSet.load(out)
        assert saved == select_toy(stats, n=3) and saved.method == "toy-top-count"
        flat = stats.counts.reshape(-1, 2)
        expected = sorted(torch.sort(flat[:, 0], descending=True, stable=True).indices[:3].tolist())
        assert sorted(layer * 64 + i for layer, idx in enumerate(saved["en"]) for i in idx.tolist()) == expected
        # another method's option is refused with the method that owns it
        capsys.readouterr()
        assert main([*argv, "--top-rate", "0.1", "--output", str(out)]) == 2
        assert "--top-rate (of lape) do not apply to --method toy-top-count" in capsys.readouterr().err
    finally:
        from lsn import selection

        selection._METHODS.pop("toy-top-count", None)  # the registry is process-wide: leave it as found


def test_registry_names_are_the_stored_names():
    stats = lsn.record_activations(
        make_tiny_model("llama"), {"en": padded_batches(2, 1), "de": padded_batches(2, 2)}, progress=False
    )
    options = {"probability": {"top_k": 3}}  # the default budget rounds to 0 neurons on a model this small
    for name, method in selection_methods().items():
        if method.reads is lsn.ActivationStats:
            assert method.fn(stats, **options.get(name, {})).method == name


def test_average_precision_from_the_cli(tmp_path, tiny_tokenizer, multilingual_texts):
    """A method that reads sentence responses, not statistics: `lsn select responses --method average_precision`."""
    model = make_tiny_model("llama", vocab_size=len(tiny_tokenizer))
    texts = {g: multilingual_texts[g][:6] for g in ("en", "de")}
    responses = lsn.record_sentence_responses(model, texts, tokenizer=tiny_tokenizer, batch_size=4)
    responses.save(tmp_path / "responses.safetensors")
    out = tmp_path / "ap.json"
    argv = ["select", str(tmp_path / "responses.safetensors"), "--method", "average_precision"]
    assert main([*argv, "--output", str(out)]) == 2  # --top-n is required
    assert main([*argv, "--top-n", "4", "--bottom-n", "2", "--output", str(out)]) == 0
    saved = lsn.NeuronSet.load(out)
    assert saved == lsn.select_average_precision(responses, 4, 2) and saved.method == "average_precision"
    assert saved.counts_per_layer().sum(1).tolist() == [6, 6]
