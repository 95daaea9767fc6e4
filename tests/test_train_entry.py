"""`python -m lsn.train` runs every condition end to end offline; `lsn.evaluate` tabulates them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import peft
import pytest
import torch
import transformers
from conftest import make_tiny_model

import lsn
from lsn import evaluate as lsn_evaluate
from lsn import train as lsn_train
from lsn.arguments import parse_recipe
from lsn.demo.tasks import world_task_files

CLASSES = lsn_train.build_parser()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_tokenizer):
    root = tmp_path_factory.mktemp("train")
    model_dir = root / "model"
    make_tiny_model("llama", vocab_size=len(tiny_tokenizer), max_position_embeddings=512).save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)
    neurons = lsn.NeuronSet(
        {"en": [[1, 2, 3], [4, 5]], "zh": [[6], [7, 8, 9]]}, num_layers=2, num_neurons=64, method="test"
    )
    neurons.save_pretrained(root / "neurons")
    data_dir = world_task_files(root / "world", nli_size=60, qa_size=20)
    return root, model_dir, data_dir


def run(setup, name, *flags):
    root, model_dir, data_dir = setup
    argv = [
        "--model_name_or_path",
        str(model_dir),
        "--data_dir",
        str(data_dir),
        "--neurons",
        str(root / "neurons"),
        "--eval_languages",
        "en",
        "zh",
        "ar",
        "--max_steps",
        "3",
        "--per_device_train_batch_size",
        "4",
        "--per_device_eval_batch_size",
        "8",
        "--max_eval_samples",
        "6",
        "--learning_rate",
        "1e-3",
        "--report_to",
        "none",
        "--use_cpu",
        "true",
        "--save_strategy",
        "no",
        "--max_length",
        "128",
        "--output_dir",
        str(root / name),
        *flags,
    ]
    return lsn_train.main(*parse_recipe(CLASSES, argv))


@pytest.mark.parametrize("condition", lsn_train.CONDITIONS)
def test_every_condition_xnli_classification(setup, condition):
    results = run(
        setup, f"xnli-{condition}", "--condition", condition, "--neuron_groups", "en", "--train_fraction", "1.0"
    )
    assert set(results) == {"en", "zh", "ar"} and all(0 <= r["accuracy"] <= 1 for r in results.values())
    root = setup[0]
    saved = json.loads((root / f"xnli-{condition}" / "eval_results.json").read_text())
    assert saved == results
    if condition.startswith(("neuron", "random")):
        trained = lsn.NeuronConfig.from_pretrained(root / f"xnli-{condition}").neurons  # saved once, in the adapter
        source = {str(layer): idx.tolist() for layer, idx in enumerate(lsn.NeuronSet.load(root / "neurons")["en"])}
        assert {k: len(v) for k, v in trained.items()} == {k: len(v) for k, v in source.items()}
        assert (trained == source) == (condition != "random-neuron-lora")


def test_prompt_formats_and_the_results_table(setup, capsys):
    nli = run(setup, "xnli-prompt", "--condition", "neuron-lora", "--format", "prompt", "--train_fraction", "1.0")
    qa = run(setup, "xquad", "--condition", "neuron-lora", "--task", "xquad")
    assert set(nli) == set(qa) == {"en", "zh", "ar"}
    assert all(0 <= r["exact_match"] <= 100 and 0 <= r["f1"] <= 100 for r in qa.values())
    root = setup[0]
    for condition in ("lora", "neuron-lora", "random-neuron-lora"):  # this test's own runs
        run(setup, f"table-{condition}", "--condition", condition, "--neuron_groups", "en", "--train_fraction", "1.0")
    table = lsn_evaluate.main(
        [
            str(root / "table-lora"),
            str(root / "table-neuron-lora"),
            str(root / "table-random-neuron-lora"),
            "--baseline",
            "lora",
            "--output",
            str(root / "table"),
        ]
    )
    assert table.splitlines()[0] == "| language | lora | neuron-lora | random-neuron-lora |"
    assert len(table.splitlines()) == 2 + 3 + 1  # header, rule, 3 languages, mean
    saved = json.loads((root / "table" / "results.json").read_text())
    assert saved["metric"] == "accuracy" and set(saved["results"]) == {"lora", "neuron-lora", "random-neuron-lora"}
    with pytest.raises(ValueError, match="mix tasks"):
        lsn_evaluate.collect([str(root / "table-lora"), str(root / "xquad")])


def test_bad_condition_and_missing_neurons(setup, capsys):
    with pytest.raises(SystemExit):  # a Literal field: argparse lists the choices, before any model loads
        run(setup, "bad", "--condition", "magic")
    assert "invalid choice: 'magic' (choose from 'none', 'lora', 'neuron-lora'" in capsys.readouterr().err
    root, model_dir, data_dir = setup
    argv = [
        "--model_name_or_path",
        str(model_dir),
        "--data_dir",
        str(data_dir),
        "--condition",
        "neuron-lora",
        "--output_dir",
        str(root / "bad2"),
        "--use_cpu",
        "true",
        "--report_to",
        "none",
    ]
    with pytest.raises(ValueError, match="needs `neurons:`"):
        lsn_train.main(*parse_recipe(CLASSES, argv))


def test_two_real_cpu_processes_under_accelerate_launch(setup):
    root, model_dir, data_dir = setup
    config = Path(__file__).resolve().parents[1] / "recipes/accelerate_configs/cpu_2proc.yaml"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config),
        "--main_process_port",
        "29519",
        "-m",
        "lsn.train",
        "--model_name_or_path",
        str(model_dir),
        "--data_dir",
        str(data_dir),
        "--neurons",
        str(root / "neurons"),
        "--condition",
        "neuron-lora",
        "--eval_languages",
        "en",
        "zh",
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "4",
        "--max_eval_samples",
        "4",
        "--report_to",
        "none",
        "--use_cpu",
        "true",
        "--save_strategy",
        "no",
        "--train_fraction",
        "1.0",
        "--max_length",
        "128",
        "--output_dir",
        str(root / "ddp"),
    ]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    run_info = json.loads((root / "ddp" / "lsn_run.json").read_text())
    assert run_info["world_size"] == 2
    assert set(json.loads((root / "ddp" / "eval_results.json").read_text())) == {"en", "zh"}


@pytest.mark.parametrize("task", ["xnli", "xquad"])
def test_tiny_recipes_run_offline(tmp_path, monkeypatch, task):
    """The shipped tiny recipes (demo model, world data, demo LAPE neurons), shortened."""
    monkeypatch.setenv("LSN_CACHE", str(tmp_path / "cache"))
    recipe = Path(__file__).resolve().parents[1] / f"recipes/tiny/{task}/config_neuron_lora.yaml"
    results = lsn_train.main(
        *parse_recipe(
            CLASSES,
            [
                str(recipe),
                "--output_dir",
                str(tmp_path / "run"),
                "--max_steps",
                "2",
                "--max_eval_samples",
                "4",
                "--eval_languages",
                "en",
                "hi",
            ],
        )
    )
    assert set(results) == {"en", "hi"}
    assert lsn.NeuronConfig.from_pretrained(tmp_path / "run").groups == ["en"]


def test_neuron_lora_on_a_4bit_base(setup, tiny_tokenizer):
    """`load_in_4bit` (QLoRA-style, as the paper trains Llama-3.1-8B) on bitsandbytes' CPU backend."""
    bnb = pytest.importorskip("bitsandbytes")
    root = setup[0]
    model_dir = root / "model-64"  # bitsandbytes quantizes in blocks of 64 values
    make_tiny_model(
        "llama", vocab_size=len(tiny_tokenizer), max_position_embeddings=512, hidden_size=64, intermediate_size=128
    ).save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)
    neurons = lsn.NeuronSet({"en": [[1, 2, 100], [4, 127]]}, num_layers=2, num_neurons=128, method="test")
    neurons.save_pretrained(root / "neurons-128")
    results = run(
        (root, model_dir, setup[2]),
        "xnli-4bit",
        "--condition",
        "neuron-lora",
        "--neuron_groups",
        "en",
        "--neurons",
        str(root / "neurons-128"),
        "--load_in_4bit",
        "true",
        "--train_fraction",
        "1.0",
    )
    assert set(results) == {"en", "zh", "ar"} and all(0 <= r["accuracy"] <= 1 for r in results.values())
    out = root / "xnli-4bit"
    assert json.loads((out / "lsn_run.json").read_text())["model"]["load_in_4bit"] is True

    quantization = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32)
    base = transformers.AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=3, quantization_config=quantization, device_map="cpu"
    )
    model = peft.PeftModel.from_pretrained(base, out)
    gate = model.base_model.model.model.layers[0].mlp.gate_proj
    assert isinstance(gate.get_base_layer(), bnb.nn.Linear4bit)
    assert gate.lsn_indices["default"].tolist() == [1, 2, 100]
    assert gate.lsn_B["default"].abs().sum() > 0  # trained
