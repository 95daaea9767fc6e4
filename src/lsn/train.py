"""Cross-lingual fine-tuning on XNLI / XQuAD (Mondal et al. 2025): train on one language, evaluate all.

    python -m lsn.train recipes/tiny/xnli/config_neuron_lora.yaml
    accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml \\
        -m lsn.train recipes/llama-3.1-8b/xnli/config_neuron_lora.yaml --learning_rate 2e-5

Conditions (`condition:`), the paper's comparison:
    none                no adapter: the classification head only (XNLI classification), else no training
    lora                LoRA on attention (the paper's baseline)
    neuron-lora         LoRA restricted to the neurons of `neuron_groups` (source, target or both languages)
    random-neuron-lora  the same count of random neurons per layer (seeded)
    neuron-full         full updates of those neurons' rows / columns
Writes the adapter (its config holds the neurons; lsn's model card section), `lsn_run.json`, and `eval_results.json`
(zero-shot, every language in `eval_languages`) into `output_dir`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from peft import LoraConfig, PeftConfig
from transformers import (
    DataCollatorForSeq2Seq,
    DataCollatorWithPadding,
    HfArgumentParser,
    TrainingArguments,
    set_seed,
)

from .adapter import NeuronConfig
from .arguments import ModelArguments, load_model_and_tokenizer, parse_recipe
from .crosslingual import (
    encode_nli_classification,
    encode_nli_prompt,
    encode_qa_prompt,
    evaluate_nli_classification,
    evaluate_nli_prompt,
    evaluate_qa,
    load_xnli,
    load_xquad,
    paper_split,
)
from .neuron_set import NeuronSet
from .selection import random_neurons
from .trainer import NeuronTrainer

logger = logging.getLogger("lsn.train")

Condition = Literal["none", "lora", "neuron-lora", "random-neuron-lora", "neuron-full"]
CONDITIONS: tuple[str, ...] = get_args(Condition)
NEURON_CONDITIONS = ("neuron-lora", "random-neuron-lora", "neuron-full")


def _adapter_default(name: str):
    """The adapter's own default, so recipes and `NeuronConfig` share one set of defaults."""
    return NeuronConfig.__dataclass_fields__[name].default


@dataclass
class NeuronArguments:
    condition: Condition = field(default="neuron-lora", metadata={"help": "The adapter trained (see the module doc)."})
    neurons: str | None = field(
        default=None,
        metadata={
            "help": "Neuron set (path or hub id) for the neuron conditions; `lsn:demo-lape` for the demo model's."
        },
    )
    neuron_groups: list[str] | None = field(
        default=None, metadata={"help": "Groups of the set to train (their union; default: all)."}
    )
    r: int = field(default=_adapter_default("r"), metadata={"help": "LoRA rank."})
    lora_alpha: float = field(default=_adapter_default("lora_alpha"), metadata={"help": "LoRA alpha (the paper: 2r)."})
    lora_dropout: float = field(default=_adapter_default("lora_dropout"), metadata={"help": "LoRA dropout."})
    target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Modules to adapt (default: gate_proj for neuron conditions, q/k/v/o_proj for lora)."},
    )
    dense_lora_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "neuron-lora / random-neuron-lora: also a dense LoRA on these modules in the same adapter, e.g. "
            "[q_proj, k_proj, v_proj] as Mondal et al.'s XQuAD runs (default: none)."
        },
    )
    random_seed: int = field(default=0, metadata={"help": "Seed of the random-neuron control."})

    def __post_init__(self) -> None:
        if self.condition in NEURON_CONDITIONS and not self.neurons:
            raise ValueError(f"`condition: {self.condition}` needs `neurons:` (a neuron set path or hub id).")
        if self.condition not in NEURON_CONDITIONS:
            ignored = [name for name in ("neurons", "neuron_groups") if getattr(self, name)]
            if self.condition == "none":
                ignored += [
                    name
                    for name in ("r", "lora_alpha", "lora_dropout", "target_modules")
                    if getattr(self, name) != NeuronArguments.__dataclass_fields__[name].default
                ]
            if ignored:
                warnings.warn(f"`condition: {self.condition}` ignores {ignored}.", stacklevel=3)
        if self.dense_lora_modules and self.condition not in ("neuron-lora", "random-neuron-lora"):
            warnings.warn(
                f"`condition: {self.condition}` ignores `dense_lora_modules` (neuron-lora conditions only; "
                "`lora` sets its modules with `target_modules`).",
                stacklevel=3,
            )


@dataclass
class DataArguments:
    task: Literal["xnli", "xquad"] = field(default="xnli", metadata={"help": "The cross-lingual task."})
    format: Literal["classification", "prompt"] | None = field(
        default=None,
        metadata={"help": "XNLI: classification (a head on the last token, the default) or prompt (label words)."},
    )
    train_language: str = field(default="en", metadata={"help": "Language trained on."})
    eval_languages: list[str] = field(
        default_factory=lambda: ["en"], metadata={"help": "Languages evaluated zero-shot."}
    )
    data_dir: str | None = field(
        default=None,
        metadata={"help": "Local files in the hub schemas instead of the hub; `lsn:world` for the embedded world's."},
    )
    train_fraction: float = field(
        default=0.25, metadata={"help": "XNLI: share of the training split used (the paper: 0.25)."}
    )
    xquad_train_fraction: float = field(
        default=0.8, metadata={"help": "XQuAD: first share of validation to train, the rest to test."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Training examples at most."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluation examples per language at most."})
    max_length: int = field(default=256, metadata={"help": "Tokens per example at most."})
    nli_format: Literal["lsn", "mondal"] = field(
        default="lsn",
        metadata={
            "help": "XNLI classification input: lsn (premise + EOS + hypothesis, a shuffled `train_fraction`) or "
            "mondal (their code: premise + ' ' + EOS + ' ' + hypothesis padded to 512, rows of `max_length` "
            "tokens or more dropped, the rest cut to `max_length`; the FIRST `train_fraction` of train, unshuffled)."
        },
    )
    prompt_style: Literal["lsn", "mondal"] = field(
        default="lsn",
        metadata={
            "help": "XQuAD prompt: lsn (a long context is cut) or mondal (their Alpaca prompt; rows of "
            "`max_length - 1` tokens or more dropped, in training and evaluation)."
        },
    )
    loss_on: Literal["answer", "sequence"] = field(
        default="answer",
        metadata={"help": "Prompt formats: loss on the answer only, or on the whole sequence (Mondal et al.'s code)."},
    )
    qa_metric: Literal["string", "token_ids"] = field(
        default="string",
        metadata={"help": "XQuAD: SQuAD string EM/F1, or EM/F1 on token ids (Mondal et al.'s code)."},
    )
    max_new_tokens: int = field(default=32, metadata={"help": "XQuAD: greedy tokens generated at most (theirs: 100)."})

    def __post_init__(self) -> None:
        if self.task == "xquad" and self.format is not None:
            warnings.warn(f"`format: {self.format}` is ignored for `task: xquad` (always a prompt).", stacklevel=3)
        if self.task == "xnli" and self.format is None:
            self.format = "classification"
        defaults = DataArguments.__dataclass_fields__
        if self.task == "xnli":
            ignored = [
                n for n in ("prompt_style", "qa_metric", "max_new_tokens") if getattr(self, n) != defaults[n].default
            ]
            if self.format == "classification" and self.loss_on != "answer":
                ignored.append("loss_on")
        else:
            ignored = ["nli_format"] if self.nli_format != "lsn" else []
        if self.task == "xnli" and self.format == "prompt" and self.nli_format != "lsn":
            ignored.append("nli_format")
        if ignored:
            warnings.warn(f"`task: {self.task}` (format {self.format}) ignores {ignored}.", stacklevel=3)

    @property
    def classification(self) -> bool:
        return self.task == "xnli" and self.format == "classification"


def build_parser() -> HfArgumentParser:
    """The parser of `python -m lsn.train` (its dataclasses, in `main`'s order)."""
    return HfArgumentParser(
        [ModelArguments, NeuronArguments, DataArguments, TrainingArguments],
        prog="python -m lsn.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def datasets_for(data: DataArguments, tokenizer):
    """(encoded training set, {language: raw evaluation set})."""
    if data.data_dir == "lsn:world":
        from .demo.tasks import world_task_files

        data = dataclasses.replace(data, data_dir=str(world_task_files()))
    if data.task == "xnli":
        train = load_xnli(data.train_language, "train", data_dir=data.data_dir)
        if not (data.classification and data.nli_format == "mondal"):  # theirs: the first rows, unshuffled
            train = train.shuffle(seed=0)
        train = train.select(range(max(1, int(len(train) * data.train_fraction))))
        evals = {
            lang: load_xnli(lang, "test", data_dir=data.data_dir, limit=data.max_eval_samples)
            for lang in data.eval_languages
        }
        if data.classification:
            encode = encode_nli_classification(tokenizer, data.max_length, data.nli_format)
        else:
            encode = encode_nli_prompt(tokenizer, data.max_length, data.loss_on)
    else:  # xquad
        train = paper_split(load_xquad(data.train_language, data_dir=data.data_dir), data.xquad_train_fraction)[0]
        evals = {}
        for lang in data.eval_languages:
            test = paper_split(load_xquad(lang, data_dir=data.data_dir), data.xquad_train_fraction)[1]
            evals[lang] = test.select(range(min(len(test), data.max_eval_samples or len(test))))
        encode = encode_qa_prompt(tokenizer, data.max_length, data.prompt_style, data.loss_on)
    if data.max_train_samples is not None:
        train = train.select(range(min(len(train), data.max_train_samples)))
    encoded = train.map(encode, batched=True, remove_columns=train.column_names)
    if len(encoded) == 0:  # the reference formats drop rows over the length limit
        raise ValueError(f"Every training row was dropped as too long for `max_length: {data.max_length}`; raise it.")
    return encoded, evals


def evaluate_all(model, tokenizer, data: DataArguments, evals, batch_size: int) -> dict[str, dict[str, float]]:
    out = {}
    for lang, ds in evals.items():
        if data.task == "xquad":
            out[lang] = evaluate_qa(
                model,
                tokenizer,
                ds,
                lang,
                batch_size,
                data.max_length,
                max_new_tokens=data.max_new_tokens,
                prompt_style=data.prompt_style,
                qa_metric=data.qa_metric,
            )
        elif data.format == "classification":
            out[lang] = evaluate_nli_classification(
                model, tokenizer, ds, batch_size, data.max_length, nli_format=data.nli_format
            )
        else:
            out[lang] = evaluate_nli_prompt(model, tokenizer, ds, batch_size, data.max_length)
        logger.info("%s: %s", lang, out[lang])
    return out


def adapter_config(neuron_args: NeuronArguments, data: DataArguments) -> PeftConfig | None:
    """The PEFT config of the condition (`None` for `none`); `NeuronTrainer` does the wrapping."""
    condition = neuron_args.condition
    task_type = "SEQ_CLS" if data.classification else "CAUSAL_LM"
    if condition == "none":
        return None
    if condition == "lora":
        return LoraConfig(
            r=neuron_args.r,
            lora_alpha=neuron_args.lora_alpha,
            lora_dropout=neuron_args.lora_dropout,
            target_modules=neuron_args.target_modules or ["q_proj", "k_proj", "v_proj", "o_proj"],
            task_type=task_type,
        )
    source = neuron_args.neurons
    if source == "lsn:demo-lape":
        from .demo.pretrain import demo_lape_neurons

        source = str(demo_lape_neurons())
    neurons = NeuronSet.from_pretrained(source)
    neurons = neurons.subset(neuron_args.neuron_groups or neurons.groups)
    if condition == "random-neuron-lora":
        neurons = random_neurons(neurons, seed=neuron_args.random_seed)
    return NeuronConfig(
        neurons=neurons,
        groups=neurons.groups,
        mode="full" if condition == "neuron-full" else "lora",
        r=neuron_args.r,
        lora_alpha=neuron_args.lora_alpha,
        lora_dropout=neuron_args.lora_dropout,
        target_modules=neuron_args.target_modules or ["gate_proj"],
        dense_lora_modules=neuron_args.dense_lora_modules if condition != "neuron-full" else None,
        task_type=task_type,
    )


def main(
    model_args: ModelArguments, neuron_args: NeuronArguments, data: DataArguments, training: TrainingArguments
) -> dict:
    # ---------------------------------------------------------------- model and data
    peft_config = adapter_config(neuron_args, data)  # a bad neuron set fails before the model loads
    set_seed(training.seed)  # before any weight is initialised (classification head, adapter)
    head = "sequence-classification" if data.classification else "causal-lm"
    model, tokenizer = load_model_and_tokenizer(model_args, head=head, num_labels=3 if data.classification else None)
    train_set, evals = datasets_for(data, tokenizer)
    collator = (
        DataCollatorWithPadding(tokenizer)
        if data.classification
        else DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, padding=True)
    )

    # ---------------------------------------------------------------- train
    trains = neuron_args.condition != "none" or data.classification
    if trains:
        if peft_config is None:  # `none` with a classification head: train the head only
            for name, param in model.named_parameters():
                param.requires_grad = name.startswith(("score", "classifier"))
        trainer = NeuronTrainer(
            model,
            training,
            peft_config=peft_config,
            train_dataset=train_set,
            data_collator=collator,
            processing_class=tokenizer,
        )
        trainer.train(resume_from_checkpoint=training.resume_from_checkpoint)
        trainer.save_model(training.output_dir)
        model = trainer.model
        main_process = trainer.is_world_process_zero()
    else:
        main_process = training.process_index == 0

    # ---------------------------------------------------------------- evaluate
    results = {}
    if main_process:
        results = evaluate_all(model, tokenizer, data, evals, training.per_device_eval_batch_size)
        out = Path(training.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        run = {
            "condition": neuron_args.condition,
            "task": data.task,
            "format": data.format,
            "world_size": training.world_size,
            "model": dataclasses.asdict(model_args),
            "neurons": dataclasses.asdict(neuron_args),
            "data": dataclasses.asdict(data),
        }
        (out / "lsn_run.json").write_text(json.dumps(run, indent=2), encoding="utf-8")
        (out / "eval_results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main(*parse_recipe(build_parser(), sys.argv[1:]))
