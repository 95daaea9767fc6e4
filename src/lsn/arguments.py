"""Recipe parsing: a YAML file of dataclass fields, overridden by command-line flags.

`python -m lsn.X recipe.yaml --learning_rate 1e-4` fills the dataclasses from the YAML, then
applies the flags, as the alignment-handbook's recipes do. Unknown YAML keys are an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

__all__ = ["parse_recipe", "yaml_to_flags"]


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
            import json

            flags.append(json.dumps(value))
        else:
            flags.append(str(value))
    return flags


def parse_recipe(dataclass_types: Sequence[type], argv: Sequence[str]) -> tuple:
    """Dataclass instances from `argv = [recipe.yaml, --flag value, ...]` (the YAML is optional)."""
    argv = list(argv)
    flags: list[str] = []
    if argv and argv[0].endswith((".yaml", ".yml")):
        path = Path(argv.pop(0))
        if not path.is_file():
            raise FileNotFoundError(f"No recipe at `{path}`.")
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(config, dict):
            raise ValueError(f"Recipe `{path}` must be a mapping of field: value.")
        known = {f for cls in dataclass_types for f in cls.__dataclass_fields__}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"Recipe `{path}` has unknown fields {unknown}; check their spelling.")
        flags = yaml_to_flags(config)
    parser = HfArgumentParser(list(dataclass_types))
    return parser.parse_args_into_dataclasses(args=flags + argv)
