"""Sentence responses: each neuron's activation mean-pooled over one sentence's real tokens.

Kojima et al. 2024 score neurons as detectors of a language from such responses (see
`lsn.selection_ap`). Unlike `record_activations`, which packs text into windows and counts
tokens, this keeps one row per sentence: `values` is `(sentences, layers, neurons)`, with each
sentence's group in `labels`. Sentences are tokenized one each and padded per batch; padding
never enters the mean. With `output=`, rows are written to disk in chunks as they are
computed, so a run larger than memory works; `SentenceResponses.load` reads either form.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from .hooks import activation_hooks
from .models import find_neuron_sites, first_device, model_shape, unwrap_model
from .stats import atomic_save_file

logger = logging.getLogger(__name__)

__all__ = ["SentenceResponses", "record_sentence_responses"]

_FORMAT, _FORMAT_VERSION = "lsn.SentenceResponses", 1
_INDEX = "responses.json"


@dataclass
class SentenceResponses:
    """Mean-pooled responses of every neuron to every sentence.

    Attributes:
        values: `(sentences, layers, neurons)` float32.
        labels: `(sentences,)` long, the index of each sentence's group in `groups`.
        groups: the group names.
        metadata: model facts (`model_shape`) and recording parameters.
    """

    values: torch.Tensor
    labels: torch.Tensor
    groups: list[str]
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.values.ndim != 3 or self.labels.shape != (self.values.shape[0],):
            raise ValueError(
                f"`values` must be (sentences, layers, neurons) and `labels` (sentences,); got "
                f"{tuple(self.values.shape)} and {tuple(self.labels.shape)}."
            )

    @property
    def num_layers(self) -> int:
        return self.values.shape[1]

    @property
    def num_neurons(self) -> int:
        return self.values.shape[2]

    def group_index(self, group: str) -> int:
        try:
            return self.groups.index(group)
        except ValueError:
            raise KeyError(f"No group `{group}` in these responses; groups: {self.groups}.") from None

    def save(self, path: str | os.PathLike) -> Path:
        """One safetensors file holding values, labels, groups and metadata."""
        path = Path(path)
        atomic_save_file({"values": self.values, "labels": self.labels}, path, _metadata(self.groups, self.metadata))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> SentenceResponses:
        """From `save`'s file, or from the chunk directory `record_sentence_responses(output=...)` writes."""
        path = Path(path)
        if path.is_dir():
            index = json.loads((path / _INDEX).read_text(encoding="utf-8"))
            chunks = [load_file(str(path / name)) for name in index["chunks"]]
            values = torch.cat([c["values"] for c in chunks]) if chunks else torch.zeros(0)
            labels = torch.cat([c["labels"] for c in chunks]) if chunks else torch.zeros(0, dtype=torch.long)
            return cls(values, labels, index["groups"], index["metadata"])
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != _FORMAT:
            raise ValueError(f"`{path}` is not an lsn SentenceResponses file (format {meta.get('format')!r}).")
        tensors = load_file(str(path))
        return cls(tensors["values"], tensors["labels"], json.loads(meta["groups"]), json.loads(meta["metadata"]))


def _metadata(groups: list[str], metadata: dict) -> dict[str, str]:
    return {
        "format": _FORMAT,
        "format_version": str(_FORMAT_VERSION),
        "groups": json.dumps(groups),
        "metadata": json.dumps(metadata),
    }


class _ChunkWriter:
    """Rows to `output/chunk-XXXXX.safetensors`, `chunk_size` sentences a file, and an index."""

    def __init__(self, output: Path, groups: list[str], metadata: dict, chunk_size: int):
        self.output, self.groups, self.metadata, self.chunk_size = output, groups, metadata, chunk_size
        self.values: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.chunks: list[str] = []
        output.mkdir(parents=True, exist_ok=True)

    def add(self, values: torch.Tensor, labels: torch.Tensor) -> None:
        self.values.append(values)
        self.labels.append(labels)
        if sum(v.shape[0] for v in self.values) >= self.chunk_size:
            self.flush()

    def flush(self) -> None:
        if not self.values:
            return
        name = f"chunk-{len(self.chunks):05d}.safetensors"
        atomic_save_file(
            {"values": torch.cat(self.values), "labels": torch.cat(self.labels)},
            self.output / name,
            _metadata(self.groups, self.metadata),
        )
        self.chunks.append(name)
        self.values, self.labels = [], []

    def close(self) -> None:
        self.flush()
        index = {"format": _FORMAT, "format_version": _FORMAT_VERSION, "groups": self.groups}
        index |= {"metadata": self.metadata, "chunks": self.chunks}
        (self.output / _INDEX).write_text(json.dumps(index, indent=1), encoding="utf-8")


def record_sentence_responses(
    model: nn.Module,
    corpora: Mapping[str, Iterable[str]],
    *,
    tokenizer,
    batch_size: int = 16,
    max_length: int = 128,
    output: str | os.PathLike | None = None,
    chunk_size: int = 4096,
    progress: bool = True,
) -> SentenceResponses:
    """Each neuron's activation averaged over each sentence's real tokens (decoder-only models).

    `corpora` maps a group (language) to its sentences. Sentences longer than `max_length`
    tokens are truncated. With `output=` (a directory) rows go to disk every `chunk_size`
    sentences and the returned object is read back from there.
    """
    if getattr(getattr(unwrap_model(model), "config", None), "is_encoder_decoder", False):
        raise ValueError("Sentence responses are recorded on decoder-only models; this one is encoder-decoder.")
    sentences = {g: [t for t in texts if t and t.strip()] for g, texts in corpora.items()}
    for group, texts in sentences.items():
        if not texts:
            raise ValueError(f"Group `{group}` has no sentences: give it some text, or leave it out.")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    sites = find_neuron_sites(model)
    groups = list(sentences)
    metadata = {**model_shape(model), "max_length": max_length, "pooling": "mean"}
    writer = _ChunkWriter(Path(output), groups, metadata, chunk_size) if output is not None else None
    rows: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    pooled: dict[int, torch.Tensor] = {}
    mask: torch.Tensor | None = None

    def pool(site, pre, act):  # act: [batch, seq, neurons]
        m = mask.to(device=act.device, dtype=torch.float32).unsqueeze(-1)
        pooled[site.index] = ((act.float() * m).sum(1) / m.sum(1).clamp_min(1)).cpu()  # [batch, neurons]

    device = first_device(model)
    total = sum(len(t) for t in sentences.values())
    bar = tqdm(total=total, desc="sentence responses", disable=not progress)
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "right"
    try:
        with activation_hooks(sites, pool), torch.inference_mode():
            for k, group in enumerate(groups):
                texts = sentences[group]
                for start in range(0, len(texts), batch_size):
                    batch = texts[start : start + batch_size]
                    inputs = tokenizer(batch, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
                    mask = inputs["attention_mask"]
                    model(**{n: t.to(device) for n, t in inputs.items()}, use_cache=False)
                    values = torch.stack([pooled[s.index] for s in sites], 1)  # [batch, layers, neurons]
                    label = torch.full((len(batch),), k, dtype=torch.long)
                    if writer is not None:
                        writer.add(values, label)
                    else:
                        rows.append(values)
                        labels.append(label)
                    bar.update(len(batch))
    finally:
        tokenizer.padding_side = padding_side
        bar.close()
    if writer is not None:
        writer.close()
        return SentenceResponses.load(writer.output)
    return SentenceResponses(torch.cat(rows), torch.cat(labels), groups, metadata)
