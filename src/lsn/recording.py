"""Record activation statistics with forward hooks: streaming, multi-process, resumable.

One inference pass over each group's batches; hooks on every FFN activation add, on the
model's own device, how often each neuron fired (DESIGN.md §1: activation > 0, padding
never counted). Nothing is copied to the host per batch. Under `accelerate launch` each
rank records its own shard and the counters are summed at the end; with `checkpoint=`
each rank saves its counters every `checkpoint_every` batches, and a restart with the
same arguments skips what is done.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from tqdm.auto import tqdm

from .corpora import Batch, CorpusSpec, corpus_fingerprint, describe_corpus, iter_batches, open_corpus
from .hooks import activation_hooks
from .models import NeuronSite, find_neuron_sites, first_device, model_shape, unwrap_model
from .stats import ActivationStats, atomic_save_file

logger = logging.getLogger(__name__)

__all__ = ["record_activations"]


@dataclass
class _Accumulators:
    """Per-layer counters on each layer's device, laid out [groups, neurons] for row updates."""

    counts: list[torch.Tensor]
    sums: list[torch.Tensor] | None
    quantile_sums: list[torch.Tensor] | None
    above_quantile: list[torch.Tensor] | None
    above_threshold: list[torch.Tensor] | None

    @classmethod
    def create(
        cls, sites: list[NeuronSite], groups: int, record_sums: bool, quantile: float | None, threshold: bool = False
    ) -> _Accumulators:
        def zeros(dtype):
            return [torch.zeros(groups, s.num_neurons, dtype=dtype, device=s.device) for s in sites]

        return cls(
            counts=zeros(torch.int64),
            sums=zeros(torch.float64) if record_sums else None,
            quantile_sums=zeros(torch.float64) if quantile is not None else None,
            above_quantile=zeros(torch.int64) if quantile is not None else None,
            above_threshold=zeros(torch.int64) if threshold else None,
        )

    def named(self) -> dict[str, list[torch.Tensor]]:
        return {k: v for k, v in vars(self).items() if v is not None}

    def stacked(self) -> dict[str, torch.Tensor]:
        """CPU tensors of shape (layers, neurons, groups)."""
        return {k: torch.stack([t.cpu() for t in v]).permute(0, 2, 1).contiguous() for k, v in self.named().items()}

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, layers in self.named().items():
            saved = tensors[name].permute(0, 2, 1)
            for layer, t in enumerate(layers):
                t.copy_(saved[layer])

    def all_reduce(self) -> None:
        for layers in self.named().values():
            for t in layers:
                torch.distributed.all_reduce(t)


class _Recorder:
    """The hook state: which group is being recorded and which positions are real tokens."""

    def __init__(self, acc: _Accumulators, quantile: float | None, thresholds: list[torch.Tensor] | None = None):
        self.acc = acc
        self.quantile = quantile
        self.thresholds = thresholds
        self.group = 0
        self.masks: dict[str, torch.Tensor] = {}
        self.padded: dict[str, bool] = {}
        self.real: dict[str, int] = {}
        self._cache: dict[tuple, torch.Tensor] = {}

    def set_batch(self, batch: Batch) -> None:
        self.masks, self.padded, self.real, self._cache = {}, {}, {}, {}
        for side, mask in batch.masks.items():
            self.masks[side] = mask.reshape(-1)
            self.real[side] = int(mask.sum())
            self.padded[side] = self.real[side] < mask.numel()

    def _mask(self, side: str, device: torch.device, dtype: torch.dtype = torch.bool) -> torch.Tensor:
        """The side's flat mask as `dtype` on `device`, made once per batch, device and dtype."""
        key = (side, device, dtype)
        if key not in self._cache:
            self._cache[key] = self.masks[side].to(device=device, dtype=dtype, non_blocking=True)
        return self._cache[key]

    def __call__(self, site: NeuronSite, pre: torch.Tensor, act: torch.Tensor) -> None:
        # Must return None: a forward hook's return value would replace the activation.
        act = act.reshape(-1, act.shape[-1])  # [tokens, neurons]
        padded = self.padded[site.side]
        if act.dtype in (torch.float32, torch.float64):
            # A masked sum over tokens is a matrix-vector product: one BLAS call, exact for
            # 0/1 values below 2**24 tokens per batch.
            weights = self._mask(site.side, act.device, act.dtype)[None, :]  # [1, tokens]
            fired = torch.mm(weights, act.sign().clamp_(min=0))[0]
            self.acc.counts[site.index][self.group] += fired.to(torch.int64)
            if self.acc.sums is not None:
                self.acc.sums[site.index][self.group] += torch.mm(weights, act)[0]
        else:  # half precision: a product would round counts, so reduce booleans
            fired = act > 0
            if padded:
                fired &= self._mask(site.side, act.device)[:, None]
            self.acc.counts[site.index][self.group] += fired.sum(0)
            if self.acc.sums is not None:
                values = act.float()
                if padded:
                    values *= self._mask(site.side, act.device, values.dtype)[:, None]
                self.acc.sums[site.index][self.group] += values.sum(0)
        if self.quantile is not None or self.thresholds is not None:
            mask = self._mask(site.side, act.device) if padded else None
            pre = pre.reshape(-1, pre.shape[-1])
            if self.thresholds is not None:
                above = pre > self.thresholds[site.index]
                if mask is not None:
                    above &= mask[:, None]
                self.acc.above_threshold[site.index][self.group] += above.sum(0)
            if self.quantile is not None:
                self._quantile(site, pre.float(), mask)

    def _quantile(self, site: NeuronSite, pre: torch.Tensor, mask: torch.Tensor | None) -> None:
        n = self.real[site.side]
        if n == 0:
            return
        if mask is not None:
            pre = pre.masked_fill(~mask[:, None], math.inf)  # padding sorts last
        k = min(n, max(1, math.ceil(self.quantile * n)))
        q = pre.kthvalue(k, dim=0).values  # [neurons]
        above = pre > q
        if mask is not None:
            above &= mask[:, None]
        self.acc.quantile_sums[site.index][self.group] += q
        self.acc.above_quantile[site.index][self.group] += above.sum(0)


def _digest(tensor: torch.Tensor | None) -> str | None:
    """A short fingerprint of a tensor's values, so a resumed run refuses other thresholds."""
    if tensor is None:
        return None
    return hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()[:16]


def _describe_tokenizer(tokenizer) -> str | None:
    """Name, vocabulary size and a hash of the vocabulary of a tokenizer (None: batches given as token ids)."""
    if tokenizer is None:
        return None
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False).encode("utf-8")
    return f"{getattr(tokenizer, 'name_or_path', '')}:{len(tokenizer)}:{hashlib.sha256(vocab).hexdigest()[:16]}"


def _distributed() -> tuple[int, int]:
    """(rank, world size), joining the process group `accelerate launch` / `torchrun` set up."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        from accelerate import PartialState

        # Without CUDA a plain PartialState() reports one process in every rank.
        PartialState(cpu=not torch.cuda.is_available())
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _forward_fn(model: torch.nn.Module):
    """The backbone's forward (no LM head: its logits are not needed), with the cache off."""
    inner = unwrap_model(model)
    backbone = getattr(inner, "base_model", inner)
    if not isinstance(backbone, torch.nn.Module):
        backbone = inner
    accepts_cache = "use_cache" in inspect.signature(backbone.forward).parameters
    accepted = set(inspect.signature(backbone.forward).parameters)

    def forward(inputs: dict[str, torch.Tensor]) -> None:
        kwargs = {k: v for k, v in inputs.items() if k in accepted}
        if "decoder_input_ids" not in kwargs and "labels" in inputs and "decoder_input_ids" in accepted:
            kwargs["decoder_input_ids"] = _shift_labels(inner, inputs["labels"])
        if accepts_cache:
            kwargs["use_cache"] = False
        backbone(**kwargs)

    return forward


def _shift_labels(model: torch.nn.Module, labels: torch.Tensor) -> torch.Tensor:
    """Decoder inputs from labels, as seq2seq models do when given `labels` only."""
    config = model.config
    start = config.decoder_start_token_id
    shifted = labels.new_zeros(labels.shape)
    shifted[:, 1:] = labels[:, :-1].clone()
    shifted[:, 0] = start
    return shifted.masked_fill(shifted == -100, config.pad_token_id)


class _Checkpoint:
    """One safetensors file per rank: counters so far, and how many batches each group used."""

    def __init__(self, directory: str | os.PathLike, rank: int, world_size: int, fingerprint: dict):
        self.path = Path(directory) / f"rank{rank:05d}-of-{world_size:05d}.safetensors"
        self.fingerprint = fingerprint

    def load(self, acc: _Accumulators, tokens: dict[str, torch.Tensor]) -> dict[str, dict] | None:
        if not self.path.exists():
            return None
        try:
            with safe_open(str(self.path), framework="pt") as f:
                header = f.metadata() or {}
            saved = load_file(str(self.path))
            fingerprint = json.loads(header["fingerprint"])
            progress = json.loads(header["progress"])
        except (SafetensorError, OSError, KeyError, ValueError) as err:
            raise ValueError(f"Checkpoint `{self.path}` is damaged ({err!r}); delete it to start over.") from err
        if fingerprint != self.fingerprint:
            diff = sorted(
                k for k in set(fingerprint) | set(self.fingerprint) if fingerprint.get(k) != self.fingerprint.get(k)
            )
            raise ValueError(
                f"Checkpoint `{self.path}` was written with other arguments (differ: {', '.join(diff)}); "
                f"restart with the same arguments, or delete `{self.path.parent}` (or use another checkpoint "
                "directory) to start fresh."
            )
        acc.load(saved)
        for side, t in tokens.items():
            t.copy_(saved[f"tokens_{side}"])
        finished = [g for g, p in progress.items() if p["done"]]
        logger.warning(
            "Resuming from %s (groups done: %s; batches so far: %s); delete it to start fresh.",
            self.path.parent,
            ", ".join(finished) or "none",
            sum(p["batches"] for p in progress.values()),
        )
        return progress

    def save(self, acc: _Accumulators, tokens: dict[str, torch.Tensor], progress: dict[str, dict]) -> None:
        tensors = acc.stacked() | {f"tokens_{side}": t for side, t in tokens.items()}
        atomic_save_file(
            tensors,
            self.path,
            {"fingerprint": json.dumps(self.fingerprint), "progress": json.dumps(progress)},
        )


def record_activations(
    model: torch.nn.Module,
    corpora: Mapping[str, CorpusSpec],
    *,
    tokenizer=None,
    seq_len: int = 512,
    batch_size: int = 8,
    max_tokens: int | None = None,
    text_column: str = "text",
    record_sums: bool = False,
    quantile: float | None = None,
    threshold: torch.Tensor | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    progress: bool = True,
) -> ActivationStats:
    """Count, per group, how often each FFN neuron of `model` fires.

    Args:
        model: a transformers model (plain, PEFT-wrapped, or dispatched over devices).
        corpora: group name (a language, or a task such as `en-de`) -> texts (a list, an
            iterable, or a `datasets` Dataset with a `text_column`), or an iterable of batch
            dicts with `input_ids` (and `attention_mask`; `labels` for encoder-decoder models)
            used exactly as given.
        tokenizer: needed for text groups, which are tokenized, concatenated and packed into
            `seq_len`-token windows (no padding), `max_tokens` per group at most.
        record_sums: also sum each neuron's activation (for mean-value interventions).
        quantile: also estimate, per batch, this quantile of each neuron's pre-activation and
            count tokens above it (the score of Mondal et al. 2025; e.g. `0.9`).
        threshold: a fixed pre-activation threshold per neuron, shape `(layers, neurons)`;
            also count, per group, the tokens above it. With `first_pass.pooled_quantile()`
            this is the percentile pooled over all groups (a two-pass selection).
        checkpoint: a directory; counters are saved there every `checkpoint_every` batches and
            a restart with the same arguments continues where the last save left off.
        progress: show a progress bar (tokens/s) per group on the main process.

    Returns:
        `ActivationStats` with the counts of all processes summed (identical on every rank).
    """
    if not corpora:
        raise ValueError("`corpora` is empty: give at least one group, e.g. `{'en': texts}`.")
    if quantile is not None and not 0 < quantile < 1:
        raise ValueError(f"`quantile` must lie in (0, 1), got {quantile}.")
    if seq_len < 1 or batch_size < 1:
        raise ValueError(f"`seq_len` and `batch_size` must be positive, got {seq_len} and {batch_size}.")
    sites = find_neuron_sites(model)
    shape = model_shape(model)
    if threshold is not None:
        expected = (shape["num_layers"], shape["num_neurons"])
        if tuple(threshold.shape) != expected:
            raise ValueError(
                f"`threshold` has shape {tuple(threshold.shape)} but the model has {expected[0]} layers x "
                f"{expected[1]} neurons: compute it from statistics of this model."
            )
        threshold = threshold.detach().float().cpu()
    config = getattr(unwrap_model(model), "config", None)
    encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
    groups = list(corpora)
    opened = {g: open_corpus(g, src, text_column) for g, src in corpora.items()}
    rank, world_size = _distributed()
    device = first_device(model)

    acc = _Accumulators.create(sites, len(groups), record_sums, quantile, threshold is not None)
    sides = ("encoder", "decoder") if encoder_decoder else ("decoder",)
    tokens = {side: torch.zeros(len(groups), dtype=torch.int64) for side in sides}
    metadata = {
        **shape,
        "sites": [s.path for s in sites],
        "seq_len": seq_len,
        "batch_size": batch_size,
        "max_tokens": max_tokens,
        "corpora": {g: describe_corpus(src) for g, src in corpora.items()},
    }
    # Everything that determines the counts: a resumed run with any other value is refused.
    fingerprint = {
        k: metadata[k]
        for k in ("num_layers", "num_neurons", "model_name", "revision", "sites", "seq_len", "batch_size", "max_tokens")
    } | {
        "corpora": {g: corpus_fingerprint(src) for g, src in corpora.items()},
        "text_column": text_column,
        "tokenizer": _describe_tokenizer(tokenizer),
        "dtype": str(next(model.parameters()).dtype),
        "groups": groups,
        "world_size": world_size,
        "record_sums": record_sums,
        "quantile": quantile,
        "threshold": _digest(threshold),
    }
    ckpt = _Checkpoint(checkpoint, rank, world_size, fingerprint) if checkpoint is not None else None
    done = {g: {"batches": 0, "done": False} for g in groups}
    if ckpt is not None:
        done = ckpt.load(acc, tokens) or done

    thresholds = None
    if threshold is not None:
        thresholds = [threshold[s.index].to(s.device) for s in sites]
    recorder = _Recorder(acc, quantile, thresholds)
    forward = _forward_fn(model)
    was_training = model.training
    model.eval()
    try:
        with activation_hooks(sites, recorder), torch.inference_mode():
            for k, group in enumerate(groups):
                if done[group]["done"]:
                    continue
                recorder.group = k
                stream = iter_batches(
                    opened[group],
                    tokenizer=tokenizer,
                    seq_len=seq_len,
                    batch_size=batch_size,
                    max_tokens=max_tokens,
                    encoder_decoder=encoder_decoder,
                    rank=rank,
                    world_size=world_size,
                    skip_batches=done[group]["batches"],
                )
                bar = tqdm(desc=f"record {group}", unit="tok", unit_scale=True, disable=not progress or rank != 0)
                with bar:
                    for batch in stream:
                        recorder.set_batch(batch)
                        forward({k_: v.to(device, non_blocking=True) for k_, v in batch.inputs.items()})
                        for side in sides:
                            tokens[side][k] += recorder.real[side]
                        done[group]["batches"] += 1
                        bar.update(recorder.real["decoder"])
                        if ckpt is not None and done[group]["batches"] % checkpoint_every == 0:
                            ckpt.save(acc, tokens, done)
                done[group]["done"] = True
                if ckpt is not None:
                    ckpt.save(acc, tokens, done)
    finally:
        model.train(was_training)

    batches = torch.tensor([done[g]["batches"] for g in groups], dtype=torch.int64)
    if world_size > 1:
        acc.all_reduce()
        reduced = [tokens[s].to(device) for s in sides] + [batches.to(device)]
        for t in reduced:
            torch.distributed.all_reduce(t)
        tokens = {s: reduced[i].cpu() for i, s in enumerate(sides)}
        batches = reduced[-1].cpu()

    missing = [g for k, g in enumerate(groups) if int(tokens["decoder"][k]) == 0]
    if missing:
        raise ValueError(f"Group(s) {missing} produced no tokens: give each group some text, or leave it out.")
    stacked = acc.stacked()
    quantile_means = None
    if quantile is not None:
        quantile_means = stacked["quantile_sums"] / batches.clamp_min(1).double()
    return ActivationStats(
        counts=stacked["counts"],
        tokens=tokens["decoder"],
        groups=groups,
        sums=stacked.get("sums"),
        quantile=quantile,
        quantile_means=quantile_means,
        quantile_batches=batches if quantile is not None else None,
        above_quantile=stacked.get("above_quantile"),
        threshold=threshold,
        above_threshold=stacked.get("above_threshold"),
        encoder_tokens=tokens.get("encoder"),
        metadata=metadata | {"world_size": world_size, "record_sums": record_sums},
    )
