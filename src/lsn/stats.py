"""`ActivationStats`: what recording produces and every selection method consumes.

Per group k (a language, or a task such as `en-de`) over `tokens[k]` real tokens:
`counts[l, j, k]` tokens on which neuron j of layer l fired (activation > 0); optionally the
sum of its activations, per-batch quantile estimates of its pre-activation (the
percentile method of Mondal et al.), and counts of tokens above a fixed per-neuron threshold
(e.g. a percentile pooled over all groups, from a first pass). Saved as one safetensors file whose header carries the
JSON metadata, so nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from . import __version__

__all__ = ["ActivationStats", "atomic_save_file"]

_FORMAT = "lsn.ActivationStats"
_FORMAT_VERSION = 1
_OPTIONAL = (
    "sums",
    "pre_sums",
    "quantile_means",
    "quantile_batches",
    "above_quantile",
    "above_threshold",
    "encoder_tokens",
    "residual_sums",
)
_SAVED = ("counts", "tokens", *_OPTIONAL, "threshold")  # every tensor a file holds


def atomic_save_file(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str]) -> None:
    """`safetensors` save through a temporary file, so a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.chmod(tmp, 0o666 & ~_umask())  # safetensors creates files 0600; give them the mode any new file gets
    os.replace(tmp, path)


def _umask() -> int:
    """The process's umask (read by setting it, then restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@dataclass
class ActivationStats:
    """Activation statistics of one model over named groups of text.

    Args:
        counts (`torch.LongTensor` of shape `(layers, neurons, groups)`): firing counts.
        tokens (`torch.LongTensor` of shape `(groups,)`): real (non-padding) tokens per group;
            for encoder-decoder models, the decoder's tokens.
        groups (`list[str]`): group names, in the order of the last dimension.
        sums (`torch.DoubleTensor`, *optional*): per-neuron sum of activations, like `counts`.
        pre_sums (`torch.DoubleTensor`, *optional*): per-neuron sum of pre-activations (recorded with `sums`).
        quantile (`float`, *optional*): the quantile `q` of the pre-activation estimated per batch.
        quantile_means (`torch.DoubleTensor`, *optional*): mean over batches of the per-batch
            `q`-quantile of each neuron's pre-activation, like `counts`.
        quantile_batches (`torch.LongTensor`, *optional*): batches averaged, per group.
        above_quantile (`torch.LongTensor`, *optional*): tokens whose pre-activation exceeded
            its batch's `q`-quantile, like `counts`.
        threshold (`torch.FloatTensor` of shape `(layers, neurons)` or `(layers, neurons, groups)`,
            *optional*): a fixed pre-activation threshold per neuron (one for all groups, or each
            group its own), given to `record_activations`.
        above_threshold (`torch.LongTensor`, *optional*): tokens whose pre-activation exceeded
            `threshold`, like `counts`.
        encoder_tokens (`torch.LongTensor`, *optional*): real encoder tokens per group
            (encoder-decoder models only).
        residual_sums (`torch.DoubleTensor` of shape `(layers, hidden, groups)`, *optional*): the sum over real
            tokens of each decoder layer's output hidden state (the residual stream), for DiffMean
            (`lsn.diffmean.ResidualMeans.from_stats`); recorded with `residual_means=True`.
        metadata (`dict`): model name and revision, layer sites, `seq_len`, corpora, lsn version.
    """

    counts: torch.Tensor
    tokens: torch.Tensor
    groups: list[str]
    sums: torch.Tensor | None = None
    pre_sums: torch.Tensor | None = None
    quantile: float | None = None
    quantile_means: torch.Tensor | None = None
    quantile_batches: torch.Tensor | None = None
    above_quantile: torch.Tensor | None = None
    threshold: torch.Tensor | None = None
    above_threshold: torch.Tensor | None = None
    encoder_tokens: torch.Tensor | None = None
    residual_sums: torch.Tensor | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.groups = list(self.groups)
        if self.counts.ndim != 3 or self.counts.dtype != torch.int64:
            raise ValueError(
                "`counts` must be an int64 tensor (layers, neurons, groups), "
                f"got {tuple(self.counts.shape)} {self.counts.dtype}."
            )
        if len(set(self.groups)) != len(self.groups):
            raise ValueError(f"`groups` has duplicate names: {self.groups}.")
        k = len(self.groups)
        if self.counts.shape[-1] != k or self.tokens.shape != (k,):
            raise ValueError(
                f"{k} groups but `counts` has shape {tuple(self.counts.shape)} and `tokens` {tuple(self.tokens.shape)}."
            )
        for name in ("sums", "pre_sums", "quantile_means", "above_quantile", "above_threshold"):
            value = getattr(self, name)
            if value is not None and value.shape != self.counts.shape:
                raise ValueError(f"`{name}` has shape {tuple(value.shape)}, expected {tuple(self.counts.shape)}.")
        if self.residual_sums is not None and (
            self.residual_sums.ndim != 3 or self.residual_sums.shape[::2] != (self.num_layers, k)
        ):
            raise ValueError(
                f"`residual_sums` has shape {tuple(self.residual_sums.shape)}, "
                f"expected ({self.num_layers}, hidden, {k})."
            )
        if (self.threshold is None) != (self.above_threshold is None):
            raise ValueError("`threshold` and `above_threshold` go together: give both or neither.")
        if self.threshold is not None and self.threshold.shape not in (self.counts.shape[:2], self.counts.shape):
            raise ValueError(
                f"`threshold` has shape {tuple(self.threshold.shape)}, expected {tuple(self.counts.shape[:2])} "
                f"or {tuple(self.counts.shape)}."
            )
        empty = [g for g, n in zip(self.groups, self.token_counts().amin(0).tolist(), strict=True) if n == 0]
        if empty:
            raise ValueError(f"Group(s) {empty} have no tokens: give each group some text, or leave it out.")
        self.metadata.setdefault("lsn_version", __version__)

    # ------------------------------------------------------------------ shape
    @property
    def num_layers(self) -> int:
        return self.counts.shape[0]

    @property
    def num_neurons(self) -> int:
        return self.counts.shape[1]

    @property
    def num_encoder_layers(self) -> int:
        return int(self.metadata.get("num_encoder_layers", 0))

    def group_index(self, group: str) -> int:
        try:
            return self.groups.index(group)
        except ValueError:
            raise KeyError(f"No group `{group}` in these statistics; groups: {self.groups}.") from None

    # ------------------------------------------------------------------ views
    def token_counts(self) -> torch.Tensor:
        """Real tokens seen by each layer, per group: shape `(layers, groups)`."""
        per_layer = self.tokens.expand(self.num_layers, -1).clone()
        if self.num_encoder_layers:
            if self.encoder_tokens is None:
                raise ValueError("Statistics of an encoder-decoder model need `encoder_tokens`.")
            per_layer[: self.num_encoder_layers] = self.encoder_tokens
        return per_layer

    def probabilities(self) -> torch.Tensor:
        """Activation probability `counts / tokens`, float64, shape `(layers, neurons, groups)`."""
        return self.counts.double() / self.token_counts()[:, None, :].double()

    def means(self) -> torch.Tensor:
        """Mean activation per neuron and group (needs `record_sums=True` when recording)."""
        if self.sums is None:
            raise ValueError("These statistics hold no activation sums; record with `record_sums=True`.")
        return self.sums / self.token_counts()[:, None, :].double()

    def pre_means(self) -> torch.Tensor:
        """Mean pre-activation (`gate_proj(x)`, `fc1(x)`) per neuron and group: Mondal et al.'s "mean" value
        (needs `record_sums=True` when recording)."""
        if self.pre_sums is None:
            raise ValueError("These statistics hold no pre-activation sums; record with `record_sums=True`.")
        return self.pre_sums / self.token_counts()[:, None, :].double()

    def threshold_probabilities(self) -> torch.Tensor:
        """Probability that the pre-activation exceeds the recorded per-neuron `threshold`."""
        if self.above_threshold is None:
            raise ValueError(
                "These statistics hold no threshold counts; record with `threshold=` "
                "(e.g. `first_pass.pooled_quantile()`)."
            )
        return self.above_threshold.double() / self.token_counts()[:, None, :].double()

    @property
    def per_group_threshold(self) -> bool:
        """Whether each group was counted against its own threshold (shape `(layers, neurons, groups)`)."""
        return self.threshold is not None and self.threshold.ndim == 3

    def group_quantiles(self) -> torch.Tensor:
        """Each group's `quantile` of the pre-activation, shape `(layers, neurons, groups)`, float32.

        The mean over that group's batches of the per-batch estimates (Mondal et al.'s `P90_k`
        with `quantile=0.9`): the per-group threshold of their second pass,
        `record_activations(model, other_corpora, threshold=first.group_quantiles())`.
        """
        if self.quantile_means is None:
            raise ValueError("These statistics hold no quantile estimates; record with `quantile=` (e.g. 0.9).")
        return self.quantile_means.float()

    def pooled_quantile(self) -> torch.Tensor:
        """Each neuron's `quantile` of the pre-activation pooled over all groups, shape `(layers, neurons)`.

        The per-batch estimates averaged over every batch of every group (Mondal et al.'s
        estimator, without splitting by language): the threshold for a second recording pass.
        """
        if self.quantile_means is None:
            raise ValueError("These statistics hold no quantile estimates; record with `quantile=` (e.g. 0.9).")
        weights = self.quantile_batches.double()
        return ((self.quantile_means * weights).sum(-1) / weights.sum().clamp_min(1)).float()

    def select_groups(self, groups: list[str]) -> ActivationStats:
        """The statistics of some groups only, in the given order."""
        idx = torch.tensor([self.group_index(g) for g in groups], dtype=torch.long)
        kwargs = {
            name: (t.index_select(-1, idx) if t is not None else None)
            for name in ("counts", "tokens", *_OPTIONAL)
            for t in [getattr(self, name)]
        }
        return ActivationStats(
            groups=list(groups),
            quantile=self.quantile,
            threshold=self.threshold.index_select(-1, idx) if self.per_group_threshold else self.threshold,
            metadata=dict(self.metadata),
            **kwargs,
        )

    # ------------------------------------------------------------------ merge
    def merge(self, other: ActivationStats) -> ActivationStats:
        """Statistics of the same model over more tokens (shared groups add) or more groups."""
        if (self.num_layers, self.num_neurons) != (other.num_layers, other.num_neurons):
            raise ValueError(
                f"Cannot merge statistics of shape {self.num_layers}x{self.num_neurons} with "
                f"{other.num_layers}x{other.num_neurons}: they come from different models."
            )
        mine, theirs = self.metadata.get("model_name"), other.metadata.get("model_name")
        if mine and theirs and mine != theirs:
            raise ValueError(f"Cannot merge statistics of `{mine}` with statistics of `{theirs}`.")
        for name in _OPTIONAL:
            if (getattr(self, name) is None) != (getattr(other, name) is None):
                raise ValueError(f"Cannot merge: only one of the two statistics holds `{name}`.")
        if self.quantile != other.quantile:
            raise ValueError(f"Cannot merge quantile {self.quantile} estimates with quantile {other.quantile}.")
        groups = self.groups + [g for g in other.groups if g not in self.groups]
        threshold = self._merged_threshold(other, groups)
        merged = {}
        for name in ("counts", "tokens", *_OPTIONAL):
            a, b = getattr(self, name), getattr(other, name)
            if a is None:
                merged[name] = None
                continue
            out = torch.zeros(*a.shape[:-1], len(groups), dtype=a.dtype)
            out[..., : len(self.groups)] = a
            for j, g in enumerate(other.groups):
                out[..., groups.index(g)] += b[..., j]
            merged[name] = out
        if self.quantile_means is not None:
            # quantile means average over batches: weight each side by its batch count.
            qa = self._padded(self.quantile_means * self.quantile_batches, groups)
            qb = other._padded(other.quantile_means * other.quantile_batches, groups)
            merged["quantile_means"] = (qa + qb) / merged["quantile_batches"].clamp_min(1)
        metadata = dict(self.metadata)
        corpora = {**other.metadata.get("corpora", {}), **self.metadata.get("corpora", {})}
        if corpora:
            metadata["corpora"] = corpora
        return ActivationStats(groups=groups, quantile=self.quantile, threshold=threshold, metadata=metadata, **merged)

    def _merged_threshold(self, other: ActivationStats, groups: list[str]) -> torch.Tensor | None:
        """The thresholds of a merge: equal ones, or per-group ones that agree on shared groups."""
        if self.threshold is None:
            return None
        if self.per_group_threshold != other.per_group_threshold:
            raise ValueError("Cannot merge counts above one shared threshold with counts above per-group thresholds.")
        if not self.per_group_threshold:
            if not torch.equal(self.threshold, other.threshold):
                raise ValueError(
                    "Cannot merge counts above different thresholds: record both with the same `threshold`."
                )
            return self.threshold
        merged = self._padded(self.threshold, groups)
        for j, g in enumerate(other.groups):
            if g in self.groups and not torch.equal(self.threshold[..., self.groups.index(g)], other.threshold[..., j]):
                raise ValueError(f"Cannot merge counts of `{g}` above different thresholds.")
            merged[..., groups.index(g)] = other.threshold[..., j]
        return merged

    def _padded(self, tensor: torch.Tensor, groups: list[str]) -> torch.Tensor:
        out = torch.zeros(*tensor.shape[:-1], len(groups), dtype=tensor.dtype)
        for j, g in enumerate(self.groups):
            out[..., groups.index(g)] = tensor[..., j]
        return out

    # ------------------------------------------------------------------ files
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """The tensors and string metadata written to disk."""
        tensors = {name: getattr(self, name) for name in _SAVED if getattr(self, name) is not None}
        header = {
            "format": _FORMAT,
            "format_version": str(_FORMAT_VERSION),
            "groups": json.dumps(self.groups, ensure_ascii=False),
            "quantile": json.dumps(self.quantile),
            "metadata": json.dumps(self.metadata, ensure_ascii=False),
        }
        return tensors, header

    def save(self, path: str | os.PathLike) -> None:
        """Write a `.safetensors` file (tensors + JSON metadata in its header)."""
        tensors, header = self.state()
        atomic_save_file(tensors, path, header)

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], header: dict[str, str], source: str = "") -> ActivationStats:
        where = f" `{source}`" if source else ""
        if header.get("format") != _FORMAT:
            raise ValueError(f"File{where} is not an lsn ActivationStats file (format {header.get('format')!r}).")
        if int(header.get("format_version", 0)) > _FORMAT_VERSION:
            raise ValueError(f"File{where} was written by a newer lsn; upgrade lsn to read it.")
        missing = [name for name in ("counts", "tokens") if name not in tensors]
        if missing:
            raise ValueError(f"File{where} is a damaged lsn ActivationStats file (no tensor {missing}).")
        try:
            return cls(
                groups=json.loads(header["groups"]),
                quantile=json.loads(header.get("quantile", "null")),
                metadata=json.loads(header.get("metadata", "{}")),
                **{name: tensors.get(name) for name in _SAVED},
            )
        except (KeyError, TypeError, json.JSONDecodeError) as err:
            raise ValueError(f"File{where} is a damaged lsn ActivationStats file ({err!r}).") from err

    @classmethod
    def load(cls, path: str | os.PathLike) -> ActivationStats:
        """Read statistics written by `save`; a corrupt or foreign file raises `ValueError`."""
        path = str(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No statistics file at `{path}`.")
        try:
            with safe_open(path, framework="pt") as f:
                header = f.metadata() or {}
            tensors = load_file(path)
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(
                f"`{path}` is not a readable safetensors file ({err}); re-create it with `lsn record`."
            ) from err
        return cls.from_state(tensors, header, source=path)

    @classmethod
    def from_reference(cls, paths: Mapping[str, str | os.PathLike], *, metadata: dict | None = None) -> ActivationStats:
        """Counts from Tang et al.'s recording files (`{language: path}`, each a dict of `n` and
        `over_zero`), read with `torch.load(..., weights_only=True)` only. See `lsn.reference`."""
        from .reference import load_reference_activations

        return load_reference_activations(paths, metadata=metadata)

    def summary(self) -> str:
        """A short table: tokens and mean firing rate per group."""
        p = self.probabilities()
        lines = [f"{self.num_layers} layers x {self.num_neurons} neurons, {len(self.groups)} groups"]
        lines.append(f"{'group':<12}{'tokens':>12}{'mean p':>10}")
        for k, g in enumerate(self.groups):
            lines.append(f"{g:<12}{int(self.tokens[k]):>12}{p[..., k].mean().item():>10.4f}")
        return "\n".join(lines)
