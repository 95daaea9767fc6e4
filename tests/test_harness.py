"""The `lsn` lm-eval model and the eval matrix, offline, on the demo model and a local task the test writes.

The task: an English sentence of the synthetic world, then a choice between the next sentence in
English and the same sentence in German. Every score is compared with lm-eval's own `hf` model on
an independent construction (a copy with gate rows zeroed, a merged adapter, hooks set by hand).
"""

import json
import random
import subprocess
import sys

import peft
import pytest
import torch
import transformers

pytest.importorskip("lm_eval")

import lm_eval  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

import lsn.harness  # noqa: E402, F401  (registers the `lsn` model)
from lsn import NeuronConfig, NeuronSet, intervene, neuron_values, record_activations  # noqa: E402
from lsn.cli import main as lsn_main  # noqa: E402
from lsn.demo.pretrain import demo_lape_neurons, demo_model_path, pretraining_texts  # noqa: E402
from lsn.demo.world import parallel_corpus  # noqa: E402
from lsn.harness.matrix import HarnessMatrix  # noqa: E402

TASK = "lsn_demo_en_vs_de"
DOCS = 40
COMMON = "device=cpu,dtype=float32"


def write_task(directory, n=DOCS, seed=7):
    """A multiple-choice lm-eval task over local JSON lines: continue in English (right) or in German."""
    directory.mkdir(parents=True, exist_ok=True)
    pairs = parallel_corpus(n + 1, seed=seed, languages=["en", "de"])
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        choices = [" " + pairs[i + 1]["en"], " " + pairs[i + 1]["de"]]
        label = rng.randrange(2)
        if label:
            choices.reverse()
        rows.append({"context": pairs[i]["en"], "choices": choices, "label": label})
    (directory / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (directory / f"{TASK}.yaml").write_text(
        f"task: {TASK}\n"
        "dataset_path: json\n"
        "dataset_kwargs:\n"
        "  data_files:\n"
        f"    test: {directory / 'docs.jsonl'}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        "doc_to_text: '{{context}}'\n"
        "doc_to_choice: '{{choices}}'\n"
        "doc_to_target: '{{label}}'\n"
        "target_delimiter: ''\n"
        "metric_list:\n"
        "  - metric: acc\n"
        "    aggregation: mean\n"
        "    higher_is_better: true\n",
        encoding="utf-8",
    )
    return directory


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    return write_task(tmp_path_factory.mktemp("harness-task"))


@pytest.fixture(scope="module")
def task_manager(task_dir):
    return TaskManager(include_path=str(task_dir))


@pytest.fixture(scope="module")
def neurons():
    return demo_lape_neurons()


def score(model, model_args, task_manager):
    """(accuracy, per-document log-likelihoods of every choice) of one lm-eval run."""
    out = lm_eval.simple_evaluate(
        model=model, model_args=model_args, tasks=[TASK], task_manager=task_manager, batch_size=8, log_samples=True
    )
    samples = sorted(out["samples"][TASK], key=lambda s: s["doc_id"])
    assert len(samples) == DOCS
    lls = torch.tensor([[r[0][0] for r in s["resps"]] for s in samples], dtype=torch.float64)
    return out["results"][TASK]["acc,none"], lls


@pytest.fixture(scope="module")
def baseline(task_manager):
    return score("hf", f"pretrained={demo_model_path()},{COMMON}", task_manager)


@pytest.fixture(scope="module")
def en_zeroed_by_weights(tmp_path_factory, neurons, task_manager):
    """lm-eval's `hf` model on a copy whose gate rows of the English neurons are zero: SiLU(0) = 0."""
    model = transformers.AutoModelForCausalLM.from_pretrained(demo_model_path(), dtype=torch.float32)
    per_layer = NeuronSet.from_pretrained(neurons)["en"]
    with torch.no_grad():
        for layer, idx in zip(model.model.layers, per_layer, strict=True):
            layer.mlp.gate_proj.weight[idx] = 0.0
    path = tmp_path_factory.mktemp("gate-zeroed")
    model.save_pretrained(path)
    transformers.AutoTokenizer.from_pretrained(demo_model_path()).save_pretrained(path)
    return score("hf", f"pretrained={path},{COMMON}", task_manager)


def test_import_lsn_does_not_import_lm_eval():
    code = "import sys, lsn, lsn.cli, lsn.demo; sys.exit('lm_eval' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_without_lsn_keys_lsn_scores_exactly_what_hf_scores(baseline, task_manager):
    acc, lls = score("lsn", f"pretrained={demo_model_path()},{COMMON}", task_manager)
    assert acc == baseline[0]
    assert torch.equal(lls, baseline[1])


def test_zeroed_group_equals_hf_on_a_copy_with_zeroed_gate_rows(baseline, en_zeroed_by_weights, neurons, task_manager):
    acc, lls = score("lsn", f"pretrained={demo_model_path()},{COMMON},neurons={neurons},groups=en", task_manager)
    assert acc == en_zeroed_by_weights[0]
    assert torch.equal(lls, en_zeroed_by_weights[1])
    assert not torch.allclose(lls, baseline[1])  # the intervention did something
    assert acc < baseline[0]  # and the English continuation lost ground


def test_neuron_adapter_through_peft_scores_as_the_merged_model_through_hf(tmp_path, neurons, task_manager):
    torch.manual_seed(0)
    base = transformers.AutoModelForCausalLM.from_pretrained(demo_model_path(), dtype=torch.float32)
    model = peft.get_peft_model(base, NeuronConfig(neurons=str(neurons), groups=["de"], r=4, task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lsn_B" in name:
                param.normal_(0, 0.5)
    model.save_pretrained(tmp_path / "adapter")
    merged = model.merge_and_unload()
    merged.save_pretrained(tmp_path / "merged")
    transformers.AutoTokenizer.from_pretrained(demo_model_path()).save_pretrained(tmp_path / "merged")

    acc, lls = score("lsn", f"pretrained={demo_model_path()},{COMMON},peft={tmp_path / 'adapter'}", task_manager)
    merged_acc, merged_lls = score("hf", f"pretrained={tmp_path / 'merged'},{COMMON}", task_manager)
    base_acc, base_lls = score("hf", f"pretrained={demo_model_path()},{COMMON}", task_manager)
    assert acc == merged_acc
    torch.testing.assert_close(lls, merged_lls, rtol=0, atol=1e-4)  # merged weights round differently
    assert (lls - base_lls).abs().max() > 0.1  # the adapter changed the scores


def test_steering_equals_the_two_interventions_set_by_hand(tmp_path, neurons, task_manager):
    model, tokenizer = (
        transformers.AutoModelForCausalLM.from_pretrained(demo_model_path(), dtype=torch.float32),
        transformers.AutoTokenizer.from_pretrained(demo_model_path()),
    )
    stats = record_activations(
        model,
        pretraining_texts(30),
        tokenizer=tokenizer,
        seq_len=64,
        batch_size=8,
        max_tokens=1024,
        record_sums=True,
        progress=False,
    )
    stats.save(tmp_path / "stats.safetensors")
    neuron_set = NeuronSet.from_pretrained(neurons)

    steered = score(
        "lsn",
        f"pretrained={demo_model_path()},{COMMON},neurons={neurons},stats={tmp_path / 'stats.safetensors'},"
        "steer_source=en,steer_target=de,strength=2",
        task_manager,
    )
    by_hand = HFLM(pretrained=model.eval(), tokenizer=tokenizer, batch_size=8)
    with (
        intervene(model, neuron_set, "zero", groups="en"),
        intervene(
            model, neuron_set, "add", neuron_values(stats, "de", relative_to="others", strength=2.0), groups="de"
        ),
    ):
        expected = score(by_hand, None, task_manager)
    assert steered[0] == expected[0]
    assert torch.equal(steered[1], expected[1])


@pytest.mark.parametrize(
    "extra, message",
    [
        ("neuron=x", r"Unknown `model_args` key\(s\) for model `lsn`: `neuron` \(did you mean `neurons`\?\)"),
        ("{neurons},groups=xx", r"`groups=xx`: group\(s\) \['xx'\] not in the neuron set"),
        ("neurons=/no/such/neurons,groups=en", r"`neurons=/no/such/neurons`: no such directory"),
        ("{neurons},groups=en,mode=scale", r"`mode=scale` needs `value=`"),
        ("{neurons},groups=en,mode=zero,value=3", r"`mode=zero` takes no `value`"),
        ("{neurons},mode=boost", r"`mode=boost`: choose one of zero, set, scale, add"),
        ("groups=en", r"add `neurons=`"),
        ("{neurons},steer_source=en,steer_target=de", r"Steering needs `stats=`"),
        ("{neurons},steer_source=en,steer_target=de,groups=en", r"drop \['groups'\]"),
        ("peft=/no/such/adapter", r"`peft=/no/such/adapter`: no adapter_config.json"),
    ],
)
def test_bad_model_args_fail_before_any_model_or_task_loads(extra, message, neurons, task_manager, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model started loading")

    monkeypatch.setattr(HFLM, "_get_config", no_loading)
    monkeypatch.setattr(HFLM, "_create_model", no_loading)
    monkeypatch.setattr(TaskManager, "load", no_loading)
    model_args = f"pretrained={demo_model_path()},{COMMON}," + extra.format(neurons=f"neurons={neurons}")
    with pytest.raises(ValueError, match=message):
        lm_eval.simple_evaluate(model="lsn", model_args=model_args, tasks=[TASK], task_manager=task_manager)


def test_eval_matrix_writes_its_table_and_heatmap(tmp_path, task_dir, neurons, baseline, en_zeroed_by_weights):
    model_args = f"pretrained={demo_model_path()},{COMMON},neurons={neurons}"
    argv = ["eval-matrix", "--model_args", model_args, "--tasks", TASK, "--include_path", str(task_dir)]
    argv += ["--groups", "en,de", "--random-control", "0", "--batch-size", "8", "--output", str(tmp_path)]
    assert lsn_main(argv) == 0
    matrix = HarnessMatrix.load(tmp_path)
    assert matrix.rows == ["en", "de", "random:en", "random:de"] and matrix.columns == [f"{TASK}/acc"]
    assert matrix.baseline.tolist() == [baseline[0]]
    assert matrix.values[0].tolist() == [en_zeroed_by_weights[0]]
    en, de = NeuronSet.from_pretrained(neurons).subset(["en", "de"]).counts_per_layer().sum(1).tolist()
    assert matrix.neurons == {"en": en, "de": de, "random:en": en, "random:de": de}
    lines = (tmp_path / "harness_matrix.csv").read_text().splitlines()
    assert len(lines) == 1 + 4 and lines[1].startswith(f"en,{TASK}/acc,{en},")
    assert (tmp_path / "harness_matrix.md").read_text().startswith("| deactivated")
    assert (tmp_path / "harness_matrix.png").read_bytes()[:4] == b"\x89PNG"


def test_python_m_lsn_harness_is_lm_evals_cli_with_lsn_registered(tmp_path, task_dir, neurons, en_zeroed_by_weights):
    # lm-eval's CLI passes --device itself (a `device=` in model_args would clash with it, as for `hf`)
    model_args = f"pretrained={demo_model_path()},dtype=float32,neurons={neurons},groups=en"
    command = [sys.executable, "-m", "lsn.harness", "run", "--model", "lsn", "--model_args", model_args]
    command += ["--tasks", TASK, "--include_path", str(task_dir), "--output_path", str(tmp_path)]
    command += ["--batch_size", "8", "--device", "cpu"]
    subprocess.run(command, check=True, capture_output=True)
    (result,) = tmp_path.rglob("results_*.json")
    assert json.loads(result.read_text())["results"][TASK]["acc,none"] == en_zeroed_by_weights[0]
