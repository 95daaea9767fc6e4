"""The `lsn` command: `record`, `select`, `show`, `nll-matrix`, `generate`, `eval-matrix`.

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

__all__ = ["main", "build_parser", "load_model_and_tokenizer"]


def _corpus_arg(value: str) -> tuple[str, str]:
    group, sep, spec = value.partition("=")
    if not sep or not group or not spec:
        raise argparse.ArgumentTypeError(f"expected GROUP=SOURCE (e.g. en=wiki_en.txt), got {value!r}")
    return group, spec


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lsn", description="Find and use the language-specific neurons of LLMs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rec = commands.add_parser(
        "record",
        help="record activation statistics over corpora",
        description="Count how often each FFN neuron fires on each corpus group.",
    )
    rec.add_argument("--model", required=True, help="hub id or local path of a transformers model")
    rec.add_argument("--revision", default=None, help="model revision (branch, tag or commit)")
    rec.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="weights dtype (default: the checkpoint's)",
    )
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
    rec.add_argument("--seq-len", type=int, default=512, help="packed window length in tokens (default: 512)")
    rec.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default: 8)")
    rec.add_argument("--max-tokens", type=int, default=None, help="tokens per group at most (default: all)")
    rec.add_argument("--record-sums", action="store_true", help="also sum activations (for mean-value interventions)")
    rec.add_argument(
        "--quantile",
        type=float,
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
    rec.add_argument("--checkpoint", default=None, help="directory for resumable progress")
    rec.add_argument("--checkpoint-every", type=int, default=100, help="batches between saves (default: 100)")
    rec.add_argument("--output", required=True, help="where to write the statistics (.safetensors)")

    sel = commands.add_parser(
        "select",
        help="select neurons from recorded statistics",
        description="Select neurons with LAPE, activation-probability scores, "
        "Neuron Specialization, or a random control.",
    )
    sel.add_argument("stats", help="statistics file written by `lsn record`")
    sel.add_argument(
        "--method",
        default="lape",
        choices=["lape", "probability", "specialized"],
        help="selection method (default: lape)",
    )
    sel.add_argument("--groups", default=None, help="comma-separated groups to use (default: all)")
    sel.add_argument("--top-rate", type=float, default=0.01, help="LAPE: share of all neurons kept (default: 0.01)")
    sel.add_argument("--filter-rate", type=float, default=0.95, help="LAPE: filter bar rank (default: 0.95)")
    sel.add_argument(
        "--activation-bar-ratio", type=float, default=0.95, help="LAPE: assignment bar rank (default: 0.95)"
    )
    sel.add_argument(
        "--score",
        default="margin",
        choices=["margin", "contrast", "faithful"],
        help="probability: score per group (default: margin)",
    )
    sel.add_argument(
        "--above",
        default="zero",
        choices=["zero", "threshold"],
        help="probability: the event scored, pre-activation > 0 (fires) or > the threshold "
        "recorded with --threshold-from (default: zero)",
    )
    sel.add_argument("--top-k", type=int, default=None, help="probability: neurons per group")
    sel.add_argument(
        "--rate",
        type=float,
        default=0.00125,
        help="probability: neurons per group as a share of all neurons (default: 0.00125)",
    )
    sel.add_argument("--k", type=float, default=0.95, help="specialized: cumulative share kept (default: 0.95)")
    sel.add_argument("--encoder-k", type=float, default=None, help="specialized: share for encoder layers")
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
    nll.add_argument("--model", required=True, help="hub id or local path of a causal LM")
    nll.add_argument("--revision", default=None, help="model revision")
    nll.add_argument(
        "--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"], help="weights dtype"
    )
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
    nll.add_argument("--seq-len", type=int, default=512, help="packed window length (default: 512)")
    nll.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default: 8)")
    nll.add_argument("--max-tokens", type=int, default=None, help="evaluation tokens per group at most")
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
    gen.add_argument("--model", required=True, help="hub id or local path of a causal LM")
    gen.add_argument("--revision", default=None, help="model revision")
    gen.add_argument("--neurons", required=True, help="a neuron set (.json, directory or hub id)")
    gen.add_argument("--steer", required=True, metavar="GROUP", help="the group whose neurons are changed")
    gen.add_argument(
        "--mode",
        default="zero",
        choices=["zero", "value", "scale", "add", "stat"],
        help="zero: deactivate; scale: multiply by --value; add/stat: steer with --stats (default: zero)",
    )
    gen.add_argument("--value", type=float, default=None, help="the constant or factor for value/scale/add")
    gen.add_argument("--stats", default=None, help="statistics (.safetensors with sums) for stat/add steering")
    gen.add_argument(
        "--relative-to-others", action="store_true", help="add: steer by mean(target) - mean(other groups)"
    )
    gen.add_argument("--prompt", action="append", required=True, help="a prompt; repeat for several")
    gen.add_argument("--max-new-tokens", type=int, default=40, help="tokens to generate (default: 40)")

    show = commands.add_parser(
        "show",
        help="summarise a neuron set or statistics file, and plot it",
        description="Print a summary table; for a neuron set, also draw its plots.",
    )
    show.add_argument("path", help="a neuron set (.json, directory or hub id) or statistics (.safetensors)")
    show.add_argument("--plots", default=None, help="directory for the PNG plots")
    _add_eval_matrix_parser(commands)
    return parser


def load_model_and_tokenizer(name: str, revision: str | None = None, dtype: str = "auto", device=None):
    """A causal or seq2seq model (by its config) and its tokenizer, from the hub or a directory."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    config = AutoConfig.from_pretrained(name, revision=revision)
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    model = auto.from_pretrained(name, revision=revision, dtype=torch_dtype)
    if device is not None:
        model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
    return model.eval(), tokenizer


def _record(args: argparse.Namespace) -> None:
    import torch
    from accelerate import PartialState

    from .corpora import load_corpus
    from .recording import record_activations
    from .stats import ActivationStats

    threshold = None
    if args.threshold_from:  # before the model loads: a bad first pass fails at once
        first_pass = ActivationStats.load(args.threshold_from)
        threshold = first_pass.pooled_quantile()
    state = PartialState(cpu=not torch.cuda.is_available())
    model, tokenizer = load_model_and_tokenizer(args.model, args.revision, args.dtype, device=state.device)
    corpora = {}
    for group, spec in args.corpus:
        if group in corpora:
            raise ValueError(f"Group `{group}` is given twice in --corpus.")
        corpora[group] = load_corpus(spec, text_column=args.text_column, split=args.split)
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
        checkpoint=args.checkpoint,
        checkpoint_every=args.checkpoint_every,
    )
    stats.metadata["corpora"] = dict(args.corpus)
    if threshold is not None:
        stats.metadata["threshold"] = {"pooled_quantile": first_pass.quantile, "from": args.threshold_from}
    if state.is_main_process:
        stats.save(args.output)
        print(stats.summary())
        print(f"wrote {args.output}")


def _select(args: argparse.Namespace) -> None:
    from .selection import random_neurons, select_by_probability, select_lape, select_specialized
    from .stats import ActivationStats

    stats = ActivationStats.load(args.stats)
    if args.groups:
        stats = stats.select_groups([g.strip() for g in args.groups.split(",") if g.strip()])
    if args.method == "lape":
        neurons = select_lape(stats, args.top_rate, args.filter_rate, args.activation_bar_ratio)
    elif args.method == "probability":
        neurons = select_by_probability(stats, score=args.score, above=args.above, top_k=args.top_k, rate=args.rate)
    else:
        neurons = select_specialized(stats, args.k, encoder_k=args.encoder_k)
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
    from .corpora import load_corpus
    from .measurement import nll_matrix
    from .neuron_set import NeuronSet

    neurons = NeuronSet.from_pretrained(args.neurons)
    model, tokenizer = load_model_and_tokenizer(args.model, args.revision, args.dtype, device=_device())
    corpora = {g: load_corpus(spec, text_column=args.text_column, split=args.split) for g, spec in args.corpus}
    groups = [g.strip() for g in args.groups.split(",")] if args.groups else None
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
    from .neuron_set import NeuronSet
    from .stats import ActivationStats

    neurons = NeuronSet.from_pretrained(args.neurons)
    model, tokenizer = load_model_and_tokenizer(args.model, args.revision, device=_device())
    extra = {}
    if args.stats:
        extra = {"stats": ActivationStats.load(args.stats), "target": args.steer}
        if args.relative_to_others:
            extra["relative_to"] = "others"
    baseline = generate(model, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens)
    steered = generate(
        model,
        tokenizer,
        args.prompt,
        neurons,
        args.mode,
        args.value,
        groups=args.steer,
        max_new_tokens=args.max_new_tokens,
        intervention_kwargs=extra,
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

    def split(text: str | None) -> list[str] | None:
        return [t.strip() for t in text.split(",") if t.strip()] if text else None

    batch_size = int(args.batch_size) if str(args.batch_size).isdigit() else args.batch_size
    limit = int(args.limit) if args.limit is not None and args.limit >= 1 else args.limit
    matrix = harness_matrix(
        args.model_args,
        split(args.tasks),
        groups=split(args.groups),
        random_control=args.random_control,
        metrics=split(args.metrics),
        include_path=args.include_path,
        limit=limit,
        num_fewshot=args.num_fewshot,
        batch_size=batch_size,
        device=args.device or _device(),
    )
    print(matrix.to_markdown())
    for path in matrix.save(args.output):
        print(f"wrote {path}")


_COMMANDS = {
    "record": _record,
    "select": _select,
    "nll-matrix": _nll_matrix,
    "generate": _generate,
    "show": _show,
    "eval-matrix": _eval_matrix,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        _COMMANDS[args.command](args)
    except (ValueError, TypeError, KeyError, OSError) as err:
        if os.environ.get("LSN_DEBUG"):
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"lsn {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
