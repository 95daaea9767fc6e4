"""Issue 17: what a new user hits first. Each CLI row runs through `lsn.cli.main` (exit code, the one line printed)."""

import os
import subprocess
import sys

import pytest
import torch
from conftest import make_tiny_model

import lsn
from lsn import evaluate as lsn_evaluate
from lsn.cli import main
from lsn.corpora import CorpusFile, corpus_fingerprint, load_corpus

POSITIONS = 32  # the tiny model's context length


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_tokenizer):
    path = tmp_path_factory.mktemp("tiny-llama")
    model = make_tiny_model("llama", vocab_size=len(tiny_tokenizer), max_position_embeddings=POSITIONS)
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def corpus(tmp_path, multilingual_texts):
    """GROUP=FILE arguments for en and ru."""
    args = []
    for lang in ("en", "ru"):
        path = tmp_path / f"{lang}.txt"
        path.write_text("\n".join(multilingual_texts[lang]) + "\n", encoding="utf-8")
        args += ["--corpus", f"{lang}={path}"]
    return args


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if any command loads a model."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr("lsn.arguments.load_model_and_tokenizer", refuse)


def last_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1] if lines else ""


def record_args(model_dir, corpus, output, *extra):
    return ["record", "--model", str(model_dir), *corpus, "--seq-len", "16", "--batch-size", "2", *extra]


# Rows 2 and 12: non-positive sizes are refused by the parser, before anything loads.
@pytest.mark.parametrize("command", ["record", "nll-matrix"])
@pytest.mark.parametrize("flag", ["--seq-len", "--batch-size", "--max-tokens"])
@pytest.mark.parametrize("value", ["0", "-5"])
def test_non_positive_sizes_are_refused(command, flag, value, capsys, no_model_load):
    argv = [command, "--model", "lsn:demo", "--corpus", "en=x.txt", "--output", "out", flag, value]
    if command == "nll-matrix":
        argv += ["--neurons", "n.json"]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert last_error(capsys) == f"lsn {command}: error: argument {flag}: must be a positive integer, got {value}"


def test_nll_matrix_library_refuses_empty_windows(tiny_tokenizer):
    from lsn.measurement import evaluation_batches

    with pytest.raises(ValueError, match="must be positive"):
        evaluation_batches({"en": ["some text"]}, tokenizer=tiny_tokenizer, seq_len=0)


def test_quantile_outside_unit_interval(capsys, no_model_load):
    with pytest.raises(SystemExit):
        main(["record", "--model", "lsn:demo", "--corpus", "en=x.txt", "--output", "o", "--quantile", "90"])
    assert last_error(capsys).endswith("argument --quantile: must lie strictly between 0 and 1, got 90.0")


# Row 3 and the last "Done when" line: a checkpoint is bound to its corpora's content.
def test_checkpoint_refuses_other_corpora_and_resumes_same(
    tmp_path, model_dir, corpus, multilingual_texts, capsys, caplog
):
    ckpt, out = tmp_path / "ckpt", tmp_path / "stats.safetensors"
    args = record_args(model_dir, corpus, out, "--checkpoint", str(ckpt), "--output", str(out))
    assert main(args) == 0
    first = lsn.ActivationStats.load(out)
    capsys.readouterr()

    assert main(args) == 0  # same inputs: the finished checkpoint answers, and says so
    assert f"Resuming from {ckpt} (groups done: en, ru;" in caplog.text  # a warning: shown without -v
    assert torch.equal(lsn.ActivationStats.load(out).counts, first.counts)

    (tmp_path / "en.txt").write_text("\n".join(multilingual_texts["en"][:2]) + "\n", encoding="utf-8")
    assert main(args) == 2  # same path, other content
    line = last_error(capsys)
    assert line.startswith("lsn record: error: Checkpoint ") and "(differ: corpora)" in line
    assert f"delete `{ckpt}`" in line


def test_checkpoint_refuses_other_seq_len(tmp_path, model_dir, corpus, capsys):
    ckpt, out = tmp_path / "ckpt", tmp_path / "s.safetensors"
    assert main(record_args(model_dir, corpus, out, "--checkpoint", str(ckpt), "--output", str(out))) == 0
    other = record_args(model_dir, corpus, out, "--checkpoint", str(ckpt), "--output", str(out))
    other[other.index("--seq-len") + 1] = "8"
    assert main(other) == 2
    assert "(differ: seq_len)" in last_error(capsys)


def test_corpus_fingerprints_follow_content(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("one\ntwo\n")
    b.write_text("one\ntwo\n")
    os.utime(b, (0, 0))  # another time stamp, same content: same fingerprint but for the name
    assert corpus_fingerprint(CorpusFile(a)).split(":")[2:] == corpus_fingerprint(CorpusFile(b)).split(":")[2:]
    b.write_text("one\nthree\n")
    assert corpus_fingerprint(CorpusFile(a)).split(":")[3] != corpus_fingerprint(CorpusFile(b)).split(":")[3]
    assert corpus_fingerprint(["x", "y"]) == corpus_fingerprint(["x", "y"]) != corpus_fingerprint(["x", "z"])
    assert list(load_corpus(str(a))) == ["one", "two"] == list(load_corpus(str(a)))  # iterable again


# Row 7: Ctrl-C says how to resume.
def test_interrupt_says_how_to_resume(tmp_path, model_dir, corpus, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("lsn.recording.record_activations", interrupted)
    ckpt, out = tmp_path / "ckpt", tmp_path / "s.safetensors"
    assert main(record_args(model_dir, corpus, out, "--checkpoint", str(ckpt), "--output", str(out))) == 130
    assert last_error(capsys) == f"lsn record: interrupted; run the same command to resume from `{ckpt}`."


# Row 9: a window longer than the model's context.
def test_seq_len_beyond_context_length(tmp_path, model_dir, corpus, capsys):
    args = record_args(model_dir, corpus, tmp_path / "s", "--output", str(tmp_path / "s.safetensors"))
    args[args.index("--seq-len") + 1] = str(POSITIONS + 1)
    assert main(args) == 2
    assert last_error(capsys) == (
        f"lsn record: error: --seq-len {POSITIONS + 1} exceeds the context length of `{model_dir}` "
        f"({POSITIONS} positions); pass --seq-len {POSITIONS} or less."
    )


# Rows 15 and 18: a missing or mistyped corpus fails at once, before any model loads, and never asks the hub.
@pytest.mark.parametrize("spec", ["en.text", "missing.txt", "./data/en.txt"])
def test_missing_corpus_before_model(spec, capsys, no_model_load):
    assert main(["record", "--model", "lsn:demo", "--corpus", f"en={spec}", "--output", "o.safetensors"]) == 2
    assert last_error(capsys) == f"lsn record: error: No corpus file at `{spec}` (nor is it a hub dataset name)."


def test_nll_matrix_checks_inputs_before_model(tmp_path, capsys, no_model_load):
    neurons = lsn.NeuronSet({"en": [[1], [2]]}, num_layers=2, num_neurons=64)
    neurons.save(tmp_path / "n.json")
    argv = ["nll-matrix", "--model", "lsn:demo", "--neurons", str(tmp_path / "n.json"), "--output", "o"]
    assert main(argv + ["--corpus", "en=nope.txt"]) == 2
    assert last_error(capsys) == "lsn nll-matrix: error: No corpus file at `nope.txt` (nor is it a hub dataset name)."
    (tmp_path / "en.txt").write_text("hello\n")
    assert main(argv + ["--corpus", f"en={tmp_path / 'en.txt'}", "--groups", "fr"]) == 2
    assert last_error(capsys) == "lsn nll-matrix: error: --groups fr: not in the neuron set (its groups: ['en'])."


# Row 5: a missing local model directory.
def test_missing_model_directory(corpus, capsys):
    assert main(["record", "--model", "./no_such_model", *corpus, "--output", "o.safetensors"]) == 2
    assert last_error(capsys) == "lsn record: error: No model directory at `./no_such_model`."


# Rows 4 and 11: generate's values; messages name CLI flags, checked before the model loads.
@pytest.fixture
def generate_inputs(tmp_path, tiny_tokenizer, multilingual_texts):
    neurons = lsn.NeuronSet({"en": [[1], [2]], "ru": [[3], [4]]}, num_layers=2, num_neurons=64)
    neurons.save(tmp_path / "n.json")
    model = make_tiny_model("llama", vocab_size=len(tiny_tokenizer))
    texts = {g: multilingual_texts[g] for g in ("en", "ru")}
    stats = lsn.record_activations(model, texts, tokenizer=tiny_tokenizer, seq_len=16, progress=False)
    stats.save(tmp_path / "plain.safetensors")
    return ["generate", "--model", "lsn:demo", "--neurons", str(tmp_path / "n.json"), "--prompt", "hi"], tmp_path


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--steer", "en", "--mode", "scale"],
            "--mode scale needs --value (a number), or --stats for per-neuron values.",
        ),
        (["--steer", "en", "--value", "1"], "--mode zero takes no --value; use --mode set to set a constant."),
        (["--steer", "fr"], "--steer fr: not a group of the neuron set (its groups: ['en', 'ru'])."),
        (
            ["--steer", "en", "--mode", "add", "--stats", "{dir}/plain.safetensors", "--value", "4"],
            "--value and --stats both give the values; pass one (--strength scales --stats).",
        ),
        (
            ["--steer", "en", "--mode", "add", "--stats", "{dir}/plain.safetensors", "--strength", "4"],
            "`{dir}/plain.safetensors` holds no activation sums; record it with `lsn record --record-sums`.",
        ),
        (["--steer", "en", "--strength", "4"], "--strength and --relative-to-others apply to values from --stats; "),
    ],
)
def test_generate_messages_name_flags(extra, message, generate_inputs, capsys, no_model_load):
    argv, directory = generate_inputs
    assert main(argv + [a.replace("{dir}", str(directory)) for a in extra]) == 2
    assert last_error(capsys).startswith(f"lsn generate: error: {message.replace('{dir}', str(directory))}")


# Row 13: python -m lsn.evaluate on a wrong directory prints one line.
def test_evaluate_bad_run_is_one_line(tmp_path, capsys):
    assert lsn_evaluate._cli([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"python -m lsn.evaluate: error: `{tmp_path / 'nope'}` is not a finished `lsn.train` run "
        f"({tmp_path / 'nope' / 'lsn_run.json'} is missing)."
    ]


# Row 17: written statistics respect the umask.
def test_files_respect_umask(tmp_path, model_dir, corpus):
    old = os.umask(0o027)
    try:
        out, ckpt = tmp_path / "s.safetensors", tmp_path / "ckpt"
        assert main(record_args(model_dir, corpus, out, "--checkpoint", str(ckpt), "--output", str(out))) == 0
    finally:
        os.umask(old)
    for path in [out, *ckpt.iterdir()]:
        assert path.stat().st_mode & 0o777 == 0o640, path


# Row 19: offline mode named when a hub neuron set is not cached.
def test_offline_show_names_offline_mode(capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert main(["show", "someone/some-neurons"]) == 2
    assert last_error(capsys) == (
        "lsn show: error: No neuron set at `someone/some-neurons`: not a local path, and offline mode is on "
        "(HF_HUB_OFFLINE=1) with no cached copy; unset HF_HUB_OFFLINE to download it."
    )


# Row 10: `import lsn` and `lsn --help` load no heavy module; importing peft afterwards still registers lsn.
def test_import_is_light_and_still_registers_peft():
    code = (
        "import sys, lsn, importlib.util\n"
        "from lsn.cli import build_parser\n"
        "build_parser(select_methods=False).format_help()\n"
        "assert importlib.util.find_spec('peft') is not None\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "import peft\n"
        "from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING\n"
        "assert PEFT_TYPE_TO_CONFIG_MAPPING['LSN'] is lsn.NeuronConfig\n"
        "assert lsn.models.find_neuron_sites is lsn.find_neuron_sites\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_public_names_resolve():
    for name in lsn.__all__:
        assert getattr(lsn, name) is not None
    assert set(lsn.__all__) <= set(dir(lsn))
    with pytest.raises(AttributeError):
        lsn.no_such_name  # noqa: B018


# Row 16: the NLL matrix plot's title fits in a narrow (3-language) figure.
def test_nll_matrix_title_fits(tmp_path, monkeypatch):
    import lsn.plotting
    from lsn.measurement import NLLMatrix

    figures = []
    save = lsn.plotting._save
    monkeypatch.setattr(lsn.plotting, "_save", lambda fig, path: (figures.append(fig), save(fig, path))[1])
    groups = ["en", "fr", "zh"]
    matrix = NLLMatrix(
        groups, groups, torch.ones(3, dtype=torch.float64), torch.rand(3, 3, dtype=torch.float64), [1] * 3
    )
    lsn.plotting.plot_nll_matrix(matrix, tmp_path / "m.png")
    (fig,) = figures
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    title = fig.axes[0].title
    box, page = title.get_window_extent(renderer), fig.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1, (box, page)
    assert "deactivating" in title.get_text()
