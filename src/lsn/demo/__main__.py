"""`python -m lsn.demo` (`make demo`): the main job on the embedded default, offline.

Loads the demo's pretrained tiny Llama (shipped in the package; see `lsn.demo.pretrain`),
records its activation statistics on every language of the synthetic world, selects LAPE
neurons, and validates them as Tang et al. do: deactivate each language's neurons (and as many
random ones) and measure the NLL on held-out text of every language. Then fine-tunes on the
world's English NLI task three ways (LoRA on attention, LoRA on the English neurons only, LoRA on
as many random neurons) and evaluates every language zero-shot. Writes the statistics, the
neuron set (with its model card), the NLL matrix (JSON, CSV, PNG), the plots, the fine-tuning
runs and a `report.md` that shows it all into `--output`.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
from transformers import TrainingArguments

from .. import nll_matrix, record_activations, select_lape
from ..crosslingual import results_table
from ..diffmean import record_residual_means
from ..language_id import LanguageIdentifier
from ..plotting import plot_neuron_set
from ..steering_eval import SteeringReport, steering_eval
from ..train import DataArguments, ModelArguments, NeuronArguments
from ..train import main as train
from .pretrain import DEMO_TOP_RATE, SETTINGS, heldout_texts, load_demo_model, pretraining_texts
from .tasks import WORLD_DATA
from .world import LANGUAGES

logger = logging.getLogger("lsn.demo")
SEQ_LEN, BATCH_SIZE = 128, 16


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lsn.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="demo-output", help="directory for every result (default: demo-output)")
    parser.add_argument(
        "--record-tokens", type=int, default=50_000, help="tokens per language to record (default: %(default)s)"
    )
    parser.add_argument(
        "--eval-tokens", type=int, default=6144, help="held-out tokens per language (default: %(default)s)"
    )
    parser.add_argument(
        "--top-rate",
        type=float,
        default=DEMO_TOP_RATE,
        help="LAPE top rate; a tiny model needs far more than the paper's 0.01 (default: %(default)s)",
    )
    parser.add_argument(
        "--steering-prompts",
        type=int,
        default=20,
        help="prompts per source language for the steering stage; 0 skips it (default: %(default)s)",
    )
    parser.add_argument(
        "--finetune-steps",
        type=int,
        default=400,
        help="NLI fine-tuning steps per condition; 0 skips fine-tuning (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Float sums (and so the fine-tuning figures) depend on the thread count: the README's come from 2 threads.
    torch.set_num_threads(SETTINGS["threads"])
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()

    # ---------------------------------------------------------------- model and text
    model, tokenizer = load_demo_model()
    texts = pretraining_texts(1 + args.record_tokens // 50)  # >= 64 tokens per document in every language
    heldout = heldout_texts(1 + args.eval_tokens // 50)  # another seed: never seen in pretraining
    logger.info("model: %s; %d languages", model.config.name_or_path, len(texts))

    # ---------------------------------------------------------------- record
    stats = record_activations(
        model,
        texts,
        tokenizer=tokenizer,
        seq_len=SEQ_LEN,
        batch_size=BATCH_SIZE,
        max_tokens=args.record_tokens,
        record_sums=True,
    )
    stats.save(out / "activation_stats.safetensors")
    print(stats.summary())

    # ---------------------------------------------------------------- select
    neurons = select_lape(stats, top_rate=args.top_rate)
    neurons.save_pretrained(out / "lape-neurons")
    print(neurons.summary())
    plots = plot_neuron_set(neurons, out)

    # ---------------------------------------------------------------- validate: deactivation NLL matrix
    matrix = nll_matrix(
        model,
        neurons,
        heldout,
        tokenizer=tokenizer,
        seq_len=SEQ_LEN,
        batch_size=BATCH_SIZE,
        max_tokens=args.eval_tokens,
        random_control=0,
    )
    plots += [p for p in matrix.save(out) if p.suffix == ".png"]
    print(matrix.to_markdown())

    # ---------------------------------------------------------------- steer: force the output language
    steering = _steering(model, tokenizer, neurons, stats, texts, heldout, args, out) if args.steering_prompts else None
    if steering is not None:
        plots += [p for p in steering.save(out / "steering") if p.suffix == ".png"]
        print(steering.to_markdown())

    # ---------------------------------------------------------------- fine-tune on English NLI, evaluate zero-shot
    table = _finetune(out, args.finetune_steps) if args.finetune_steps > 0 else ""
    print(table)

    # ---------------------------------------------------------------- report
    report = out / "report.md"
    report.write_text(_report(model, stats, neurons, matrix, steering, args, plots, out, table), encoding="utf-8")
    logger.info("wrote %s (%.0f s in all)", report, time.time() - start)


STEERING_PAIRS = [("en", "de"), ("de", "en"), ("en", "ru"), ("es", "zh"), ("ru", "es"), ("en", "hi")]
STEERING_STRENGTHS = (2.0, 4.0, 8.0)


def _steering(model, tokenizer, neurons, stats, texts, heldout, args, out: Path) -> SteeringReport:
    """Language Arithmetics with the LAPE neurons vs as many random neurons, DiffMean and prompting, on the first
    four words of held-out documents, judged by the offline `langid` identifier."""
    means = record_residual_means(
        model, texts, tokenizer=tokenizer, seq_len=SEQ_LEN, batch_size=BATCH_SIZE, max_tokens=args.record_tokens
    )
    sources = dict.fromkeys(source for source, _ in STEERING_PAIRS)
    prompts = {s: [" ".join(doc.split()[:4]) for doc in heldout[s][: args.steering_prompts]] for s in sources}
    return steering_eval(
        model,
        tokenizer,
        prompts,
        neurons=neurons,
        stats=stats,
        pairs=STEERING_PAIRS,
        strengths=STEERING_STRENGTHS,
        methods=("neurons", "random", "diffmean", "prompt"),
        identifier=LanguageIdentifier("langid", languages=list(LANGUAGES)),
        residual_means=means,
        max_new_tokens=12,
    )


FINETUNE_CONDITIONS = ("lora", "neuron-lora", "random-neuron-lora")


def _finetune(out: Path, steps: int) -> str:
    """Train each condition on the world's English NLI (a classification head on the last token),
    evaluate every language zero-shot; returns the accuracy table (LoRA on attention first)."""
    results = {}
    for condition in FINETUNE_CONDITIONS:
        neuron = condition != "lora"
        training = TrainingArguments(
            output_dir=str(out / "finetune" / condition),
            max_steps=steps,
            per_device_train_batch_size=16,
            learning_rate=3e-3,
            lr_scheduler_type="linear",
            logging_steps=max(1, steps // 4),
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            seed=0,
        )
        results[condition] = train(
            ModelArguments(model_name_or_path="lsn:demo"),
            NeuronArguments(
                condition=condition,
                neurons=str(out / "lape-neurons") if neuron else None,
                neuron_groups=["en"] if neuron else None,
                r=16,
                lora_alpha=32,
                target_modules=["gate_proj", "up_proj", "down_proj"] if neuron else None,
            ),
            DataArguments(
                task="xnli",
                format="classification",
                eval_languages=list(LANGUAGES),
                data_dir=WORLD_DATA,
                train_fraction=1.0,
                max_eval_samples=300,
                max_length=128,
            ),
            training,
        )
    return results_table(results, "accuracy", out / "finetune", baseline="lora")


def _steering_section(steering: SteeringReport | None, args) -> list[str]:
    if steering is None:
        return []
    pairs = ", ".join(f"{s}->{t}" for s, t in STEERING_PAIRS)
    return [
        "## 4. Steering the output language",
        "",
        f"Language Arithmetics (Gurgurov et al. 2025): the source language's LAPE neurons zeroed, the target's "
        "raised by `strength x (mean_target - mean_others)`; against as many random neurons per layer, a "
        "residual-stream DiffMean vector (middle layer) and an instruction naming the target language. "
        f"{args.steering_prompts} prompts per pair ({pairs}: the first four words of held-out documents), 12 new "
        "tokens, judged by `langid` restricted to the seven languages. Success: the share of continuations "
        "identified as the target, at each method's best strength of "
        f"{'/'.join(f'{s:g}' for s in STEERING_STRENGTHS)} per pair; fluency: mean token NLL of the continuation "
        "under the unmodified model (lower is more fluent).",
        "",
        steering.to_markdown(),
        "",
    ]


def _report(model, stats, neurons, matrix, steering, args, plots: list[Path], out: Path, table: str) -> str:
    c = model.config
    counts = neurons.counts_per_layer()
    delta = matrix.delta
    verdict = [
        "| language | own rise | largest other rise | random neurons, own rise | specific |",
        "|---|---|---|---|---|",
    ]
    for i, lang in enumerate(matrix.columns):
        own = float(delta[i, i])
        other = max(float(delta[i, j]) for j in range(len(matrix.columns)) if j != i)
        rand = float(delta[matrix.rows.index(f"random:{lang}"), i])
        ok = matrix.specificity()[lang] and own > rand
        verdict.append(f"| {lang} | {own:+.3f} | {other:+.3f} | {rand:+.3f} | {'yes' if ok else 'no'} |")
    p = stats.probabilities()
    lines = [
        "# lsn demo: language-specific neurons of a tiny pretrained Llama",
        "",
        f"Model: `{c.name_or_path}`, a Llama with {c.num_hidden_layers} layers x {c.intermediate_size} MLP neurons "
        f"(hidden {c.hidden_size}, vocabulary {c.vocab_size}), pretrained on the synthetic world's seven languages "
        "(`python -m lsn.demo.pretrain`).",
        "",
        "## 1. Activation statistics",
        "",
        f"Recorded on up to {args.record_tokens} tokens of pretraining-distribution text per language, "
        f"packed into {SEQ_LEN}-token windows.",
        "",
        "| language | tokens | mean firing rate |",
        "|---|---|---|",
        *[f"| {g} | {int(stats.tokens[k])} | {p[..., k].mean().item():.4f} |" for k, g in enumerate(stats.groups)],
        "",
        "## 2. LAPE neurons",
        "",
        f"`select_lape(stats, top_rate={args.top_rate})`. A model this small needs a far larger `top_rate` than the "
        "paper's 0.01, which keeps only a handful of neurons whose deactivation barely moves the NLL.",
        "",
        "| language | neurons | " + " | ".join(f"layer {layer}" for layer in range(neurons.num_layers)) + " |",
        "|---" * (neurons.num_layers + 2) + "|",
        *[
            f"| {g} | {int(counts[k].sum())} | " + " | ".join(str(int(n)) for n in counts[k]) + " |"
            for k, g in enumerate(neurons.groups)
        ],
        "",
        "## 3. Deactivation NLL matrix",
        "",
        f"Mean token NLL change (nats) on held-out text (another seed, up to {args.eval_tokens} tokens per language) "
        "when a row's neurons are set to zero; `random:X` rows deactivate as many random neurons per layer as X's.",
        "",
        matrix.to_markdown(),
        "",
        *verdict,
        "",
        *_steering_section(steering, args),
        *(
            [
                "## 5. Fine-tuning on English NLI, zero-shot on every language",
                "",
                "The world's NLI task in the XNLI schema (premise + EOS + hypothesis, a linear head on the last "
                f"token), {args.finetune_steps} steps on English only; accuracy (%) on 300 test items per language, "
                "chance 33.3. "
                "Columns: LoRA on attention (r 16), LoRA on the English LAPE neurons' gate/up/down rows and columns "
                "(r 16), and on as many random neurons; in brackets the difference to LoRA.",
                "",
                table,
                "",
            ]
            if table
            else []
        ),
        "## Plots",
        "",
        *[f"![{path.stem}]({path.relative_to(out).as_posix()})\n" for path in plots],
        "Files: `activation_stats.safetensors`, `lape-neurons/` (neuron set with its model card), "
        "`nll_matrix.json`, `nll_matrix.csv`.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
