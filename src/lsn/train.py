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
Writes the adapter (with the neuron set and model card), `lsn_run.json`, and `eval_results.json`
(zero-shot, every language in `eval_languages`) into `output_dir`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

from .adapter import NeuronConfig
from .arguments import parse_recipe
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

CONDITIONS = ("none", "lora", "neuron-lora", "random-neuron-lora", "neuron-full")


@dataclass
class ModelArguments:
    model_name_or_path: str = field(metadata={"help": "Hub id or local path; `lsn:demo` is the embedded tiny model."})
    revision: str | None = field(default=None, metadata={"help": "Model revision."})
    dtype: str = field(default="auto", metadata={"help": "Weights dtype: auto, float32, bfloat16, float16."})
    load_in_4bit: bool = field(
        default=False, metadata={"help": "Load the base in 4-bit NF4 (needs bitsandbytes), as the paper."}
    )


@dataclass
class NeuronArguments:
    condition: str = field(default="neuron-lora", metadata={"help": f"One of {', '.join(CONDITIONS)}."})
    neurons: str | None = field(
        default=None,
        metadata={
            "help": "Neuron set (path or hub id) for the neuron conditions; `lsn:demo-lape` for the demo model's."
        },
    )
    neuron_groups: list[str] | None = field(
        default=None, metadata={"help": "Groups of the set to train (their union)."}
    )
    r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: float = field(default=16, metadata={"help": "LoRA alpha (the paper: 2r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Modules to adapt (default: gate_proj for neuron conditions, q/k/v/o_proj for lora)."},
    )
    random_seed: int = field(default=0, metadata={"help": "Seed of the random-neuron control."})


@dataclass
class DataArguments:
    task: str = field(default="xnli", metadata={"help": "xnli or xquad."})
    format: str = field(
        default="classification",
        metadata={"help": "XNLI: classification (a head on the last token) or prompt (label words)."},
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
        default=0.25, metadata={"help": "XNLI: share of the training split used (the paper: 25%)."}
    )
    xquad_train_fraction: float = field(
        default=0.8, metadata={"help": "XQuAD: first share of validation to train, the rest to test."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Training examples at most."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluation examples per language at most."})
    max_length: int = field(default=256, metadata={"help": "Tokens per example at most."})


def resolve_model_path(name: str) -> str:
    if name == "lsn:demo":
        from .demo.pretrain import demo_model_path

        return str(demo_model_path())
    return name


def load_model(model_args: ModelArguments, data: DataArguments):
    name = resolve_model_path(model_args.model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(name, revision=model_args.revision)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs = {
        "revision": model_args.revision,
        "dtype": model_args.dtype if model_args.dtype == "auto" else getattr(torch, model_args.dtype),
    }
    if model_args.load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
    if data.task == "xnli" and data.format == "classification":
        model = AutoModelForSequenceClassification.from_pretrained(name, num_labels=3, **kwargs)
        model.config.pad_token_id = tokenizer.pad_token_id
    else:
        model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    return model, tokenizer


def datasets_for(data: DataArguments, tokenizer):
    """(encoded training set, {language: raw evaluation set})."""
    if data.data_dir == "lsn:world":
        from .demo.tasks import world_task_files

        data = dataclasses.replace(data, data_dir=str(world_task_files()))
    if data.task == "xnli":
        if data.format not in ("classification", "prompt"):
            raise ValueError(f"`format` must be classification or prompt, got {data.format!r}.")
        train = load_xnli(data.train_language, "train", data_dir=data.data_dir)
        train = train.shuffle(seed=0).select(range(max(1, int(len(train) * data.train_fraction))))
        evals = {
            lang: load_xnli(lang, "test", data_dir=data.data_dir, limit=data.max_eval_samples)
            for lang in data.eval_languages
        }
        encode = (encode_nli_classification if data.format == "classification" else encode_nli_prompt)(
            tokenizer, data.max_length
        )
    elif data.task == "xquad":
        train = paper_split(load_xquad(data.train_language, data_dir=data.data_dir), data.xquad_train_fraction)[0]
        evals = {}
        for lang in data.eval_languages:
            test = paper_split(load_xquad(lang, data_dir=data.data_dir), data.xquad_train_fraction)[1]
            evals[lang] = test.select(range(min(len(test), data.max_eval_samples or len(test))))
        encode = encode_qa_prompt(tokenizer, data.max_length)
    else:
        raise ValueError(f"`task` must be xnli or xquad, got {data.task!r}.")
    if data.max_train_samples is not None:
        train = train.select(range(min(len(train), data.max_train_samples)))
    return train.map(encode, batched=True, remove_columns=train.column_names), evals


def evaluate_all(model, tokenizer, data: DataArguments, evals, batch_size: int) -> dict[str, dict[str, float]]:
    out = {}
    for lang, ds in evals.items():
        if data.task == "xquad":
            out[lang] = evaluate_qa(model, tokenizer, ds, lang, batch_size, data.max_length)
        elif data.format == "classification":
            out[lang] = evaluate_nli_classification(model, tokenizer, ds, batch_size, data.max_length)
        else:
            out[lang] = evaluate_nli_prompt(model, tokenizer, ds, batch_size, data.max_length)
        logger.info("%s: %s", lang, out[lang])
    return out


def wrap(model, neuron_args: NeuronArguments, data: DataArguments) -> tuple[torch.nn.Module, NeuronSet | None]:
    """The model with the condition's adapter, and the neurons it trains."""
    condition = neuron_args.condition
    if condition not in CONDITIONS:
        raise ValueError(f"`condition` must be one of {', '.join(CONDITIONS)}, got {condition!r}.")
    task_type = "SEQ_CLS" if data.task == "xnli" and data.format == "classification" else "CAUSAL_LM"
    if condition == "none":
        for name, param in model.named_parameters():
            param.requires_grad = task_type == "SEQ_CLS" and name.startswith(("score", "classifier"))
        return model, None
    if condition == "lora":
        config = LoraConfig(
            r=neuron_args.r,
            lora_alpha=neuron_args.lora_alpha,
            lora_dropout=neuron_args.lora_dropout,
            target_modules=neuron_args.target_modules or ["q_proj", "k_proj", "v_proj", "o_proj"],
            task_type=task_type,
        )
        return get_peft_model(model, config), None
    if not neuron_args.neurons:
        raise ValueError(f"`condition: {condition}` needs `neurons:` (a neuron set path or hub id).")
    source = neuron_args.neurons
    if source == "lsn:demo-lape":
        from .demo.pretrain import demo_lape_neurons

        source = str(demo_lape_neurons())
    neurons = NeuronSet.from_pretrained(source)
    neurons.check_compatible(model)
    groups = neuron_args.neuron_groups or neurons.groups
    neurons = neurons.subset(groups)
    if condition == "random-neuron-lora":
        neurons = random_neurons(neurons, seed=neuron_args.random_seed)
    config = NeuronConfig(
        neurons=neurons,
        groups=neurons.groups,
        mode="full" if condition == "neuron-full" else "lora",
        r=neuron_args.r,
        lora_alpha=neuron_args.lora_alpha,
        lora_dropout=neuron_args.lora_dropout,
        target_modules=neuron_args.target_modules or ["gate_proj"],
        task_type=task_type,
    )
    return get_peft_model(model, config), neurons


def main(
    model_args: ModelArguments, neuron_args: NeuronArguments, data: DataArguments, training: TrainingArguments
) -> dict:
    # ---------------------------------------------------------------- model and data
    set_seed(training.seed)  # before any weight is initialised (classification head, adapter)
    model, tokenizer = load_model(model_args, data)
    train_set, evals = datasets_for(data, tokenizer)
    model, neurons = wrap(model, neuron_args, data)
    classification = data.task == "xnli" and data.format == "classification"
    collator = (
        DataCollatorWithPadding(tokenizer)
        if classification
        else DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, padding=True)
    )

    # ---------------------------------------------------------------- train
    trains = not (neuron_args.condition == "none" and not classification)
    if trains:
        trainer_class = NeuronTrainer if neurons is not None else Trainer
        extra = {"neurons": neurons} if neurons is not None else {}
        trainer = trainer_class(
            model=model,
            args=training,
            train_dataset=train_set,
            data_collator=collator,
            processing_class=tokenizer,
            **extra,
        )
        trainer.train(resume_from_checkpoint=training.resume_from_checkpoint)
        trainer.save_model(training.output_dir)
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
    main(*parse_recipe([ModelArguments, NeuronArguments, DataArguments, TrainingArguments], sys.argv[1:]))
