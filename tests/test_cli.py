"""The `lsn` command: record -> select -> show on local files, and one-line errors."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import make_tiny_model

import lsn
from lsn.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_tokenizer):
    path = tmp_path_factory.mktemp("tiny-llama")
    make_tiny_model("llama", vocab_size=len(tiny_tokenizer)).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def test_record_select_show(tmp_path, model_dir, multilingual_texts, tiny_tokenizer, capsys):
    args = ["record", "--model", str(model_dir), "--seq-len", "16", "--batch-size", "4", "--record-sums"]
    for lang in ("en", "ru", "zh"):
        if lang == "zh":
            path = tmp_path / "zh.jsonl"
            path.write_text(
                "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in multilingual_texts[lang])
            )
        else:
            path = tmp_path / f"{lang}.txt"
            path.write_text("\n".join(multilingual_texts[lang]) + "\n")
        args += ["--corpus", f"{lang}={path}"]
    stats_path = tmp_path / "stats.safetensors"
    assert main(args + ["--output", str(stats_path)]) == 0

    stats = lsn.ActivationStats.load(stats_path)
    model = make_tiny_model("llama", vocab_size=len(tiny_tokenizer))
    expected = lsn.record_activations(
        model,
        {g: multilingual_texts[g] for g in ("en", "ru", "zh")},
        tokenizer=tiny_tokenizer,
        seq_len=16,
        batch_size=4,
        progress=False,
    )
    assert torch.equal(stats.counts, expected.counts)
    assert stats.sums is not None and stats.metadata["corpora"]["en"].endswith("en.txt")

    out = tmp_path / "neurons"
    assert main(["select", str(stats_path), "--top-rate", "0.1", "--output", str(out), "--random-control", "3"]) == 0
    neurons = lsn.NeuronSet.from_pretrained(out)
    assert neurons == lsn.select_lape(stats, top_rate=0.1)
    assert (out / "README.md").read_text().count("lape") >= 1
    control = lsn.NeuronSet.load(tmp_path / "neurons-random")
    assert torch.equal(control.counts_per_layer(), neurons.counts_per_layer())

    json_out = tmp_path / "spec.json"
    assert (
        main(
            [
                "select",
                str(stats_path),
                "--method",
                "specialized",
                "--k",
                "0.5",
                "--groups",
                "en,zh",
                "--output",
                str(json_out),
            ]
        )
        == 0
    )
    assert lsn.NeuronSet.load(json_out) == lsn.select_specialized(stats.select_groups(["en", "zh"]), 0.5)

    capsys.readouterr()
    assert main(["show", str(out), "--plots", str(tmp_path / "plots")]) == 0
    shown = capsys.readouterr().out
    assert "union" in shown and "en" in shown
    for name in ("neurons_per_layer.png", "overlap.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:4] == b"\x89PNG"
    assert main(["show", str(stats_path)]) == 0
    assert "tokens" in capsys.readouterr().out


def test_two_pass_pooled_percentile_selection(tmp_path, model_dir, multilingual_texts, tiny_tokenizer):
    """record --quantile, record --threshold-from, select --above threshold, as in Python."""
    corpus_args, texts = [], {}
    for lang in ("en", "de", "ar"):
        path = tmp_path / f"{lang}.txt"
        path.write_text("\n".join(multilingual_texts[lang]) + "\n")
        corpus_args += ["--corpus", f"{lang}={path}"]
        texts[lang] = multilingual_texts[lang]
    common = ["record", "--model", str(model_dir), "--seq-len", "16", "--batch-size", "2", *corpus_args]
    first, second = tmp_path / "pass1.safetensors", tmp_path / "pass2.safetensors"
    assert main(common + ["--quantile", "0.9", "--output", str(first)]) == 0
    assert main(common + ["--threshold-from", str(first), "--output", str(second)]) == 0
    out = tmp_path / "pooled.json"
    assert (
        main(
            [
                "select",
                str(second),
                "--method",
                "probability",
                "--above",
                "threshold",
                "--top-k",
                "5",
                "--output",
                str(out),
            ]
        )
        == 0
    )

    model = make_tiny_model("llama", vocab_size=len(tiny_tokenizer))
    kwargs = dict(tokenizer=tiny_tokenizer, seq_len=16, batch_size=2, progress=False)
    pooled = lsn.record_activations(model, texts, quantile=0.9, **kwargs).pooled_quantile()
    stats = lsn.record_activations(model, texts, threshold=pooled, **kwargs)
    assert torch.equal(lsn.ActivationStats.load(second).above_threshold, stats.above_threshold)
    neurons = lsn.NeuronSet.load(out)
    assert neurons.parameters["threshold"]["pooled_quantile"] == 0.9
    expected = lsn.select_by_probability(stats, above="threshold", top_k=5)
    assert all(torch.equal(a, b) for g in texts for a, b in zip(neurons[g], expected[g], strict=True))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["select", "missing.safetensors", "--output", "x.json"], "No statistics file"),
        (["show", "does/not/exist.json"], "No neuron set"),
    ],
)
def test_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith(f"lsn {argv[0]}: error:")


def test_threshold_from_stats_without_quantiles_fails_before_the_model_loads(tmp_path, capsys):
    stats = tmp_path / "pass1.safetensors"
    lsn.ActivationStats(counts=torch.ones(2, 4, 1, dtype=torch.long), tokens=torch.tensor([3]), groups=["en"]).save(
        stats
    )
    text = tmp_path / "en.txt"
    text.write_text("hello\n")
    argv = [
        "record",
        "--model",
        str(tmp_path / "no-such-model"),
        "--corpus",
        f"en={text}",
        "--threshold-from",
        str(stats),
        "--output",
        str(tmp_path / "pass2.safetensors"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "no quantile estimates" in err and "no-such-model" not in err and "\n" not in err


def test_corrupt_stats_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "stats.safetensors"
    bad.write_bytes(b"\x00" * 10)
    assert main(["select", str(bad), "--output", str(tmp_path / "n.json")]) == 2
    err = capsys.readouterr().err
    assert "not a readable safetensors file" in err and not (tmp_path / "n.json").exists()


def test_help_is_complete():
    result = subprocess.run([sys.executable, "-m", "lsn.cli", "record", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for flag in ("--model", "--corpus", "--seq-len", "--max-tokens", "--checkpoint", "--quantile", "--output"):
        assert flag in result.stdout


def test_nll_matrix_and_generate_commands(tmp_path, model_dir, multilingual_texts, tiny_tokenizer, capsys):
    corpus_args = []
    for lang in ("en", "hi"):
        path = tmp_path / f"{lang}.txt"
        path.write_text("\n".join(multilingual_texts[lang]) + "\n")
        corpus_args += ["--corpus", f"{lang}={path}"]
    neurons = lsn.NeuronSet({"en": [[1, 2], [3]], "hi": [[4], [5, 6, 7]]}, num_layers=2, num_neurons=64, method="test")
    neurons.save(tmp_path / "n.json")
    out = tmp_path / "nll"
    assert (
        main(
            [
                "nll-matrix",
                "--model",
                str(model_dir),
                "--neurons",
                str(tmp_path / "n.json"),
                *corpus_args,
                "--seq-len",
                "16",
                "--max-tokens",
                "64",
                "--random-control",
                "0",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    matrix = lsn.NLLMatrix.load(out)
    assert matrix.rows == ["en", "hi", "random:en", "random:hi"] and matrix.columns == ["en", "hi"]
    assert matrix.tokens == [64 - 4, 64 - 4]  # 4 windows of 16 tokens, 15 predictions each
    assert (out / "nll_matrix.png").exists()
    assert "| en (3) |" in capsys.readouterr().out

    assert (
        main(
            [
                "generate",
                "--model",
                str(model_dir),
                "--neurons",
                str(tmp_path / "n.json"),
                "--steer",
                "hi",
                "--mode",
                "scale",
                "--value",
                "30",
                "--prompt",
                "Anna",
                "--max-new-tokens",
                "4",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "baseline:" in printed and "scale hi:" in printed


def test_load_corpus_sources(tmp_path, monkeypatch):
    from lsn.corpora import load_corpus

    txt = tmp_path / "a.txt"
    txt.write_text("first doc\n\nsecond doc\n")
    assert list(load_corpus(str(txt))) == ["first doc", "second doc"]
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"body": "x"}\n\n{"body": "y"}\n')
    assert list(load_corpus(str(jsonl), text_column="body")) == ["x", "y"]
    with pytest.raises(ValueError, match="line 1: expected a JSON object with a `text` field"):
        list(load_corpus(str(jsonl)))
    with pytest.raises(FileNotFoundError, match="No corpus file"):
        load_corpus(str(tmp_path / "missing.txt"))

    calls = []

    def fake_load_dataset(name, config, split, streaming):
        calls.append((name, config, split, streaming))
        return [{"text": "hub text", "title": "t"}]

    import datasets

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert list(load_corpus("wikimedia/wikipedia:20231101.fr")) == ["hub text"]
    assert list(load_corpus("some/dataset", split="validation")) == ["hub text"]
    assert calls == [("wikimedia/wikipedia", "20231101.fr", "train", True), ("some/dataset", None, "validation", True)]
