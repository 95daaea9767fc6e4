"""Neuron Specialization for translation: `identify`, `train`, `evaluate` (or `all`) from a recipe.

    python -m lsn.translate all recipes/tiny/mt/config_specialized.yaml
    accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml \\
        -m lsn.translate train recipes/nllb-200-distilled-600m/mt/config_specialized.yaml

identify: per direction, firing counts over its validation pairs (teacher-forced, eval mode),
    then each layer's most active neurons up to a cumulative share k -> `<output_dir>/neurons`.
train: continue training with one direction per batch (temperature sampling); each batch's
    direction masks the neurons outside its set -> `<output_dir>` (model + neurons).
evaluate: beam search on the test pairs, BLEU and chrF++ per direction, with the specialized
    model beside the baseline -> `<output_dir>/results.{md,json}`.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from transformers import HfArgumentParser, Seq2SeqTrainingArguments

from .arguments import ModelArguments, load_model_and_tokenizer, parse_recipe
from .neuron_set import NeuronSet
from .plotting import plot_overlap
from .translation import (
    SpecializationTrainer,
    TaskCollator,
    TaskMasks,
    TranslationFormat,
    build_dataset,
    direction_k,
    evaluate_directions,
    identify,
    load_flores,
    load_parallel_file,
    parse_direction,
    results_table,
)

logger = logging.getLogger("lsn.translate")


def _json_field(name: str, value: str | None):
    """A recipe field written as JSON text, parsed; `None` stays `None`."""
    if not value:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as err:
        raise ValueError(f"`{name}` must be a JSON object, e.g. '{{\"zh\": ...}}'; got {value!r} ({err}).") from None


@dataclass
class DataArguments:
    directions: list[str] = field(metadata={"help": "Translation directions, e.g. en-de de-en."})
    source: Literal["flores", "files", "world"] = field(
        default="flores",
        metadata={
            "help": "flores (openlanguagedata/flores_plus), files (data_dir), or world (the embedded synthetic world)."
        },
    )
    data_dir: str | None = field(
        default=None, metadata={"help": "For source=files: {train,validation,test}.SRC-TGT.{jsonl,tsv} files."}
    )
    style: Literal["codes", "tag", "prompt"] = field(
        default="codes",
        metadata={"help": "Input format: codes (NLLB/M2M100), tag (a <2xx> token), prompt (decoder LLMs)."},
    )
    language_codes: str | None = field(
        default=None,
        metadata={"help": 'JSON {"zh": "zho_Hant", ...}: tokenizer codes overriding the defaults (style codes).'},
    )
    max_train_pairs: int | None = field(default=None, metadata={"help": "Training pairs per direction at most."})
    max_eval_pairs: int | None = field(default=None, metadata={"help": "Validation/test pairs per direction at most."})
    max_length: int = field(default=128, metadata={"help": "Tokens per side at most."})

    def __post_init__(self) -> None:
        if self.source == "files" and not self.data_dir:
            raise ValueError("`source: files` needs `data_dir`.")
        if self.source != "files" and self.data_dir:
            warnings.warn(f"`data_dir` is ignored with `source: {self.source}`.", stacklevel=3)

    def format(self) -> TranslationFormat:
        codes = _json_field("language_codes", self.language_codes) or {}
        return TranslationFormat(self.style, codes=codes, max_length=self.max_length)


@dataclass
class SpecializationArguments:
    k: float = field(default=0.95, metadata={"help": "Cumulative activation share kept per layer (Tan et al.: 0.95)."})
    encoder_k: float | None = field(default=None, metadata={"help": "Share for encoder layers (default: k)."})
    k_to_pivot: float | None = field(default=None, metadata={"help": "Share for x->pivot directions (default: k)."})
    pivot: str = field(default="en", metadata={"help": "Pivot language for direction families and averages."})
    direction_temperature: float = field(default=5.0, metadata={"help": "Temperature of direction sampling."})
    specialize: bool = field(default=True, metadata={"help": "Train with task masks (false: the unmasked baseline)."})
    count_padding: bool = field(
        default=False, metadata={"help": "Identification counts padding positions too (Tan et al.'s code)."}
    )
    mask_mode: Literal["activation", "weight_rows"] = field(
        default="activation",
        metadata={
            "help": "activation: a masked neuron outputs 0; weight_rows: only fc1's rows are masked, the bias stays "
            "on (Tan et al.'s code)."
        },
    )
    neurons: str | None = field(
        default=None, metadata={"help": "Neuron set to train with (default: <output_dir>/neurons)."}
    )
    identify_batch_size: int = field(default=16, metadata={"help": "Pairs per identification batch."})
    num_beams: int = field(default=5, metadata={"help": "Beam size for evaluation."})
    max_new_tokens: int = field(default=128, metadata={"help": "Generated tokens at most."})
    baseline_model: str | None = field(
        default=None, metadata={"help": "Model evaluated beside the trained one (default: model_name_or_path)."}
    )
    resource_groups: str | None = field(
        default=None, metadata={"help": 'JSON {"high": ["de", ...], "low": [...]} for averages.'}
    )


def load_pairs(data: DataArguments, split: str) -> dict[str, list[tuple[str, str]]]:
    """Pairs of every direction for `split` (train, validation or test)."""
    limit = data.max_train_pairs if split == "train" else data.max_eval_pairs
    if data.source == "flores":
        if split == "train":
            raise ValueError(
                "FLORES has no training split; train on `source: files` (e.g. EC30) and evaluate on FLORES."
            )
        return load_flores(data.directions, "dev" if split == "validation" else "devtest", limit=limit)
    if data.source == "files":
        out = {}
        for d in data.directions:
            candidates = [Path(data.data_dir) / f"{split}.{d}.{ext}" for ext in ("jsonl", "tsv")]
            found = next((p for p in candidates if p.is_file()), None)
            if found is None:
                raise FileNotFoundError(f"No {split} file for `{d}`: expected one of {[str(c) for c in candidates]}.")
            out[d] = load_parallel_file(found, limit=limit)
        return out
    if data.source == "world":
        from .demo.world import parallel_corpus

        seed = {"train": 0, "validation": 1, "test": 2}[split]
        rows = parallel_corpus(limit or 1000, seed=seed)
        return {d: [(r[parse_direction(d)[0]], r[parse_direction(d)[1]]) for r in rows] for d in data.directions}
    raise ValueError(f"Unknown `source: {data.source}`; choose flores, files or world.")  # Literal: not reached


def neuron_path(spec: SpecializationArguments, training: Seq2SeqTrainingArguments) -> Path:
    return Path(spec.neurons or Path(training.output_dir) / "neurons")


# ---------------------------------------------------------------- stages
def run_identify(model_args, data, spec, training) -> NeuronSet:
    fmt = data.format()  # checked before the model loads
    model, tokenizer = load_model_and_tokenizer(model_args)
    k = direction_k(data.directions, spec.k, pivot=spec.pivot, k_to_pivot=spec.k_to_pivot)
    stats, neurons = identify(
        model,
        tokenizer,
        fmt,
        load_pairs(data, "validation"),
        k=k,
        encoder_k=spec.encoder_k,
        batch_size=spec.identify_batch_size,
        count_padding=spec.count_padding,
    )
    out = neuron_path(spec, training)
    if training.process_index == 0:
        neurons.save_pretrained(out)
        stats.save(out / "activation_stats.safetensors")
        plot_overlap(neurons, out / "overlap.png", title="direction overlap (IoU)")
        logger.info("%s", neurons.summary())
    return neurons


def run_train(model_args, data, spec, training) -> None:
    fmt = data.format()  # checked before the model loads
    model, tokenizer = load_model_and_tokenizer(model_args)
    masks = TaskMasks(NeuronSet.load(neuron_path(spec, training)), mode=spec.mask_mode) if spec.specialize else None
    encoder_decoder = bool(model.config.is_encoder_decoder)
    train_set = build_dataset(tokenizer, fmt, load_pairs(data, "train"), data.directions)
    trainer = SpecializationTrainer(
        model=model,
        args=training,
        train_dataset=train_set,
        data_collator=TaskCollator(tokenizer, model if encoder_decoder else None),
        processing_class=tokenizer,
        task_masks=masks,
        directions=data.directions,
        direction_temperature=spec.direction_temperature,
    )
    trainer.train(resume_from_checkpoint=training.resume_from_checkpoint)
    trainer.save_model(training.output_dir)
    if masks is not None and trainer.is_world_process_zero():
        masks.neuron_set.save_pretrained(Path(training.output_dir) / "neurons")


def run_evaluate(model_args, data, spec, training) -> str:
    fmt = data.format()
    groups = _json_field("resource_groups", spec.resource_groups)  # checked before hours of generation
    pairs = load_pairs(data, "test")
    kwargs = dict(
        num_beams=spec.num_beams, batch_size=training.per_device_eval_batch_size, max_new_tokens=spec.max_new_tokens
    )
    results = {}
    baseline, tokenizer = load_model_and_tokenizer(model_args, path=spec.baseline_model)
    results["baseline"] = evaluate_directions(baseline, tokenizer, fmt, pairs, **kwargs)
    trained, tokenizer = load_model_and_tokenizer(model_args, path=training.output_dir)
    name = "specialized" if spec.specialize else "fine-tuned"
    if spec.specialize:
        masks = TaskMasks(NeuronSet.load(Path(training.output_dir) / "neurons"), mode=spec.mask_mode)
        with masks.attached(trained):
            results[name] = evaluate_directions(trained, tokenizer, fmt, pairs, masks=masks, **kwargs)
    else:
        results[name] = evaluate_directions(trained, tokenizer, fmt, pairs, **kwargs)
    table = results_table(results, training.output_dir, pivot=spec.pivot, resource_groups=groups)
    print(table)
    return table


STAGES = {
    "identify": (run_identify,),
    "train": (run_train,),
    "evaluate": (run_evaluate,),
    "all": (run_identify, run_train, run_evaluate),
}


def build_parser() -> HfArgumentParser:
    """The recipe parser of `python -m lsn.translate STAGE` (its dataclasses, in the stages' order)."""
    return HfArgumentParser(
        [ModelArguments, DataArguments, SpecializationArguments, Seq2SeqTrainingArguments],
        prog="python -m lsn.translate STAGE",
    )


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = f"usage: python -m lsn.translate {{{','.join(STAGES)}}} RECIPE.yaml [--field value ...]"
    if argv[:1] in (["-h"], ["--help"]):
        print(f"{usage}\n\n{__doc__.strip()}\n\nRecipe fields (`python -m lsn.translate all --help`):")
        build_parser().print_help()
        return
    if not argv or argv[0] not in STAGES:
        raise SystemExit(f"{usage}\n(`python -m lsn.translate --help` describes the stages)")
    stage = argv.pop(0)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_recipe(build_parser(), argv)
    for step in STAGES[stage]:
        step(*args)


if __name__ == "__main__":
    main()
