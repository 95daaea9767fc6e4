"""The steering evaluation on the demo model (the issue's acceptance figures), its files, and its errors."""

import csv
import json

import pytest
from conftest import make_tiny_model, padded_batches

from lsn import NeuronSet, record_activations
from lsn.demo.pretrain import demo_lape_neurons, heldout_texts, load_demo_model, pretraining_texts
from lsn.demo.world import LANGUAGES
from lsn.diffmean import record_residual_means
from lsn.language_id import LanguageIdentifier
from lsn.steering_eval import SteeringReport, steering_eval

PAIRS = [("en", "de"), ("de", "en"), ("en", "ru"), ("es", "zh"), ("ru", "es"), ("en", "hi")]


@pytest.fixture(scope="module")
def demo():
    model, tokenizer = load_demo_model()
    neurons = NeuronSet.from_pretrained(demo_lape_neurons())
    texts = pretraining_texts(101)
    kwargs = dict(tokenizer=tokenizer, seq_len=128, batch_size=16, max_tokens=5000, progress=False)
    stats = record_activations(model, texts, record_sums=True, **kwargs)
    means = record_residual_means(model, texts, **kwargs)
    held = heldout_texts(20)
    prompts = {s: [" ".join(doc.split()[:4]) for doc in held[s][:20]] for s in dict.fromkeys(s for s, _ in PAIRS)}
    return model, tokenizer, neurons, stats, means, prompts


def test_demo_steering_acceptance(demo, tmp_path):
    model, tokenizer, neurons, stats, means, prompts = demo
    report = steering_eval(
        model,
        tokenizer,
        prompts,
        neurons=neurons,
        stats=stats,
        pairs=PAIRS,
        strengths=(2.0, 4.0, 8.0),
        methods=("neurons", "random", "diffmean"),
        identifier=LanguageIdentifier("langid", languages=LANGUAGES),
        max_new_tokens=12,
        residual_means=means,
        judge=lambda prompt, continuation: 2.0 if continuation.strip() else 0.0,
        progress=False,
    )
    summary = report.summary()
    assert summary["neurons"] >= 0.8, report.to_markdown()
    assert summary["random"] <= 0.35, report.to_markdown()
    assert summary["none"] <= 0.1, report.to_markdown()
    assert len(report.rows) == len(PAIRS) * (1 + 3 * 3)
    assert all(r["n"] == 20 for r in report.rows)
    # success is the identifier's share, recomputed from the stored continuations
    lid = LanguageIdentifier("langid", languages=LANGUAGES)
    for row, texts in zip(report.rows[:8], report.generations[:8], strict=True):
        assert row["success"] == sum(p == row["target"] for p in lid.predict(texts)) / 20
        a, b = row["success"], row["relevance"] / 2
        assert row["score"] == pytest.approx(2 * a * b / (a + b) if a + b else 0.0)

    files = report.save(tmp_path)
    assert [f.name for f in files] == ["steering.json", "steering.csv", "steering_heatmap.png", "steering_strength.png"]
    assert all(f.stat().st_size > 0 for f in files)
    saved = json.loads((tmp_path / "steering.json").read_text(encoding="utf-8"))
    assert saved["rows"] == report.rows and len(saved["generations"]) == len(report.rows)
    with (tmp_path / "steering.csv").open(encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(report.rows)
    assert [float(r["success"]) for r in table] == [r["success"] for r in report.rows]
    again = SteeringReport(saved["rows"])
    assert again.summary() == summary
    print(report.to_markdown())


def test_bad_input_fails_before_generation(tmp_path):
    model = make_tiny_model("llama")
    stats = record_activations(model, {g: padded_batches(1, i) for i, g in enumerate(("en", "de", "xx"))},
                               record_sums=True, progress=False)  # fmt: skip
    neurons = NeuronSet({"en": [[1], [2]], "de": [[], []], "xx": [[3], [4]]}, num_layers=2, num_neurons=64)

    def never(*args, **kwargs):
        raise AssertionError("generation ran")

    model.generate = never
    prompts = {"en": ["a b"], "xx": ["c d"]}
    with pytest.raises(ValueError, match="`de` has no neurons"):
        steering_eval(model, None, prompts, neurons=neurons, stats=stats, pairs=[("en", "de")])
    with pytest.raises(ValueError, match=r"knows no language matching \['xx'\]"):
        steering_eval(model, None, prompts, neurons=neurons, stats=stats, pairs=[("xx", "en")])
    with pytest.raises(ValueError, match="cannot answer"):
        lid = LanguageIdentifier("langid", languages=["en", "de"])
        steering_eval(model, None, prompts, neurons=neurons, stats=stats, pairs=[("xx", "en")], identifier=lid)
    with pytest.raises(FileNotFoundError, match="No fastText model"):
        steering_eval(model, None, prompts, neurons=neurons, stats=stats, pairs=[("en", "xx")],
                      identifier=LanguageIdentifier("fasttext", model_path=tmp_path / "lid.176.bin"))  # fmt: skip
    with pytest.raises(ValueError, match="residual_means"):
        steering_eval(model, None, prompts, neurons=neurons, stats=stats, pairs=[("en", "de")], methods=["diffmean"])
    with pytest.raises(ValueError, match="no prompts"):
        steering_eval(model, None, prompts, neurons=neurons, stats=stats, pairs=[("de", "en")])


def test_steer_eval_cli_equals_python(demo, tmp_path, capsys):
    """`lsn steer-eval` on the demo model: the same rows as `steering_eval`, and its files."""
    from lsn.cli import main

    model, tokenizer, neurons, stats, _, prompts = demo
    neurons.save_pretrained(tmp_path / "neurons")
    stats.save(tmp_path / "stats.safetensors")
    for lang in ("en", "es"):
        (tmp_path / f"{lang}.txt").write_text("\n".join(prompts[lang][:3]) + "\n", encoding="utf-8")
    argv = ["steer-eval", "--model", "lsn:demo", "--neurons", str(tmp_path / "neurons")]
    argv += ["--stats", str(tmp_path / "stats.safetensors"), "--prompts", f"en={tmp_path / 'en.txt'}"]
    argv += ["--prompts", f"es={tmp_path / 'es.txt'}", "--pairs", "en-de,es-zh", "--strengths", "4"]
    argv += ["--max-new-tokens", "6", "--output", str(tmp_path / "out")]
    assert main(argv) == 0
    saved = json.loads((tmp_path / "out" / "steering.json").read_text())
    expected = steering_eval(
        model,
        tokenizer,
        {lang: prompts[lang][:3] for lang in ("en", "es")},
        neurons=neurons,
        stats=stats,
        pairs=[("en", "de"), ("es", "zh")],
        strengths=[4.0],
        identifier=LanguageIdentifier("langid", languages=sorted(set(neurons.groups) | {"en", "es"})),
        max_new_tokens=6,
        progress=False,
    )
    assert [(r["method"], r["source"], r["target"], r["success"]) for r in saved["rows"]] == [
        (r["method"], r["source"], r["target"], r["success"]) for r in expected.rows
    ]
    assert (tmp_path / "out" / "steering_heatmap.png").is_file()
    capsys.readouterr()
    assert main([*argv[:-2], "--pairs", "en-xx", "--output", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lsn steer-eval: error:") and "['xx']" in err
