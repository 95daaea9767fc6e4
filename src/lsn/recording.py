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
from typing import Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from tqdm.auto import tqdm

from .corpora import Batch, CorpusSpec, corpus_fingerprint, describe_corpus, iter_batches, open_corpus
from .hooks import activation_hooks, output_hooks
from .models import (
    NeuronSite,
    base_layer,
    decoder_layers,
    find_neuron_sites,
    first_device,
    is_dtensor,
    model_shape,
    unwrap_model,
)
from .stats import ActivationStats, atomic_save_file

logger = logging.getLogger(__name__)

QuantileMethod = Literal["linear", "nearest"]

__all__ = ["QuantileMethod", "record_activations"]


@dataclass
class _Accumulators:
    """Per-layer counters on each layer's device, laid out [groups, neurons] for row updates."""

    counts: list[torch.Tensor]
    sums: list[torch.Tensor] | None
    pre_sums: list[torch.Tensor] | None
    quantile_sums: list[torch.Tensor] | None
    above_quantile: list[torch.Tensor] | None
    above_threshold: list[torch.Tensor] | None
    residual_sums: list[torch.Tensor] | None  # [groups, hidden] per decoder layer

    @classmethod
    def create(
        cls,
        sites: list[NeuronSite],
        groups: int,
        record_sums: bool,
        quantile: float | None,
        threshold: bool = False,
        hidden: int | None = None,
    ) -> _Accumulators:
        def zeros(dtype, width=None):
            return [torch.zeros(groups, width or s.num_neurons, dtype=dtype, device=s.device) for s in sites]

        return cls(
            counts=zeros(torch.int64),
            sums=zeros(torch.float64) if record_sums else None,
            pre_sums=zeros(torch.float64) if record_sums else None,
            quantile_sums=zeros(torch.float64) if quantile is not None else None,
            above_quantile=zeros(torch.int64) if quantile is not None else None,
            above_threshold=zeros(torch.int64) if threshold else None,
            residual_sums=zeros(torch.float64, hidden) if hidden else None,
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


QUANTILE_CHUNK_BYTES = 2**28  # float32 pre-activations per neuron chunk of the quantile estimate (256 MiB)


class NonFiniteActivationError(FloatingPointError):
    """A NaN or inf neuron activation during recording: counts from it would be corrupt."""


class _Recorder:
    """The hook state: which group is being recorded and which positions are real tokens.

    Each site writes the slice `site.neuron_range` of its full-width counters (the whole layer,
    or this rank's shard under tensor parallelism). Finiteness of every activation is folded
    into one flag per site on its device, read only by `check_finite` (no per-batch host sync).
    """

    def __init__(
        self,
        sites: list[NeuronSite],
        acc: _Accumulators,
        quantile: float | None,
        thresholds: list[torch.Tensor] | None = None,
        quantile_method: QuantileMethod = "linear",
    ):
        self.sites = sites
        self.acc = acc
        self.quantile = quantile
        self.quantile_method = quantile_method
        self.ranges = [slice(*s.neuron_range) for s in sites]
        self.thresholds = None if thresholds is None else [t[r] for t, r in zip(thresholds, self.ranges, strict=True)]
        self.finite = [torch.ones((), dtype=torch.bool, device=s.device) for s in sites]
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

    def residual(self, layer: int, hidden: torch.Tensor) -> None:
        """Add the real tokens' output hidden states of decoder layer `layer` (the residual stream)."""
        flat = hidden.reshape(-1, hidden.shape[-1]).float()  # [tokens, hidden]
        weights = self._mask("decoder", flat.device, flat.dtype)[None, :]  # [1, tokens]
        self.acc.residual_sums[layer][self.group] += torch.mm(weights, flat)[0]

    def check_finite(self) -> None:
        """Raise `NonFiniteActivationError` naming every layer that produced a NaN or inf so far."""
        bad = [s for s, ok in zip(self.sites, self.finite, strict=True) if not bool(ok)]
        if bad:
            raise NonFiniteActivationError(
                f"NaN or inf activations in {len(bad)} FFN layer(s), first `{bad[0].path}.{bad[0].family.activation}` "
                f"(layer {bad[0].index}); counts from them would be corrupt, so none are returned. Check the "
                "model's dtype (float16 overflows in some models: use bfloat16 or float32) and its weights."
            )

    def __call__(self, site: NeuronSite, pre: torch.Tensor, act: torch.Tensor) -> None:
        # Must return None: a forward hook's return value would replace the activation.
        act = act.reshape(-1, act.shape[-1])  # [tokens, local neurons]
        padded = self.padded[site.side]
        cols = self.ranges[site.index]
        self.finite[site.index] &= torch.isfinite(act.sum(dtype=torch.float32))  # NaN and inf propagate
        if act.dtype in (torch.float32, torch.float64):
            # A masked sum over tokens is a matrix-vector product: one BLAS call, exact for
            # 0/1 values below 2**24 tokens per batch.
            weights = self._mask(site.side, act.device, act.dtype)[None, :]  # [1, tokens]
            fired = torch.mm(weights, act.sign().clamp_(min=0))[0]
            self.acc.counts[site.index][self.group, cols] += fired.to(torch.int64)
            if self.acc.sums is not None:
                self.acc.sums[site.index][self.group, cols] += torch.mm(weights, act)[0]
                self.acc.pre_sums[site.index][self.group, cols] += torch.mm(weights, pre.reshape(act.shape))[0]
        else:  # half precision: a product would round counts, so reduce booleans
            fired = act > 0
            if padded:
                fired &= self._mask(site.side, act.device)[:, None]
            self.acc.counts[site.index][self.group, cols] += fired.sum(0)
            if self.acc.sums is not None:
                values = act.float()
                if padded:
                    values *= self._mask(site.side, act.device, values.dtype)[:, None]
                self.acc.sums[site.index][self.group, cols] += values.sum(0)
                values = pre.reshape(act.shape).float()
                if padded:
                    values *= self._mask(site.side, act.device, values.dtype)[:, None]
                self.acc.pre_sums[site.index][self.group, cols] += values.sum(0)
        if self.quantile is not None or self.thresholds is not None:
            mask = self._mask(site.side, act.device) if padded else None
            pre = pre.reshape(-1, pre.shape[-1])
            if self.thresholds is not None:
                bar = self.thresholds[site.index]  # [neurons] or [neurons, groups]: each group its own
                above = pre > (bar[:, self.group] if bar.ndim == 2 else bar)
                if mask is not None:
                    above &= mask[:, None]
                self.acc.above_threshold[site.index][self.group, cols] += above.sum(0)
            if self.quantile is not None:
                self._quantile(site, pre, mask, cols)

    def _kth(self, part: torch.Tensor, n: int) -> torch.Tensor:
        """The quantile over the first `n` sorted values of each column (padding sorts last as +inf)."""
        if self.quantile_method == "nearest":
            return part.kthvalue(min(n, max(1, math.ceil(self.quantile * n))), dim=0).values
        # as torch.quantile(interpolation="linear"): between ranks floor and ceil of q * (n - 1)
        rank = self.quantile * (n - 1)
        below, above = math.floor(rank), math.ceil(rank)
        low = part.kthvalue(below + 1, dim=0).values
        high = low if above == below else part.kthvalue(above + 1, dim=0).values
        return torch.lerp(low, high, rank - below)

    def _quantile(self, site: NeuronSite, pre: torch.Tensor, mask: torch.Tensor | None, cols: slice) -> None:
        """Per-neuron k-th value over the batch's real tokens, in chunks of neurons so that the float32
        copy stays under `QUANTILE_CHUNK_BYTES` (14336 neurons x 32k tokens would be 1.9 GB at once)."""
        n = self.real[site.side]
        if n == 0:
            return
        step = max(1, QUANTILE_CHUNK_BYTES // (4 * pre.shape[0]))
        for start in range(0, pre.shape[1], step):
            part = pre[:, start : start + step].float()  # [tokens, chunk]
            if mask is not None:
                part = part.masked_fill(
                    ~mask[:, None], math.inf
                )  # padding sorts last (out of place: `pre` is the model's)
            q = self._kth(part, n)  # [chunk]
            above = part > q
            if mask is not None:
                above &= mask[:, None]
            out = slice(cols.start + start, cols.start + start + q.shape[0])
            self.acc.quantile_sums[site.index][self.group, out] += q
            self.acc.above_quantile[site.index][self.group, out] += above.sum(0)


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


def _tensor_parallel(sites: list[NeuronSite], rank: int, world_size: int) -> tuple[int, int, int]:
    """(data-parallel rank, data-parallel size, tensor-parallel size) of this process.

    Ranks of one tensor-parallel group see the same batches and each counts its own neurons; the
    data is sharded over the groups. The group is the mesh of the sites' sharded weights.
    """
    weights = [base_layer(s.input_modules[0]).weight for s in sites]
    meshes = {id(w.device_mesh): w for w in weights if is_dtensor(w) and any(p.is_shard() for p in w.placements)}
    if not meshes:
        return rank, world_size, 1
    if len(meshes) > 1:
        raise ValueError("The FFN layers are sharded over different device meshes; lsn needs one tensor-parallel mesh.")
    weight = next(iter(meshes.values()))
    mesh_dim = next(d for d, p in enumerate(weight.placements) if p.is_shard())
    group = weight.device_mesh.get_group(mesh_dim)
    members = torch.distributed.get_process_group_ranks(group)
    leaders: list[int] = [0] * world_size
    torch.distributed.all_gather_object(leaders, min(members))
    groups = sorted(set(leaders))
    tp_size = len(members)
    if tp_size * len(groups) != world_size:
        raise ValueError(f"Tensor-parallel groups of {tp_size} ranks do not tile the world of {world_size} processes.")
    return groups.index(min(members)), len(groups), tp_size


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
    quantile_method: QuantileMethod = "linear",
    residual_means: bool = False,
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
        record_sums: also sum each neuron's activation and its pre-activation (for mean-value interventions:
            `stats.means()`, `stats.pre_means()`).
        quantile: also estimate, per batch, this quantile of each neuron's pre-activation over the
            batch's real tokens, averaged over batches per group (pass 1 of Mondal et al. 2025:
            `0.9`; read with `stats.group_quantiles()` or `stats.pooled_quantile()`).
        threshold: a fixed pre-activation threshold per neuron; also count, per group, the tokens
            above it. Shape `(layers, neurons)`: one threshold for all groups (e.g.
            `first.pooled_quantile()`); `(layers, neurons, groups)`: each group, in the order of
            `corpora`, against its own (e.g. `first.group_quantiles()`: Mondal et al.'s pass 2).
        quantile_method: `"linear"` interpolates between ranks exactly as `torch.quantile`
            (the reference); `"nearest"` takes the `ceil(q * n)`-th smallest value.
        residual_means: also sum each decoder layer's output hidden state over real tokens in the same pass
            (`stats.residual_sums`; DiffMean steering: `lsn.diffmean.ResidualMeans.from_stats(stats)`); decoder-only
            models.
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
    if quantile_method not in ("linear", "nearest"):
        raise ValueError(f"`quantile_method` must be 'linear' or 'nearest', got {quantile_method!r}.")
    if seq_len < 1 or batch_size < 1:
        raise ValueError(f"`seq_len` and `batch_size` must be positive, got {seq_len} and {batch_size}.")
    sites = find_neuron_sites(model)
    shape = model_shape(model, sites)
    if threshold is not None:
        expected = (shape["num_layers"], shape["num_neurons"])
        if tuple(threshold.shape) not in (expected, (*expected, len(corpora))):
            raise ValueError(
                f"`threshold` has shape {tuple(threshold.shape)} but the model has {expected[0]} layers x "
                f"{expected[1]} neurons and {len(corpora)} groups are recorded: give (layers, neurons) or "
                "(layers, neurons, groups); compute it from statistics of this model."
            )
        threshold = threshold.detach().float().cpu()
    config = getattr(unwrap_model(model), "config", None)
    encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
    groups = list(corpora)
    opened = {g: open_corpus(g, src, text_column) for g, src in corpora.items()}
    rank, world_size = _distributed()
    data_rank, data_size, tp_size = _tensor_parallel(sites, rank, world_size) if world_size > 1 else (0, 1, 1)
    device = first_device(model)

    layers = decoder_layers(model, sites) if residual_means else []
    hidden = getattr(getattr(config, "text_config", None) or config, "hidden_size", None) if residual_means else None
    if residual_means and (encoder_decoder or not hidden):
        raise ValueError("`residual_means=True` records decoder-only models with a `hidden_size` in their config.")
    acc = _Accumulators.create(sites, len(groups), record_sums, quantile, threshold is not None, hidden)
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
    ckpt = None
    if checkpoint is not None:  # everything that determines the counts: a resume with any other value is refused
        keys = ("num_layers", "num_neurons", "model_name", "revision", "sites", "seq_len", "batch_size", "max_tokens")
        fingerprint = {k: metadata[k] for k in keys} | {
            "corpora": {g: corpus_fingerprint(src) for g, src in corpora.items()},
            "text_column": text_column,
            "tokenizer": _describe_tokenizer(tokenizer),
            "dtype": str(next(model.parameters()).dtype),
            "groups": groups,
            "world_size": world_size,
            "record_sums": record_sums,
            "quantile": quantile,
            "quantile_method": quantile_method,
            "threshold": _digest(threshold),
            "residual_means": residual_means,
        }
        ckpt = _Checkpoint(checkpoint, rank, world_size, fingerprint)
    done = {g: {"batches": 0, "done": False} for g in groups}
    if ckpt is not None:
        done = ckpt.load(acc, tokens) or done

    thresholds = None
    if threshold is not None:
        thresholds = [threshold[s.index].to(s.device) for s in sites]
    recorder = _Recorder(sites, acc, quantile, thresholds, quantile_method)
    forward = _forward_fn(model)
    was_training = model.training
    model.eval()
    try:
        with (
            activation_hooks(sites, recorder, sharded=True),
            output_hooks(layers, recorder.residual),
            torch.inference_mode(),
        ):
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
                    rank=data_rank,  # ranks of one tensor-parallel group read the same batches
                    world_size=data_size,
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
                            recorder.check_finite()  # never save corrupt counters
                            ckpt.save(acc, tokens, done)
                recorder.check_finite()
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
        # counters: disjoint neuron slices over a tensor-parallel group, disjoint data over the groups, so a
        # sum over all ranks is exact; tokens and batches were seen by every rank of a group alike.
        tokens = {s: reduced[i].cpu() // tp_size for i, s in enumerate(sides)}
        batches = reduced[-1].cpu() // tp_size

    missing = [g for k, g in enumerate(groups) if int(tokens["decoder"][k]) == 0]
    if missing:
        raise ValueError(f"Group(s) {missing} produced no tokens: give each group some text, or leave it out.")
    stacked = acc.stacked()
    if "residual_sums" in stacked and tp_size > 1:  # every rank of a tensor-parallel group holds the full stream
        stacked["residual_sums"] /= tp_size
    quantile_means = None
    if quantile is not None:
        quantile_means = stacked["quantile_sums"] / batches.clamp_min(1).double()
    return ActivationStats(
        counts=stacked["counts"],
        tokens=tokens["decoder"],
        groups=groups,
        sums=stacked.get("sums"),
        pre_sums=stacked.get("pre_sums"),
        quantile=quantile,
        quantile_means=quantile_means,
        quantile_batches=batches if quantile is not None else None,
        above_quantile=stacked.get("above_quantile"),
        threshold=threshold,
        above_threshold=stacked.get("above_threshold"),
        encoder_tokens=tokens.get("encoder"),
        residual_sums=stacked.get("residual_sums"),
        metadata=metadata
        | {"world_size": world_size, "tensor_parallel": tp_size, "record_sums": record_sums}
        | ({"quantile_method": quantile_method} if quantile is not None else {}),
    )
