"""The `lsn` command: `record`, `select`, `show`, `nll-matrix`, `generate`, `eval-matrix`, `import-reference`.

    lsn record --model meta-llama/Llama-3.1-8B --corpus en=wikimedia/wikipedia:20231101.en \\
        --corpus fr=wikimedia/wikipedia:20231101.fr --max-tokens 100000000 --output stats.safetensors
    lsn select stats.safetensors --method lape --output neurons/
    lsn show neurons/ --plots plots/
    lsn nll-matrix --model meta-llama/Llama-3.1-8B --neurons neurons/ --corpus en=en_test.txt \\
        --corpus fr=fr_test.txt --random-control 0 --output nll/
    lsn generate --model meta-llama/Llama-3.1-8B --neurons neurons/ --steer fr --mode scale --value 2 \\
        --prompt "The weather today"
    lsn eval-matrix --model_args pretrained=meta-llama/Llama-3.1-8B,neurons=neurons/ \\
        --tasks xnli_en,xnli_fr --random-control 0 --output eval/      # needs lsn[harness]

`lsn record` runs under `accelerate launch` too; each process records its own shard.
Errors are one line (`LSN_DEBUG=1` shows the traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .neuron_set import NeuronSet

logger = logging.getLogger("lsn")

__all__ = ["main", "build_parser"]


def _names(text: str | None) -> list[str] | None:
    """A comma-separated list flag (`--groups en,fr`) as its non-empty items; `None` when not given."""
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _corpus_arg(value: str) -> tuple[str, str]:
    group, sep, spec = value.partition("=")
    if not sep or not group or not spec:
        raise argparse.ArgumentTypeError(f"expected GROUP=SOURCE (e.g. en=wiki_en.txt), got {value!r}")
    return group, spec


def _positive_int(value: str) -> int:
    """argparse type: an integer >= 1 (a zero or negative window or batch would hang or mean nothing)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {number}")
    return number


def _fraction(value: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {value!r}") from None
    if not 0 < number < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {number}")
    return number


def _add_model_args(
    parser: argparse.ArgumentParser, help: str = "hub id or local path of a transformers model"
) -> None:
    """The flags of `lsn.arguments.ModelArguments`, shared by every command that loads a model."""
    parser.add_argument("--model", required=True, help=f"{help}; `lsn:demo` is the embedded tiny model")
    parser.add_argument("--revision", default=None, help="model revision (branch, tag or commit)")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="weights dtype (default: the checkpoint's)",
    )
    parser.add_argument("--load-in-4bit", action="store_true", help="load the model in 4-bit NF4 (bitsandbytes)")
    parser.add_argument("--load-in-8bit", action="store_true", help="load the model in 8-bit (bitsandbytes)")


def _option_type(fn, name: str):
    """(argparse type, choices) of a selection function's keyword parameter, from its annotation."""
    import typing

    hint = typing.get_type_hints(fn).get(name, str)
    candidates = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_origin(hint) else [hint]
    if typing.get_origin(hint) is typing.Literal:
        candidates = [hint]
    if literal := next((a for a in candidates if typing.get_origin(a) is typing.Literal), None):
        return str, list(typing.get_args(literal))
    simple = next((a for a in candidates if a in (int, float, str, bool)), str)
    if simple is bool:
        return (lambda v: v.lower() in ("1", "true", "yes")), None
    return simple, None


def _add_select_options(sel: argparse.ArgumentParser) -> dict[str, list[str]]:
    """One argument group per registered selection method, built from the registry; returns method -> options."""
    import inspect

    from .selection import selection_methods

    flags: dict[str, list[str]] = {}
    seen: set[str] = set()
    for method in selection_methods().values():
        group = sel.add_argument_group(f"--method {method.name}", method.description)
        defaults = inspect.signature(method.fn).parameters
        flags[method.name] = list(method.options)
        for name, text in method.options.items():
            if name in seen:  # the same option name in two methods: one flag serves both
                continue
            seen.add(name)
            kind, choices = _option_type(method.fn, name)
            default = defaults[name].default
            if default is inspect.Parameter.empty:
                text = f"{text} (required)"
            group.add_argument(
                f"--{name.replace('_', '-')}",
                dest=f"option_{name}",
                type=kind,
                choices=choices,
                default=argparse.SUPPRESS,
                metavar=None if choices else name.upper(),
                help=text if "default" in text else f"{text} (default: {default})",
            )
    return flags


def build_parser(select_methods: bool = True) -> argparse.ArgumentParser:
    """The `lsn` parser; `select_methods=False` leaves out `lsn select`'s per-method flags, whose registry imports
    torch, so `lsn --help` and the other commands start fast."""
    parser = argparse.ArgumentParser(prog="lsn", description="Find and use the language-specific neurons of LLMs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rec = commands.add_parser(
        "record",
        help="record activation statistics over corpora",
        description="Count how often each FFN neuron fires on each corpus group.",
    )
    _add_model_args(rec)
    rec.add_argument(
        "--corpus",
        action="append",
        type=_corpus_arg,
        required=True,
        metavar="GROUP=SOURCE",
        help="a group and its text: a .txt file (a document per line), a .jsonl file, or a hub "
        "dataset NAME[:CONFIG] (streamed), e.g. fr=wikimedia/wikipedia:20231101.fr; repeat per group",
    )
    rec.add_argument(
        "--text-column", default="text", help="text field of .jsonl files and hub datasets (default: text)"
    )
    rec.add_argument("--split", default="train", help="split of hub datasets (default: train)")
    rec.add_argument("--seq-len", type=_positive_int, default=512, help="packed window length in tokens (default: 512)")
    rec.add_argument("--batch-size", type=_positive_int, default=8, help="windows per forward pass (default: 8)")
    rec.add_argument("--max-tokens", type=_positive_int, default=None, help="tokens per group at most (default: all)")
    rec.add_argument("--record-sums", action="store_true", help="also sum activations (for mean-value interventions)")
    rec.add_argument(
        "--quantile",
        type=_fraction,
        default=None,
        help="also estimate this pre-activation quantile per batch (0.9 for Mondal et al.)",
    )
    rec.add_argument(
        "--threshold-from",
        default=None,
        metavar="STATS",
        help="also count tokens above each neuron's quantile pooled over all groups of STATS "
        "(a first pass of this model recorded with --quantile); select with --above threshold",
    )
    rec.add_argument(
        "--per-group-threshold",
        action="store_true",
        help="with --threshold-from: count each group against its own quantile in STATS (Mondal et al.'s "
        "second pass); select with --score faithful",
    )
    rec.add_argument(
        "--quantile-method",
        default="linear",
        choices=["linear", "nearest"],
        help="per-batch quantile: linear interpolation as torch.quantile, or nearest rank (default: linear)",
    )
    rec.add_argument(
        "--lid-filter",
        default=None,
        choices=["langid", "fasttext"],
        help="keep only the texts a language identifier assigns to their group (groups named by language "
        "codes, e.g. en, de, zh); langid works offline, fasttext needs --lid-model",
    )
    rec.add_argument("--lid-model", default=None, metavar="PATH", help="fastText model file for --lid-filter")
    rec.add_argument("--checkpoint", default=None, help="directory for resumable progress")
    rec.add_argument("--checkpoint-every", type=_positive_int, default=100, help="batches between saves (default: 100)")
    rec.add_argument("--output", required=True, help="where to write the statistics (.safetensors)")

    sel = commands.add_parser(
        "select",
        help="select neurons from recorded statistics",
        description="Select neurons with LAPE, activation-probability scores, "
        "Neuron Specialization, or a random control.",
    )
    sel.add_argument("stats", help="statistics file written by `lsn record`")
    sel.add_argument("--groups", default=None, help="comma-separated groups to use (default: all)")
    if select_methods:
        from .selection import selection_methods

        sel.add_argument(
            "--method",
            default="lape",
            choices=list(selection_methods()),
            help="selection method; each method's options are listed below (default: lape)",
        )
        sel.set_defaults(method_options=_add_select_options(sel))
    sel.add_argument(
        "--random-control",
        type=int,
        default=None,
        metavar="SEED",
        help="also write a random set with the same counts per layer (seeded)",
    )
    sel.add_argument(
        "--output",
        required=True,
        help="a .json file, or a directory (written with save_pretrained: neurons.json + model card)",
    )
    sel.add_argument("--push-to-hub", default=None, metavar="REPO_ID", help="also upload the set to this hub repo")

    nll = commands.add_parser(
        "nll-matrix",
        help="deactivate each group's neurons; NLL on every group's text",
        description="The validation experiment of Tang et al.: row i deactivates group i's "
        "neurons, column j is the mean token NLL on group j's held-out text.",
    )
    _add_model_args(nll, "hub id or local path of a causal LM")
    nll.add_argument("--neurons", required=True, help="a neuron set (.json, directory or hub id)")
    nll.add_argument(
        "--corpus",
        action="append",
        type=_corpus_arg,
        required=True,
        metavar="GROUP=SOURCE",
        help="held-out text per group (as for `lsn record`); repeat per group",
    )
    nll.add_argument("--groups", default=None, help="comma-separated groups to deactivate (default: all in the set)")
    nll.add_argument("--text-column", default="text", help="text field of .jsonl files and hub datasets")
    nll.add_argument("--split", default="test", help="split of hub datasets (default: test)")
    nll.add_argument("--seq-len", type=_positive_int, default=512, help="packed window length (default: 512)")
    nll.add_argument("--batch-size", type=_positive_int, default=8, help="windows per forward pass (default: 8)")
    nll.add_argument("--max-tokens", type=_positive_int, default=None, help="evaluation tokens per group at most")
    nll.add_argument(
        "--random-control",
        type=int,
        default=None,
        metavar="SEED",
        help="add a row of random neurons (same count per layer) per group",
    )
    nll.add_argument("--output", required=True, help="directory for nll_matrix.{json,csv,png}")

    gen = commands.add_parser(
        "generate",
        help="generate with a group's neurons deactivated, amplified or steered",
        description="Print the baseline continuation and the one under the intervention.",
    )
    _add_model_args(gen, "hub id or local path of a causal LM")
    gen.add_argument("--neurons", required=True, help="a neuron set (.json, directory or hub id)")
    gen.add_argument("--steer", required=True, metavar="GROUP", help="the group whose neurons are changed")
    gen.add_argument(
        "--mode",
        default="zero",
        choices=["zero", "set", "scale", "add"],
        help="zero: deactivate; set / scale / add: set to, multiply by or add --value, or with --stats the "
        "group's mean activation times --strength (default: zero)",
    )
    gen.add_argument("--value", type=float, default=None, help="the constant or factor for set / scale / add")
    gen.add_argument(
        "--stats", default=None, help="statistics recorded with --record-sums: per-neuron values for set / add"
    )
    gen.add_argument("--strength", type=float, default=1.0, help="with --stats: multiply the values (default: 1)")
    gen.add_argument("--relative-to-others", action="store_true", help="with --stats: mean(group) - mean(other groups)")
    gen.add_argument("--prompt", action="append", required=True, help="a prompt; repeat for several")
    gen.add_argument("--max-new-tokens", type=_positive_int, default=40, help="tokens to generate (default: 40)")

    show = commands.add_parser(
        "show",
        help="summarise a neuron set or statistics file, and plot it",
        description="Print a summary table; for a neuron set, also draw its plots.",
    )
    show.add_argument("path", help="a neuron set (.json, directory or hub id) or statistics (.safetensors)")
    show.add_argument("--plots", default=None, help="directory for the PNG plots")
    _add_import_reference_parser(commands)
    _add_eval_matrix_parser(commands)
    _add_steer_eval_parser(commands)
    return parser


def _load(args: argparse.Namespace, device=None):
    """The command's model and tokenizer through the shared loader (`lsn.arguments.load_model_and_tokenizer`)."""
    from .arguments import ModelArguments, load_model_and_tokenizer

    model_args = ModelArguments(args.model, args.revision, args.dtype, args.load_in_4bit, args.load_in_8bit)
    return load_model_and_tokenizer(model_args, device=device)


def _corpora(args: argparse.Namespace) -> dict:
    """The --corpus sources, opened (files checked, hub datasets resolved) before any model loads."""
    from .corpora import load_corpus

    corpora = {}
    for group, spec in args.corpus:
        if group in corpora:
            raise ValueError(f"Group `{group}` is given twice in --corpus.")
        corpora[group] = load_corpus(spec, text_column=args.text_column, split=args.split)
    return corpora


def _check_seq_len(args: argparse.Namespace) -> None:
    """--seq-len within the model's context length, read from its config before the weights load."""
    from transformers import AutoConfig

    from .arguments import resolve_model_path

    config = AutoConfig.from_pretrained(resolve_model_path(args.model), revision=args.revision)
    config = getattr(config, "text_config", None) or config
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if isinstance(positions, int) and args.seq_len > positions:
        raise ValueError(
            f"--seq-len {args.seq_len} exceeds the context length of `{args.model}` ({positions} positions); "
            f"pass --seq-len {positions} or less."
        )


def _record(args: argparse.Namespace) -> None:
    import torch
    from accelerate import PartialState

    from .recording import record_activations
    from .stats import ActivationStats

    threshold = None
    if args.per_group_threshold and not args.threshold_from:
        raise ValueError("--per-group-threshold needs --threshold-from STATS (a first pass recorded with --quantile).")
    if args.threshold_from:  # before the model loads: a bad first pass fails at once
        first_pass = ActivationStats.load(args.threshold_from)
        if args.per_group_threshold:  # each group its own, matched by name
            threshold = first_pass.select_groups([g for g, _ in args.corpus]).group_quantiles()
        else:
            threshold = first_pass.pooled_quantile()
    corpora = _corpora(args)
    if args.lid_filter:
        from .language_id import LanguageFilter, LanguageIdentifier

        identifier = LanguageIdentifier(args.lid_filter, languages=list(corpora), model_path=args.lid_model)
        corpora = {group: LanguageFilter(texts, group, identifier) for group, texts in corpora.items()}
    elif args.lid_model:
        raise ValueError("--lid-model is the model of --lid-filter fasttext; pass --lid-filter too.")
    _check_seq_len(args)
    state = PartialState(cpu=not torch.cuda.is_available())
    model, tokenizer = _load(args, device=state.device)
    stats = record_activations(
        model,
        corpora,
        tokenizer=tokenizer,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        max_tokens=args.max_tokens,
        record_sums=args.record_sums,
        quantile=args.quantile,
        threshold=threshold,
        quantile_method=args.quantile_method,
        checkpoint=args.checkpoint,
        checkpoint_every=args.checkpoint_every,
    )
    stats.metadata["corpora"] = dict(args.corpus)
    if threshold is not None:
        kind = "group_quantile" if args.per_group_threshold else "pooled_quantile"
        stats.metadata["threshold"] = {kind: first_pass.quantile, "from": args.threshold_from}
    if state.is_main_process:
        stats.save(args.output)
        print(stats.summary())
        print(f"wrote {args.output}")


def _select(args: argparse.Namespace) -> None:
    import inspect

    from .selection import random_neurons, selection_methods

    given = {k.removeprefix("option_"): v for k, v in vars(args).items() if k.startswith("option_")}
    allowed = args.method_options[args.method]
    if stray := [name for name in given if name not in allowed]:
        owners = {n: [m for m, opts in args.method_options.items() if n in opts] for n in stray}
        flags = ", ".join(f"--{n.replace('_', '-')} (of {'/'.join(owners[n])})" for n in stray)
        raise ValueError(f"{flags} do not apply to --method {args.method}; its options: {allowed}.")
    method = selection_methods()[args.method]
    required = [n for n, p in inspect.signature(method.fn).parameters.items() if n in allowed and p.default is p.empty]
    if missing := [n for n in required if n not in given]:
        raise ValueError(f"--method {args.method} needs {', '.join('--' + n.replace('_', '-') for n in missing)}.")
    stats = method.reads.load(args.stats)
    if args.groups:
        if not hasattr(stats, "select_groups"):
            raise ValueError(f"--groups selects groups of statistics; --method {args.method} reads its whole file.")
        stats = stats.select_groups(_names(args.groups))
    neurons = method.fn(stats, **given)
    _write(neurons, args.output)
    print(neurons.summary())
    if args.random_control is not None:
        control = random_neurons(neurons, seed=args.random_control)
        out = Path(args.output)
        control_path = (
            out.with_name(out.stem + "-random" + out.suffix) if out.suffix == ".json" else Path(f"{out}-random")
        )
        _write(control, control_path)
        print(f"wrote random control {control_path}")
    if args.push_to_hub:
        print(neurons.push_to_hub(args.push_to_hub))


def _write(neurons: NeuronSet, output: str | os.PathLike) -> None:
    output = Path(output)
    if output.suffix == ".json":
        neurons.save(output)
    else:
        neurons.save_pretrained(output)
    print(f"wrote {output}")


def _nll_matrix(args: argparse.Namespace) -> None:
    from .measurement import nll_matrix
    from .neuron_set import NeuronSet

    neurons = NeuronSet.from_pretrained(args.neurons)
    corpora = _corpora(args)
    groups = _names(args.groups)
    if unknown := [g for g in groups or [] if g not in neurons.groups]:
        raise ValueError(f"--groups {', '.join(unknown)}: not in the neuron set (its groups: {neurons.groups}).")
    _check_seq_len(args)
    model, tokenizer = _load(args, device=_device())
    matrix = nll_matrix(
        model,
        neurons,
        corpora,
        tokenizer=tokenizer,
        groups=groups,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        max_tokens=args.max_tokens,
        random_control=args.random_control,
    )
    print(matrix.to_markdown())
    for path in matrix.save(args.output):
        print(f"wrote {path}")


def _generate(args: argparse.Namespace) -> None:
    from .generation import generate
    from .intervention import neuron_values
    from .neuron_set import NeuronSet
    from .stats import ActivationStats

    neurons = NeuronSet.from_pretrained(args.neurons)
    if args.steer not in neurons.groups:
        raise ValueError(f"--steer {args.steer}: not a group of the neuron set (its groups: {neurons.groups}).")
    value = args.value
    if args.stats:
        if args.value is not None:
            raise ValueError("--value and --stats both give the values; pass one (--strength scales --stats).")
        if args.mode == "zero":
            raise ValueError("--stats gives values for --mode set / scale / add; --mode zero takes none.")
        stats = ActivationStats.load(args.stats)
        if stats.sums is None:
            raise ValueError(f"`{args.stats}` holds no activation sums; record it with `lsn record --record-sums`.")
        if args.steer not in stats.groups:
            raise ValueError(f"--steer {args.steer}: not a group of `{args.stats}` (its groups: {stats.groups}).")
        if args.relative_to_others and len(stats.groups) < 2:
            raise ValueError(f"--relative-to-others needs another group in `{args.stats}`; it holds only one.")
        relative_to = "others" if args.relative_to_others else None
        value = neuron_values(stats, args.steer, relative_to=relative_to, strength=args.strength)
    elif args.strength != 1.0 or args.relative_to_others:
        raise ValueError("--strength and --relative-to-others apply to values from --stats; pass --stats.")
    elif args.mode == "zero" and args.value is not None:
        raise ValueError("--mode zero takes no --value; use --mode set to set a constant.")
    elif args.mode != "zero" and args.value is None:
        raise ValueError(f"--mode {args.mode} needs --value (a number), or --stats for per-neuron values.")
    model, tokenizer = _load(args, device=_device())
    baseline = generate(model, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens)
    steered = generate(
        model,
        tokenizer,
        args.prompt,
        neurons,
        args.mode,
        value,
        groups=args.steer,
        max_new_tokens=args.max_new_tokens,
    )
    for prompt, plain, changed in zip(args.prompt, baseline, steered, strict=True):
        print(f"prompt:   {prompt}\nbaseline: {plain}\n{args.mode} {args.steer}: {changed}\n")


def _device():
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _show(args: argparse.Namespace) -> None:
    from .neuron_set import NeuronSet
    from .stats import ActivationStats

    if str(args.path).endswith(".safetensors"):
        print(ActivationStats.load(args.path).summary())
        if args.plots:
            logger.warning("Plots are drawn for neuron sets; `%s` holds statistics.", args.path)
        return
    neurons = NeuronSet.from_pretrained(args.path)
    print(neurons.summary())
    if args.plots:
        from .plotting import plot_neuron_set

        for path in plot_neuron_set(neurons, args.plots):
            print(f"wrote {path}")


# ---------------------------------------------------------------------- import-reference


def _add_import_reference_parser(commands) -> None:
    imp = commands.add_parser(
        "import-reference",
        help="read the files released by Tang et al. (neurons or recordings)",
        description="Convert a Tang et al. neuron file (List[List[LongTensor]]) into an lsn neuron set, or their "
        "recording files (dicts of n and over_zero) into lsn statistics. Read with torch.load(weights_only=True).",
    )
    source = imp.add_mutually_exclusive_group(required=True)
    source.add_argument("--neurons", default=None, metavar="FILE", help="a *.neuron.pth file")
    source.add_argument(
        "--activation",
        action="append",
        type=_corpus_arg,
        metavar="GROUP=FILE",
        help="a recording file activation.{lang}.train.{model}; repeat per language",
    )
    imp.add_argument(
        "--groups",
        default=None,
        help="neurons: comma-separated languages in file order (default for 7 or 6: en,zh,fr,es,vi,id[,ja])",
    )
    imp.add_argument("--num-neurons", type=int, default=None, help="neurons: the FFN width (e.g. 11008)")
    imp.add_argument("--model", default=None, help="neurons: a model (hub id or path) to take the width from")
    imp.add_argument(
        "--output",
        required=True,
        help="neurons: a .json file or a directory; activations: a .safetensors file",
    )


def _import_reference(args: argparse.Namespace) -> None:
    from .neuron_set import NeuronSet
    from .stats import ActivationStats

    if args.activation:
        paths = dict(args.activation)
        if len(paths) != len(args.activation):
            raise ValueError("A language is given twice in --activation.")
        stats = ActivationStats.from_reference(paths)
        stats.save(args.output)
        print(stats.summary())
        print(f"wrote {args.output}")
        return
    model = None
    if args.model:  # only the shape is needed: build the model on the meta device, no weights
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(args.model))
    groups = _names(args.groups)
    neurons = NeuronSet.from_reference(args.neurons, groups=groups, num_neurons=args.num_neurons, model=model)
    if args.model:
        neurons.model["model_name"] = args.model
    _write(neurons, args.output)
    print(neurons.summary())


# ---------------------------------------------------------------- eval-matrix (lm-evaluation-harness, optional)
def _add_eval_matrix_parser(commands) -> None:
    ev = commands.add_parser(
        "eval-matrix",
        help="deactivate each group's neurons; lm-eval task metrics (needs lsn[harness])",
        description="The harness version of nll-matrix: row i deactivates group i's neurons, columns are the "
        "metrics of lm-evaluation-harness tasks; the baseline is evaluated once.",
    )
    ev.add_argument(
        "--model_args",
        required=True,
        help="the `lsn` lm-eval model's arguments, with neurons= (e.g. pretrained=ID,neurons=DIR,dtype=bfloat16)",
    )
    ev.add_argument("--tasks", required=True, help="comma-separated lm-eval task names")
    ev.add_argument("--groups", default=None, help="comma-separated groups to deactivate (default: all in the set)")
    ev.add_argument("--random-control", type=int, default=None, metavar="SEED", help="add random-neuron rows")
    ev.add_argument("--metrics", default=None, help="comma-separated metric names to keep (default: all)")
    ev.add_argument("--include_path", default=None, help="a folder of extra task YAMLs")
    ev.add_argument("--limit", type=float, default=None, help="documents per task at most (or a fraction)")
    ev.add_argument("--num_fewshot", type=int, default=None, help="few-shot examples (default: the task's)")
    ev.add_argument("--batch-size", default="auto", help="lm-eval batch size (default: auto)")
    ev.add_argument("--device", default=None, help="device (default: cuda if available, else cpu)")
    ev.add_argument("--output", required=True, help="directory for harness_matrix.{json,csv,md,png}")


def _eval_matrix(args: argparse.Namespace) -> None:
    try:
        from .harness.matrix import harness_matrix
    except ImportError as err:
        raise ValueError(f"`lsn eval-matrix` needs lm-evaluation-harness: pip install 'lsn[harness]' ({err}).") from err

    batch_size = int(args.batch_size) if str(args.batch_size).isdigit() else args.batch_size
    limit = int(args.limit) if args.limit is not None and args.limit >= 1 else args.limit
    matrix = harness_matrix(
        args.model_args,
        _names(args.tasks),
        groups=_names(args.groups),
        random_control=args.random_control,
        metrics=_names(args.metrics),
        include_path=args.include_path,
        limit=limit,
        num_fewshot=args.num_fewshot,
        batch_size=batch_size,
        device=args.device or _device(),
    )
    print(matrix.to_markdown())
    for path in matrix.save(args.output):
        print(f"wrote {path}")


# ---------------------------------------------------------------------- steer-eval


def _add_steer_eval_parser(commands) -> None:
    st = commands.add_parser(
        "steer-eval",
        help="how well neurons force the output language, against random neurons, DiffMean and prompting",
        description="Continue each source language's prompts steered to each target language (Language "
        "Arithmetics: the source's neurons zeroed, strength x (mean_target - mean_others) added on the target's) "
        "and let a language identifier judge the continuations. Writes steering.{json,csv} and plots.",
    )
    _add_model_args(st, "hub id or local path of a causal LM")
    st.add_argument("--neurons", required=True, help="a neuron set (.json, directory or hub id)")
    st.add_argument("--stats", required=True, help="statistics recorded with --record-sums (the steering values)")
    st.add_argument(
        "--prompts",
        action="append",
        type=_corpus_arg,
        required=True,
        metavar="LANG=SOURCE",
        help="prompts of a source language: a .txt file (one per line), a .jsonl file or a hub dataset; repeat",
    )
    st.add_argument("--text-column", default="text", help="text field of .jsonl files and hub datasets")
    st.add_argument("--split", default="test", help="split of hub datasets (default: test)")
    st.add_argument("--num-prompts", type=_positive_int, default=20, help="prompts per source language (default: 20)")
    st.add_argument(
        "--prompt-words", type=_positive_int, default=None, help="cut each prompt to its first N words (e.g. 4)"
    )
    st.add_argument("--pairs", default=None, help="comma-separated SRC-TGT pairs (default: every source x group)")
    st.add_argument("--strengths", default="2,4,8", help="comma-separated strengths (default: 2,4,8)")
    st.add_argument(
        "--methods",
        default="neurons,random",
        help="comma-separated: neurons, random, diffmean, prompt ('none' always runs; default: neurons,random)",
    )
    st.add_argument(
        "--diffmean-corpus",
        action="append",
        type=_corpus_arg,
        default=None,
        metavar="LANG=SOURCE",
        help="text per language for the DiffMean residual means (needed with --methods ...diffmean)",
    )
    st.add_argument("--identifier", default="langid", choices=["langid", "fasttext"], help="language identifier")
    st.add_argument("--lid-model", default=None, metavar="PATH", help="fastText model file (lid.176, GlotLID ...)")
    st.add_argument("--max-new-tokens", type=_positive_int, default=32, help="tokens per continuation (default: 32)")
    st.add_argument("--batch-size", type=_positive_int, default=32, help="prompts per generate call (default: 32)")
    st.add_argument("--seed", type=int, default=0, help="seed of the random-neuron control (default: 0)")
    st.add_argument("--output", required=True, help="directory for steering.{json,csv} and the plots")


def _steer_eval(args: argparse.Namespace) -> None:
    from itertools import islice

    from .corpora import load_corpus
    from .language_id import LanguageIdentifier
    from .neuron_set import NeuronSet
    from .stats import ActivationStats

    neurons = NeuronSet.from_pretrained(args.neurons)
    stats = ActivationStats.load(args.stats)
    prompts = {}
    for lang, spec in args.prompts:
        texts = [
            t.strip()
            for t in islice(load_corpus(spec, text_column=args.text_column, split=args.split), args.num_prompts)
            if t.strip()
        ]
        prompts[lang] = [" ".join(t.split()[: args.prompt_words]) for t in texts] if args.prompt_words else texts
    pairs = None
    if args.pairs:
        pairs = [tuple(p.split("-", 1)) for p in _names(args.pairs)]
        if bad := [p for p in pairs if len(p) != 2 or not all(p)]:
            raise ValueError(f"--pairs takes SRC-TGT pairs such as en-de, got {bad}.")
    try:
        strengths = [float(v) for v in _names(args.strengths)]
    except ValueError as err:
        raise ValueError(f"--strengths takes numbers such as 2,4,8, got {args.strengths!r}.") from err
    methods = _names(args.methods)
    languages = sorted({lang for pair in pairs or [] for lang in pair} | set(prompts) | set(neurons.groups))
    identifier = LanguageIdentifier(args.identifier, languages=languages, model_path=args.lid_model)
    if "diffmean" in methods and not args.diffmean_corpus:
        raise ValueError("--methods diffmean needs --diffmean-corpus LANG=SOURCE for every target language.")
    diffmean_corpora = {
        g: load_corpus(s, text_column=args.text_column, split=args.split) for g, s in args.diffmean_corpus or []
    }
    model, tokenizer = _load(args, device=_device())
    residual_means = None
    if diffmean_corpora:
        from .diffmean import record_residual_means

        residual_means = record_residual_means(model, diffmean_corpora, tokenizer=tokenizer)
    from .steering_eval import steering_eval

    report = steering_eval(
        model,
        tokenizer,
        prompts,
        neurons=neurons,
        stats=stats,
        pairs=pairs,
        strengths=strengths,
        methods=methods,
        identifier=identifier,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        residual_means=residual_means,
        seed=args.seed,
    )
    print(report.to_markdown())
    for path in report.save(args.output):
        print(f"wrote {path}")


_COMMANDS = {
    "record": _record,
    "select": _select,
    "nll-matrix": _nll_matrix,
    "generate": _generate,
    "show": _show,
    "import-reference": _import_reference,
    "steer-eval": _steer_eval,
    "eval-matrix": _eval_matrix,
}


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in `argv` (its first positional word), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(select_methods=_command_of(argv) == "select").parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        if os.environ.get("LSN_DEBUG"):
            raise
        resume = getattr(args, "checkpoint", None)
        hint = f"run the same command to resume from `{resume}`" if resume else "nothing was written"
        print(f"lsn {args.command}: interrupted; {hint}.", file=sys.stderr)
        return 130
    except (ValueError, TypeError, KeyError, OSError) as err:
        if os.environ.get("LSN_DEBUG"):
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"lsn {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
