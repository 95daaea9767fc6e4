"""NeuronTrainer trains only the adapter, saves neurons with checkpoints, and resumes exactly."""

import datasets
import pytest
import torch
from conftest import make_tiny_model
from transformers import DataCollatorForLanguageModeling, TrainingArguments

import lsn
from lsn.trainer import NeuronTrainer

NEURONS = lsn.NeuronSet(
    {"en": [[1, 2, 3], [4, 5]], "de": [[10], [11, 12]]}, num_layers=2, num_neurons=64, method="test"
)


def lm_dataset(tokenizer, texts, seq_len=16):
    ids = [i for t in texts for i in tokenizer(t)["input_ids"]]
    rows = [ids[i : i + seq_len] for i in range(0, len(ids) - seq_len, seq_len)][:48]
    return datasets.Dataset.from_dict({"input_ids": rows})


def make_trainer(tmp_path, tokenizer, texts, max_steps=8, save_steps=100, **kwargs):
    model = make_tiny_model("llama", vocab_size=len(tokenizer))
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=max_steps,
        learning_rate=5e-3,
        save_steps=save_steps,
        logging_steps=100,
        report_to=[],
        use_cpu=True,
        seed=0,
        data_seed=0,
    )
    return NeuronTrainer(
        model,
        args,
        neurons=NEURONS,
        neuron_groups="en",
        train_dataset=lm_dataset(tokenizer, texts),
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        **kwargs,
    )


def adapter_state(trainer):
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}


def test_only_adapter_parameters_train_and_neurons_are_saved(tmp_path, tiny_tokenizer, multilingual_texts):
    trainer = make_trainer(tmp_path, tiny_tokenizer, multilingual_texts["en"], max_steps=4, save_steps=2)
    frozen = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if not p.requires_grad}
    trainable = adapter_state(trainer)
    assert trainable and all(n.count("lsn_") for n in trainable)
    trainer.train()
    assert all(torch.equal(p, frozen[n]) for n, p in trainer.model.named_parameters() if not p.requires_grad)
    assert any(not torch.equal(p, trainable[n]) for n, p in trainer.model.named_parameters() if p.requires_grad)
    saved = lsn.NeuronConfig.from_pretrained(tmp_path / "checkpoint-2")  # the neurons, once: the adapter config
    assert saved.groups == ["en"] and saved.neurons == {"0": [1, 2, 3], "1": [4, 5]}
    assert not (tmp_path / "checkpoint-2" / "neurons").exists()
    assert (tmp_path / "checkpoint-2" / "README.md").read_text().count("Language-specific neuron adapter (lsn)") == 1


def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path, tiny_tokenizer, multilingual_texts):
    texts = multilingual_texts["de"]
    full = make_trainer(tmp_path / "full", tiny_tokenizer, texts, max_steps=8)
    full.train()
    expected = adapter_state(full)

    first = make_trainer(tmp_path / "resumed", tiny_tokenizer, texts, max_steps=8, save_steps=4)
    first.train()  # leaves checkpoint-4 behind; resume from it in a fresh trainer
    resumed = make_trainer(tmp_path / "resumed", tiny_tokenizer, texts, max_steps=8, save_steps=4)
    resumed.train(resume_from_checkpoint=str(tmp_path / "resumed" / "checkpoint-4"))
    got = adapter_state(resumed)
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-7, msg=name)


def test_bad_combinations_raise(tmp_path, tiny_tokenizer):
    import peft

    model = make_tiny_model("llama")
    wrapped = peft.get_peft_model(model, lsn.NeuronConfig(neurons={0: [1]}))
    with pytest.raises(ValueError, match="already a PeftModel"):
        NeuronTrainer(
            wrapped,
            TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True),
            peft_config=lsn.NeuronConfig(neurons={0: [2]}),
        )
    with pytest.raises(ValueError, match="name different neurons"):
        NeuronTrainer(
            make_tiny_model("llama"),
            TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True),
            neurons=NEURONS,
            neuron_groups="en",
            peft_config=lsn.NeuronConfig(neurons=NEURONS, groups=["de"]),
        )
    other = lsn.NeuronSet({"en": [[1]] * 3}, num_layers=3, num_neurons=64)
    with pytest.raises(ValueError, match="3 layers x 64 neurons"):
        NeuronTrainer(
            make_tiny_model("llama"),
            TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True),
            neurons=other,
        )
