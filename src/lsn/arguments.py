"""Recipe parsing and the one model loader shared by every entry point.

`python -m lsn.X recipe.yaml --learning_rate 1e-4` fills the entry point's dataclasses from the YAML, then applies
the flags, as the alignment-handbook's recipes do. Unknown YAML keys and values outside a field's `Literal` choices
are errors before any model loads. `ModelArguments` + `load_model_and_tokenizer` are used by `lsn` (the CLI),
`lsn.train` and `lsn.translate` alike, so `lsn:demo`, dtypes and 4-bit / 8-bit loading behave the same everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from transformers import HfArgumentParser

__all__ = ["ModelArguments", "load_model_and_tokenizer", "parse_recipe", "resolve_model_path", "yaml_to_flags"]

DEMO_MODEL = "lsn:demo"


@dataclass
class ModelArguments:
    """Which model to load, and how."""

    model_name_or_path: str = field(
        metadata={"help": f"Hub id or local directory of a transformers model; `{DEMO_MODEL}`: the embedded tiny one."}
    )
    revision: str | None = field(default=None, metadata={"help": "Model revision (branch, tag or commit)."})
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(
        default="auto", metadata={"help": "Weights dtype (auto: the checkpoint's)."}
    )
    load_in_4bit: bool = field(
        default=False, metadata={"help": "Load the base in 4-bit NF4 with double quantization (bitsandbytes)."}
    )
    load_in_8bit: bool = field(default=False, metadata={"help": "Load the base in 8-bit (bitsandbytes)."})

    def __post_init__(self) -> None:
        if self.load_in_4bit and self.load_in_8bit:
            raise ValueError("`load_in_4bit` and `load_in_8bit` exclude each other; choose one.")


def resolve_model_path(name: str) -> str:
    """`lsn:demo` -> the embedded model's directory; a local path must exist; anything else is a hub id."""
    if name == DEMO_MODEL:
        from .demo.pretrain import demo_model_path

        return str(demo_model_path())
    if name.startswith((".", "/", "~")) and not Path(name).expanduser().is_dir():
        raise FileNotFoundError(f"No model directory at `{name}`.")
    return name


def load_model_and_tokenizer(
    args: ModelArguments,
    *,
    head: Literal["auto", "causal-lm", "sequence-classification"] = "auto",
    num_labels: int | None = None,
    device=None,
    path: str | None = None,
):
    """(model in eval mode, tokenizer with a pad token) for `args`.

    `head="auto"` picks a seq2seq or causal LM by the model's config; `"sequence-classification"` adds a new head
    of `num_labels` (pad token set in the config, so the last real token is pooled). `path` loads another
    checkpoint with the same settings (e.g. a fine-tuned output directory).
    """
    import torch
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    name = resolve_model_path(path or args.model_name_or_path)
    kwargs: dict[str, Any] = {
        "revision": args.revision,
        "dtype": args.dtype if args.dtype == "auto" else getattr(torch, args.dtype),
    }
    if args.load_in_4bit or args.load_in_8bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = (
            BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch.bfloat16,
            )
            if args.load_in_4bit
            else BitsAndBytesConfig(load_in_8bit=True)
        )
    tokenizer = AutoTokenizer.from_pretrained(name, revision=args.revision)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if head == "sequence-classification":
        model = AutoModelForSequenceClassification.from_pretrained(name, num_labels=num_labels, **kwargs)
        model.config.pad_token_id = tokenizer.pad_token_id
    else:
        config = AutoConfig.from_pretrained(name, revision=args.revision)
        seq2seq = head == "auto" and config.is_encoder_decoder
        model = (AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM).from_pretrained(name, **kwargs)
    if device is not None and "quantization_config" not in kwargs:
        model.to(device)
    return model.eval(), tokenizer


def yaml_to_flags(config: dict[str, Any]) -> list[str]:
    """`{"a": 1, "b": [x, y], "c": True}` -> `["--a", "1", "--b", "x", "y", "--c", "true"]`."""
    flags: list[str] = []
    for key, value in config.items():
        if value is None:
            continue
        flags.append(f"--{key}")
        if isinstance(value, bool):
            flags.append(str(value).lower())
        elif isinstance(value, (list, tuple)):
            flags.extend(str(v) for v in value)
        elif isinstance(value, dict):
            flags.append(json.dumps(value))
        else:
            flags.append(str(value))
    return flags


def parse_recipe(parser: HfArgumentParser | Sequence[type], argv: Sequence[str]) -> tuple:
    """Dataclass instances from `argv = [recipe.yaml, --flag value, ...]` (the YAML is optional).

    `parser`: an entry point's `build_parser()` (or its dataclass types).
    """
    if not isinstance(parser, HfArgumentParser):
        parser = HfArgumentParser(list(parser))
    argv = list(argv)
    flags: list[str] = []
    if argv and argv[0].endswith((".yaml", ".yml")):
        path = Path(argv.pop(0))
        if not path.is_file():
            raise FileNotFoundError(f"No recipe at `{path}`.")
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(config, dict):
            raise ValueError(f"Recipe `{path}` must be a mapping of field: value.")
        known = {f for cls in parser.dataclass_types for f in cls.__dataclass_fields__}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"Recipe `{path}` has unknown fields {unknown}; check their spelling.")
        flags = yaml_to_flags(config)
    return parser.parse_args_into_dataclasses(args=flags + argv)
