"""The world's NLI and QA items written as XNLI / XQuAD files, so the real loaders read them.

`data_dir: lsn:world` in a recipe resolves here: `xnli.<lang>.{train,validation,test}.jsonl` and
`xquad.<lang>.jsonl` for every world language, parallel across languages, made once and cached.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .pretrain import cache_dir
from .world import LANGUAGES, nli_items, qa_items, splits

__all__ = ["WORLD_DATA", "world_task_files"]

WORLD_DATA = "lsn:world"


def _write(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)


def world_task_files(directory: str | os.PathLike | None = None, nli_size: int = 3000, qa_size: int = 600) -> Path:
    """Write (if missing) the world's XNLI- and XQuAD-schema files; returns the directory."""
    directory = Path(directory or cache_dir() / f"world-tasks-{nli_size}-{qa_size}")
    stamp = directory / ".complete"
    if stamp.exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    for lang in LANGUAGES:
        for split, rows in splits(nli_items(lang, nli_size, seed=0), seed=0).items():
            _write(directory / f"xnli.{lang}.{split}.jsonl", rows)
        _write(directory / f"xquad.{lang}.jsonl", qa_items(lang, qa_size, seed=0))
    stamp.touch()
    return directory
