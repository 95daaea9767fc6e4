"""Corpora to model batches: packing texts into fixed windows, sharding over processes.

As in the reference (Tang et al. 2024), text is tokenized, concatenated and cut into
`seq_len` windows (no padding; only the last window may be shorter). Batches are numbered
over the whole corpus and batch `i` belongs to rank `i % world_size`, so N processes see
exactly the batches one process would (per-batch statistics such as quantile estimates
included). Batch dicts given by the user are used as given, sharded the same way.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

__all__ = [
    "Batch",
    "Corpus",
    "CorpusFile",
    "CorpusSpec",
    "HubCorpus",
    "corpus_fingerprint",
    "describe_corpus",
    "iter_batches",
    "load_corpus",
    "open_corpus",
]

_TOKENIZE_CHUNK = 256


@dataclass
class Batch:
    """Model inputs (on CPU) and, per side, which positions are real tokens."""

    inputs: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]  # side -> bool [batch, seq]

    def num_tokens(self, side: str = "decoder") -> int:
        return int(self.masks[side].sum())


COUNT_PADDING = "lsn_count_padding"  # a batch key: count every position, padding included
CorpusSpec = Any  # texts (list / iterable / datasets.Dataset) or an iterable of batch dicts


@dataclass
class Corpus:
    """A group's source, checked: `kind` is `"texts"` or `"batches"`."""

    group: str
    kind: str
    items: Iterable


def _peek(source: Iterable) -> tuple[Any, Iterator]:
    iterator = iter(source)
    try:
        first = next(iterator)
    except StopIteration:
        return None, iter(())
    return first, itertools.chain([first], iterator)


def open_corpus(group: str, source: CorpusSpec, text_column: str = "text") -> Corpus:
    """Check a group's source before any work starts; empty or malformed sources raise here."""
    kind, items = _kind(group, source, text_column)
    return Corpus(group, kind, items)


def _kind(group: str, source: CorpusSpec, text_column: str) -> tuple[str, Iterable]:
    if isinstance(source, (str, bytes)):
        raise TypeError(f"Group `{group}` is a single string; pass a list of texts, e.g. `{{'{group}': [text, ...]}}`.")
    column_names = getattr(source, "column_names", None)
    if column_names is not None and not isinstance(source, Mapping):  # a datasets.Dataset
        if isinstance(column_names, dict):
            raise TypeError(f"Group `{group}` is a DatasetDict; pick a split, e.g. `ds['train']`.")
        if "input_ids" in column_names and text_column not in column_names:
            raise TypeError(
                f"Group `{group}` is a tokenized Dataset; pass batches (dicts of tensors) or the text column."
            )
        if text_column not in column_names:
            raise ValueError(
                f"Group `{group}`: the dataset has no `{text_column}` column (columns: {column_names}); "
                "pass `text_column=` to name the text column."
            )
        source = (row[text_column] for row in source)
    first, iterator = _peek(source)
    if first is None:
        raise ValueError(f"Group `{group}` is empty: give it some text, or leave it out.")
    if isinstance(first, str):
        return "texts", iterator
    if isinstance(first, Mapping) and "input_ids" in first:
        return "batches", iterator
    raise TypeError(
        f"Group `{group}` yields {type(first).__name__}; expected texts (str) or batch dicts with `input_ids`."
    )


def _windows(texts: Iterable[str], tokenizer, seq_len: int, max_tokens: int | None) -> Iterator[list[int]]:
    """Pack tokenized texts into windows of `seq_len` tokens, `max_tokens` in all."""
    if seq_len < 1:  # an empty window would never fill the budget: an endless loop
        raise ValueError(f"`seq_len` must be positive, got {seq_len}.")
    separator = []
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    if tokenizer.bos_token_id is None or probe[:1] != [tokenizer.bos_token_id]:
        # No BOS marks document starts: separate documents with EOS, as GPT-2 style packing does.
        separator = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    budget = max_tokens if max_tokens is not None else float("inf")
    buffer: list[int] = []
    texts = iter(texts)
    while budget > 0:
        raw = list(itertools.islice(texts, _TOKENIZE_CHUNK))
        if not raw:
            break
        chunk = [t for t in raw if t]
        for ids in tokenizer(chunk, add_special_tokens=True)["input_ids"] if chunk else []:
            buffer.extend(ids + separator)
        while len(buffer) >= seq_len and budget >= seq_len:
            yield buffer[:seq_len]
            del buffer[:seq_len]
            budget -= seq_len
        if budget < seq_len and len(buffer) >= budget:
            break
    tail = buffer[: int(min(len(buffer), budget, seq_len))]
    if tail:
        yield tail


def _pack(windows: list[list[int]], pad_id: int) -> Batch:
    length = max(len(w) for w in windows)
    input_ids = torch.full((len(windows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(windows), length), dtype=torch.long)
    for i, w in enumerate(windows):
        input_ids[i, : len(w)] = torch.tensor(w, dtype=torch.long)
        mask[i, : len(w)] = 1
    return Batch({"input_ids": input_ids, "attention_mask": mask}, {"decoder": mask.bool()})


def _as_batch(group: str, batch: Mapping, encoder_decoder: bool) -> Batch:
    """A batch dict as model inputs and real-token masks. The key `lsn_count_padding` (true) makes every position
    count, padding included (Tan et al.'s identification); it is not passed to the model."""
    batch = dict(batch)
    if bool(batch.pop(COUNT_PADDING, False)):
        out = _as_batch(group, batch, encoder_decoder)
        return Batch(out.inputs, {side: torch.ones_like(m) for side, m in out.masks.items()})
    inputs = {k: (v if isinstance(v, torch.Tensor) else torch.as_tensor(v)) for k, v in batch.items()}
    input_ids = inputs["input_ids"]
    if input_ids.ndim != 2:
        raise ValueError(f"Group `{group}`: `input_ids` must be [batch, seq], got shape {tuple(input_ids.shape)}.")
    mask = inputs.get("attention_mask")
    mask = torch.ones_like(input_ids, dtype=torch.bool) if mask is None else mask.bool()
    if not encoder_decoder:
        return Batch(inputs, {"decoder": mask})
    if "decoder_attention_mask" in inputs:
        decoder_mask = inputs["decoder_attention_mask"].bool()
    elif "labels" in inputs:
        decoder_mask = inputs["labels"] != -100
    elif "decoder_input_ids" in inputs:
        decoder_mask = torch.ones_like(inputs["decoder_input_ids"], dtype=torch.bool)
    else:
        raise ValueError(
            f"Group `{group}`: an encoder-decoder model needs `labels` or `decoder_input_ids` in each batch."
        )
    return Batch(inputs, {"encoder": mask, "decoder": decoder_mask})


def iter_batches(
    corpus: Corpus,
    *,
    tokenizer=None,
    seq_len: int = 512,
    batch_size: int = 8,
    max_tokens: int | None = None,
    encoder_decoder: bool = False,
    rank: int = 0,
    world_size: int = 1,
    skip_batches: int = 0,
) -> Iterator[Batch]:
    """This rank's batches of one group, after skipping `skip_batches` of them (resume)."""
    group, items = corpus.group, corpus.items
    if corpus.kind == "batches":
        if max_tokens is not None:
            logger.warning("Group `%s` is given as batches, used whole: `max_tokens` does not apply to it.", group)
        mine = itertools.islice(items, rank, None, world_size)
        for batch in itertools.islice(mine, skip_batches, None):
            yield _as_batch(group, batch, encoder_decoder)
        return

    if tokenizer is None:
        raise ValueError(f"Group `{group}` is text: pass `tokenizer=` to tokenize it, or give batches of `input_ids`.")
    if encoder_decoder:
        raise ValueError(
            f"Group `{group}` is plain text, but an encoder-decoder model needs source and target: "
            "pass batches with `input_ids` and `labels` (see `lsn.translate`)."
        )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    windows = _windows(items, tokenizer, seq_len, max_tokens)
    batches = iter(lambda: list(itertools.islice(windows, batch_size)), [])  # global batches of windows
    for chunk in itertools.islice(batches, rank + skip_batches * world_size, None, world_size):
        yield _pack(chunk, pad_id)


@dataclass(frozen=True)
class CorpusFile:
    """The texts of a local `.txt` (a document per line) or `.jsonl` file; iterable any number of times."""

    path: Path
    text_column: str = "text"

    def __iter__(self) -> Iterator[str]:
        if self.path.suffix == ".jsonl":
            return _jsonl_texts(self.path, self.text_column)
        return _text_lines(self.path)

    @property
    def description(self) -> str:
        return str(self.path)

    def fingerprint(self) -> str:
        """The file's size and a hash of its first and last MiB (and the text column of `.jsonl` files)."""
        size = self.path.stat().st_size
        digest = hashlib.sha256(f"{size}:{self.text_column if self.path.suffix == '.jsonl' else ''}".encode())
        with self.path.open("rb") as f:
            digest.update(f.read(_FINGERPRINT_BYTES))
            if size > _FINGERPRINT_BYTES:
                f.seek(max(_FINGERPRINT_BYTES, size - _FINGERPRINT_BYTES))
                digest.update(f.read())
        return f"file:{self.path.name}:{size}:{digest.hexdigest()[:16]}"


@dataclass(frozen=True)
class HubCorpus:
    """A hub dataset's text column, streamed; `dataset` is the opened (streaming) split."""

    name: str
    config: str | None
    split: str
    text_column: str = "text"
    dataset: Any = field(default=None, repr=False, compare=False)

    def __iter__(self) -> Iterator[str]:
        return (row[self.text_column] for row in self.dataset)

    @property
    def description(self) -> str:
        return f"{self.name}:{self.config}" if self.config else self.name

    def fingerprint(self) -> str:
        return f"hub:{self.name}:{self.config or ''}:{self.split}:{self.text_column}"


_FINGERPRINT_BYTES = 1 << 20


def load_corpus(spec: str, *, text_column: str = "text", split: str = "train") -> CorpusFile | HubCorpus:
    """Texts from a local `.txt` (a document per line) / `.jsonl` file, or a hub dataset.

    Hub datasets are named `NAME[:CONFIG]`, e.g. `wikimedia/wikipedia:20231101.fr`, and are
    streamed, so a corpus larger than the disk works. A name that looks like a file (a dot in a bare name such
    as `en.text`, or a folder that exists here) and is not one is refused at once, not looked up on the hub.
    """
    path = Path(spec)
    if path.is_file():
        return CorpusFile(path, text_column)
    looks_local = path.suffix in (".txt", ".jsonl") or spec.startswith((".", "/", "~"))
    looks_local |= ("/" not in spec and "." in spec.partition(":")[0]) or (len(path.parts) > 1 and path.parent.is_dir())
    if looks_local:
        raise FileNotFoundError(f"No corpus file at `{spec}` (nor is it a hub dataset name).")
    import datasets

    name, _, config = spec.partition(":")
    try:
        dataset = datasets.load_dataset(name, config or None, split=split, streaming=True)
    except OSError as err:  # DatasetNotFoundError and connection errors are OSErrors
        raise FileNotFoundError(
            f"No local file `{spec}`, and the hub dataset `{name}` could not be opened ({err})."
        ) from err
    return HubCorpus(name, config or None, split, text_column, dataset)


def _text_lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line := line.rstrip("\n"):
                yield line


def _jsonl_texts(path: Path, text_column: str) -> Iterator[str]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)[text_column]
            except (json.JSONDecodeError, KeyError) as err:
                raise ValueError(
                    f"`{path}` line {n}: expected a JSON object with a `{text_column}` field ({err!r})."
                ) from err


def describe_corpus(source: CorpusSpec) -> str:
    """A short description of a corpus, for metadata."""
    if hasattr(source, "description"):
        return source.description
    if isinstance(source, (str, Path)):
        return str(source)
    info = getattr(source, "info", None)
    if info is not None and getattr(info, "dataset_name", None):
        return f"datasets:{info.dataset_name}:{getattr(info, 'config_name', '')}"
    if isinstance(source, (list, tuple)):
        return f"{type(source).__name__} of {len(source)} items"
    return type(source).__name__


def corpus_fingerprint(source: CorpusSpec) -> str:
    """What a corpus holds, in a short string that changes when its content does (for resumable recording).

    Files (`load_corpus`) hash their size and ends; lists hash every text or batch; a `datasets.Dataset` gives
    its own fingerprint. A one-shot iterator (a generator) cannot be read twice, so only its type is known.
    """
    if hasattr(source, "fingerprint") and callable(source.fingerprint):
        return source.fingerprint()
    if isinstance(source, (list, tuple)):
        digest = hashlib.sha256()
        for item in source:
            if isinstance(item, str):
                digest.update(item.encode("utf-8") + b"\0")
            elif isinstance(item, Mapping):
                for key in sorted(item):
                    digest.update(key.encode() + torch.as_tensor(item[key]).contiguous().numpy().tobytes())
            else:
                digest.update(repr(item).encode())
        return f"{type(source).__name__}:{len(source)}:{digest.hexdigest()[:16]}"
    dataset_fingerprint = getattr(source, "_fingerprint", None)
    if isinstance(dataset_fingerprint, str):
        return f"dataset:{dataset_fingerprint}"
    return describe_corpus(source)
