"""The shipped demo model: it loads like a hub model, it learned the world, and its LAPE neurons are language-specific.

The main test is Tang et al.'s validation experiment on the shipped checkpoint: deactivating
language i's LAPE neurons must raise i's held-out NLL more than any other language's, and more
than deactivating as many random neurons. Measured margins (top_rate 0.2) are about 2x or more in
every row, and the result held for every setting tried (top_rate 0.1-0.25, 10k-40k recording
tokens per language, two held-out seeds, 4k-8k evaluation tokens).
"""

import math

import pytest
import torch
import transformers

from lsn import NeuronSet, nll_matrix
from lsn.demo import pretrain as demo_pretrain
from lsn.demo.pretrain import DEMO_MODEL_DIR, demo_lape_neurons, heldout_texts, load_demo_model, pretraining_texts
from lsn.demo.world import LANGUAGES

EVAL_TOKENS = 4096  # per language, held out (seed 1)


@pytest.fixture(scope="module")
def demo():
    return load_demo_model()


@pytest.fixture(scope="module")
def matrix(demo):
    model, tokenizer = demo
    neurons = NeuronSet.from_pretrained(demo_lape_neurons())  # the recipes' `lsn:demo-lape`, recorded once
    return nll_matrix(
        model,
        neurons,
        heldout_texts(150),
        tokenizer=tokenizer,
        seq_len=128,
        batch_size=16,
        max_tokens=EVAL_TOKENS,
        random_control=0,
        progress=False,
    )


def test_shipped_checkpoint_is_small_and_loads_like_a_hub_model():
    assert (DEMO_MODEL_DIR / "README.md").is_file()
    size = sum(p.stat().st_size for p in DEMO_MODEL_DIR.iterdir() if p.is_file())
    assert size <= 10 * 2**20
    model = transformers.AutoModelForCausalLM.from_pretrained(DEMO_MODEL_DIR)
    tokenizer = transformers.AutoTokenizer.from_pretrained(DEMO_MODEL_DIR)
    assert model.config.model_type == "llama" and model.config.vocab_size == len(tokenizer)
    assert tokenizer("Anna liest.")["input_ids"][0] == tokenizer.bos_token_id


def test_heldout_text_is_not_pretraining_text():
    train, held = pretraining_texts(300), heldout_texts(50)
    for lang in LANGUAGES:
        assert not set(held[lang]) & set(train[lang])


def test_the_model_learned_every_language(matrix, demo):
    ln_vocab = math.log(len(demo[1]))
    assert matrix.columns == list(LANGUAGES)
    assert all(nll < 0.4 * ln_vocab for nll in matrix.baseline.tolist()), matrix.baseline


def test_lape_neurons_are_language_specific(matrix):
    report = "\n" + matrix.to_markdown()
    assert matrix.specificity() == dict.fromkeys(LANGUAGES, True), report
    delta = matrix.delta
    for i, lang in enumerate(LANGUAGES):
        assert matrix.neurons[lang] > 0, report
        assert delta[i, i] > 0, report
        assert delta[i, i] > delta[matrix.rows.index(f"random:{lang}"), i], report


def test_pretrain_is_deterministic_and_the_loader_falls_back_to_the_cache(tmp_path, monkeypatch):
    tiny = {
        **demo_pretrain.SETTINGS,
        "docs_per_language": 40,
        "vocab_size": 512,
        "steps": 3,
        "warmup_steps": 1,
        "batch_size": 2,
        "seq_len": 32,
        "hidden_size": 32,
        "intermediate_size": 64,
    }
    demo_pretrain.pretrain(tmp_path / "a", tiny, progress=False)
    demo_pretrain.pretrain(tmp_path / "b", tiny, progress=False)
    a = (tmp_path / "a" / "model.safetensors").read_bytes()
    assert a == (tmp_path / "b" / "model.safetensors").read_bytes()

    monkeypatch.setattr(demo_pretrain, "DEMO_MODEL_DIR", tmp_path / "missing")
    monkeypatch.setattr(demo_pretrain, "SETTINGS", tiny)
    monkeypatch.setenv("LSN_CACHE", str(tmp_path / "cache"))
    model, tokenizer = demo_pretrain.load_demo_model()
    assert demo_pretrain.demo_model_path() == tmp_path / "cache" / "demo-model"
    assert (tmp_path / "cache" / "demo-model" / "model.safetensors").read_bytes() == a
    with torch.inference_mode():
        assert model(**tokenizer("Anna", return_tensors="pt")).logits.shape[-1] == len(tokenizer)


def test_neuron_lora_on_english_nli_beats_chance(tmp_path):
    """The demo's fine-tuning stage: LoRA on the English LAPE neurons only, English NLI of the world."""
    from transformers import TrainingArguments

    from lsn.demo.tasks import world_task_files
    from lsn.train import DataArguments, ModelArguments, NeuronArguments, main

    results = main(
        ModelArguments(model_name_or_path="lsn:demo"),
        NeuronArguments(
            condition="neuron-lora",
            neurons=str(demo_lape_neurons()),
            neuron_groups=["en"],
            r=16,
            lora_alpha=32,
            target_modules=["gate_proj", "up_proj", "down_proj"],
        ),
        DataArguments(
            task="xnli",
            eval_languages=["en", "zh"],
            data_dir=str(world_task_files(tmp_path / "world")),
            train_fraction=1.0,
            max_eval_samples=300,
            max_length=128,
        ),
        TrainingArguments(
            output_dir=str(tmp_path / "run"),
            max_steps=300,
            per_device_train_batch_size=16,
            learning_rate=3e-3,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            seed=0,
        ),
    )
    assert results["en"]["accuracy"] > 0.45, results  # chance is 1/3; measured about 0.52-0.54
    assert 0 <= results["zh"]["accuracy"] <= 1
