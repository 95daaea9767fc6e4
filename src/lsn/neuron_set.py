"""`NeuronSet`: selected neurons per group and layer, shared like a model.

Stored as versioned, human-readable JSON (one line per layer) that carries the model's shape
and the selection method's parameters, so a set can never be applied to a model of another
shape by accident. `save_pretrained` / `from_pretrained` / `push_to_hub` follow the
Hugging Face conventions, with a generated model card.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import torch

from . import __version__
from .cards import counts_table, parameter_list
from .hub import upload_saved
from .models import NeuronSite, check_indices, check_shape, find_neuron_sites, model_shape

logger = logging.getLogger(__name__)

__all__ = ["NeuronSet", "NEURONS_FILE"]

NEURONS_FILE = "neurons.json"
_FORMAT = "lsn.NeuronSet"
_FORMAT_VERSION = 1


class NeuronSet:
    """For each group, for each layer, the sorted indices of the selected neurons.

    Args:
        neurons (`Mapping[str, Sequence[Sequence[int]]]`): group -> one index list per layer.
        num_layers (`int`): FFN layers of the model (encoder + decoder for seq2seq models).
        num_neurons (`int`): neurons per layer (the FFN intermediate size).
        method (`str`, *optional*): how the set was selected, e.g. `"lape"`.
        parameters (`dict`, *optional*): the method's parameters, for reproduction.
        model (`dict`, *optional*): base model facts: `model_name`, `revision`, `architecture`,
            `num_encoder_layers`.
    """

    def __init__(
        self,
        neurons: Mapping[str, Sequence[Sequence[int] | torch.Tensor]],
        *,
        num_layers: int,
        num_neurons: int,
        method: str = "",
        parameters: dict | None = None,
        model: dict | None = None,
    ):
        self.num_layers = int(num_layers)
        self.num_neurons = int(num_neurons)
        self.method = method
        self.parameters = dict(parameters or {})
        self.model = dict(model or {})
        self._neurons: dict[str, list[torch.Tensor]] = {}
        for group, layers in neurons.items():
            if len(layers) != self.num_layers:
                raise ValueError(
                    f"Group `{group}` has {len(layers)} layers of indices; the model has {self.num_layers}."
                )
            self._neurons[str(group)] = [
                check_indices(idx, self.num_neurons, f"Group `{group}`, layer {layer}")
                for layer, idx in enumerate(layers)
            ]

    # ------------------------------------------------------------------ access
    @property
    def groups(self) -> list[str]:
        return list(self._neurons)

    def __getitem__(self, group: str) -> list[torch.Tensor]:
        try:
            return list(self._neurons[group])
        except KeyError:
            raise KeyError(f"No group `{group}` in this neuron set; groups: {self.groups}.") from None

    def __contains__(self, group: object) -> bool:
        return group in self._neurons

    def __iter__(self) -> Iterator[str]:
        return iter(self._neurons)

    def __len__(self) -> int:
        return len(self._neurons)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NeuronSet):
            return NotImplemented
        return (self.num_layers, self.num_neurons, self.groups) == (
            other.num_layers,
            other.num_neurons,
            other.groups,
        ) and all(torch.equal(a, b) for g in self.groups for a, b in zip(self[g], other[g], strict=True))

    def __repr__(self) -> str:
        sizes = ", ".join(
            f"{g}: {n}" for g, n in zip(self.groups, self.counts_per_layer().sum(1).tolist(), strict=True)
        )
        return f"NeuronSet({self.method or 'custom'}, {self.num_layers}x{self.num_neurons}, {{{sizes}}})"

    def _resolve(self, groups: str | Iterable[str] | None) -> list[str]:
        if groups is None:
            return self.groups
        groups = [groups] if isinstance(groups, str) else list(groups)
        for g in groups:
            self[g]  # raises a clear KeyError
        return groups

    # ------------------------------------------------------------------ set algebra
    def union(self, groups: str | Iterable[str] | None = None) -> list[torch.Tensor]:
        """Per layer, the neurons of any of `groups` (all groups by default)."""
        chosen = self._resolve(groups)
        return [
            torch.unique(torch.cat([self._neurons[g][layer] for g in chosen] or [torch.empty(0, dtype=torch.long)]))
            for layer in range(self.num_layers)
        ]

    def intersection(self, groups: str | Iterable[str] | None = None) -> list[torch.Tensor]:
        """Per layer, the neurons shared by all of `groups` (all groups by default)."""
        chosen = self._resolve(groups)
        out = []
        for layer in range(self.num_layers):
            keep = self._neurons[chosen[0]][layer]
            for g in chosen[1:]:
                keep = keep[torch.isin(keep, self._neurons[g][layer])]
            out.append(keep)
        return out

    def overlap(self) -> torch.Tensor:
        """Intersection over union between every pair of groups, shape `(groups, groups)`."""
        masks = self.masks().reshape(len(self), -1).float()  # [groups, layers * neurons]
        inter = masks @ masks.T
        sizes = masks.sum(1)
        union = sizes[:, None] + sizes[None, :] - inter
        return torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(inter))

    def masks(self) -> torch.Tensor:
        """Boolean membership, shape `(groups, layers, neurons)`."""
        out = torch.zeros(len(self), self.num_layers, self.num_neurons, dtype=torch.bool)
        for k, g in enumerate(self.groups):
            for layer, idx in enumerate(self._neurons[g]):
                out[k, layer, idx] = True
        return out

    def counts_per_layer(self) -> torch.Tensor:
        """Selected neurons per group and layer, shape `(groups, layers)`."""
        return torch.tensor([[len(idx) for idx in self._neurons[g]] for g in self.groups], dtype=torch.long).reshape(
            len(self), self.num_layers
        )

    def layer_dict(self, groups: str | Iterable[str] | None = None) -> dict[int, list[int]]:
        """`{layer: [indices]}` of the union of `groups`, non-empty layers only."""
        return {layer: idx.tolist() for layer, idx in enumerate(self.union(groups)) if idx.numel()}

    def subset(self, groups: str | Iterable[str]) -> NeuronSet:
        """A set with some groups only."""
        chosen = self._resolve(groups)
        return self._like({g: self._neurons[g] for g in chosen})

    def _like(self, neurons: Mapping[str, Sequence[torch.Tensor]], **changes) -> NeuronSet:
        kwargs = (
            dict(
                num_layers=self.num_layers,
                num_neurons=self.num_neurons,
                method=self.method,
                parameters=self.parameters,
                model=self.model,
            )
            | changes
        )
        return NeuronSet(neurons, **kwargs)

    # ------------------------------------------------------------------ models
    def check_compatible(self, model: torch.nn.Module, sites: Sequence[NeuronSite] | None = None) -> None:
        """Raise `ValueError` if `model`'s FFN shape differs from the one this set was selected on (`sites`: the
        model's neuron sites, when the caller has them)."""
        sites = find_neuron_sites(model) if sites is None else sites
        check_shape(sites, self.num_layers, self.num_neurons, self.model.get("model_name") or "unknown model")
        mine, theirs = self.model.get("model_name"), model_shape(model, sites)["model_name"]
        if mine and theirs and mine != theirs:  # a fine-tune or a local copy: expected, so only logged
            logger.info("Neuron set selected on `%s` is used with `%s` (same shape).", mine, theirs)

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        return {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "lsn_version": __version__,
            "model": self.model | {"num_layers": self.num_layers, "num_neurons": self.num_neurons},
            "method": self.method,
            "parameters": self.parameters,
            "groups": {g: [idx.tolist() for idx in layers] for g, layers in self._neurons.items()},
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "") -> NeuronSet:
        where = f" `{source}`" if source else ""
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f'File{where} is not an lsn NeuronSet (no `"format": "{_FORMAT}"`).')
        if int(data.get("format_version", 0)) > _FORMAT_VERSION:
            raise ValueError(f"File{where} was written by a newer lsn (format {data['format_version']}); upgrade lsn.")
        try:
            model = dict(data["model"])
            return cls(
                data["groups"],
                num_layers=model.pop("num_layers"),
                num_neurons=model.pop("num_neurons"),
                method=data.get("method", ""),
                parameters=data.get("parameters", {}),
                model=model,
            )
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"File{where} is a damaged lsn NeuronSet ({err!r}).") from err

    def to_json(self) -> str:
        """JSON with one line per layer, so a diff or a reader sees the neurons of each layer."""
        data = self.to_dict()
        groups = data.pop("groups")
        head = json.dumps(data, indent=2, ensure_ascii=False)[:-2]
        body = ",\n".join(
            f"    {json.dumps(g, ensure_ascii=False)}: [\n"
            + ",\n".join(f"      {json.dumps(layer)}" for layer in layers)
            + "\n    ]"
            for g, layers in groups.items()
        )
        return f'{head},\n  "groups": {{\n{body}\n  }}\n}}\n'

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> NeuronSet:
        path = Path(path)
        if path.is_dir():
            path = path / NEURONS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"No neuron set at `{path}`.")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"`{path}` is not valid JSON ({err}); it may be truncated or corrupt.") from err
        return cls.from_dict(data, source=str(path))

    # ------------------------------------------------------------------ reference files
    @classmethod
    def from_reference(
        cls,
        path: str | os.PathLike,
        groups: Sequence[str] | None = None,
        num_neurons: int | None = None,
        model: torch.nn.Module | None = None,
    ) -> NeuronSet:
        """Read a neuron file released by Tang et al. (`List[List[LongTensor]]`, language x layer).

        Loaded with `torch.load(..., weights_only=True)` only. Group names default to en, zh, fr,
        es, vi, id, ja (7 languages) or en, zh, fr, es, vi, id (6); other counts need `groups=`.
        The width comes from `num_neurons` or `model`. See `lsn.reference`.
        """
        from .reference import load_reference_neurons

        return load_reference_neurons(path, groups=groups, num_neurons=num_neurons, model=model)

    def to_reference(self, path: str | os.PathLike) -> None:
        """Write the reference format (`List[List[LongTensor]]` in group order; names and width are not kept)."""
        from .reference import save_reference_neurons

        save_reference_neurons(self, path)

    # ------------------------------------------------------------------ hub
    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write `neurons.json` and a model card `README.md` into a directory."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.save(directory / NEURONS_FILE)
        (directory / "README.md").write_text(self.model_card(), encoding="utf-8")

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike, *, revision: str | None = None, token: str | None = None
    ) -> NeuronSet:
        """Load from a local directory or file, or from a hub repository holding `neurons.json`."""
        path = Path(name_or_path)
        if path.exists() or path.suffix == ".json" or str(name_or_path).startswith((".", "/")):
            return cls.load(path)
        from huggingface_hub import hf_hub_download

        try:
            file = hf_hub_download(str(name_or_path), NEURONS_FILE, revision=revision, token=token)
        except Exception as err:  # the hub client raises many types; all mean "not there"
            from huggingface_hub import constants

            if constants.HF_HUB_OFFLINE:
                raise FileNotFoundError(
                    f"No neuron set at `{name_or_path}`: not a local path, and offline mode is on "
                    "(HF_HUB_OFFLINE=1) with no cached copy; unset HF_HUB_OFFLINE to download it."
                ) from err
            raise FileNotFoundError(
                f"No neuron set at `{name_or_path}`: not a local path, and the hub gave no {NEURONS_FILE} "
                f"({type(err).__name__})."
            ) from err
        return cls.load(file)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str = "Upload neuron set with lsn",
    ) -> str:
        """Create (if needed) and upload to a hub repository; returns the commit URL."""
        return upload_saved(self.save_pretrained, repo_id, private=private, token=token, commit_message=commit_message)

    def model_card(self) -> str:
        """A README.md: base model, method and parameters, per-layer counts."""
        base = self.model.get("model_name") or "unknown"
        counts = self.counts_per_layer()
        table = counts_table({g: counts[k].tolist() for k, g in enumerate(self.groups)}, self.num_layers)
        params = parameter_list(self.parameters)
        front = ["---", "library_name: lsn", "tags:", "- lsn", "- language-specific-neurons"]
        if base != "unknown":
            front.append(f"base_model: {base}")
        front.append("---")
        return "\n".join(
            front
            + [
                "",
                f"# Neuron set for `{base}`",
                "",
                f"Selected with **{self.method or 'a custom method'}** by lsn {__version__}: "
                f"{len(self)} group{'s' if len(self) != 1 else ''} over "
                f"{self.num_layers} layers x {self.num_neurons} neurons.",
                "",
                "## Parameters",
                "",
                params,
                "",
                "## Neurons per layer",
                "",
                *table,
                "",
                "## Use",
                "",
                "```python",
                "from lsn import NeuronSet",
                "",
                'neurons = NeuronSet.from_pretrained("REPO_OR_DIR")',
                f"neurons[{self.groups[0]!r}]  # one LongTensor of neuron indices per layer" if self.groups else "",
                "```",
                "",
            ]
        )

    def summary(self) -> str:
        """A plain-text table: neurons per group, in all and in each layer."""
        counts = self.counts_per_layer()
        width = max([5, *map(len, self.groups)]) + 2
        lines = [f"{self!r}", f"{'group':<{width}}{'total':>7}  per layer"]
        for k, g in enumerate(self.groups):
            lines.append(f"{g:<{width}}{int(counts[k].sum()):>7}  {counts[k].tolist()}")
        union = sum(int(u.numel()) for u in self.union()) if len(self) else 0
        lines.append(f"{'union':<{width}}{union:>7}")
        return "\n".join(lines)
