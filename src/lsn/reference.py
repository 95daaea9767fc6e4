"""Read and write the published artifacts of Tang et al. 2024 (DESIGN.md §9).

- Neuron files (`*.neuron.pth`): a torch file holding `List[List[LongTensor]]`,
  `neurons[language][layer]` = that language's neuron indices in that layer. The released
  files cover 7 languages (en, zh, fr, es, vi, id, ja: LLaMA-2 7B/13B) or 6 (the same without
  ja: the other models); the file itself names no language.
- Recording files (`activation.{lang}.train.{model}`): a dict with `n` (tokens recorded) and
  `over_zero` (firing counts, `(layers, neurons)`).

Both are read with `torch.load(..., weights_only=True)` only: a file that needs anything but
tensors, lists, dicts and numbers to load is refused, never unpickled.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from .models import model_shape
from .neuron_set import NeuronSet
from .stats import ActivationStats

__all__ = ["REFERENCE_LANGUAGES", "load_reference_activations", "load_reference_neurons", "save_reference_neurons"]

#: The language order of the released neuron files, by number of languages.
REFERENCE_LANGUAGES: dict[int, tuple[str, ...]] = {
    7: ("en", "zh", "fr", "es", "vi", "id", "ja"),
    6: ("en", "zh", "fr", "es", "vi", "id"),
}


def _safe_load(path: str | os.PathLike):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No reference file at `{path}`.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"`{path}` holds objects other than tensors, lists and dicts, so lsn will not load it "
            "(only `torch.load(..., weights_only=True)` is used; nothing else is unpickled). "
            "Re-save its tensors as plain lists/dicts of tensors."
        ) from err
    except (RuntimeError, EOFError) as err:
        raise ValueError(f"`{path}` is not a readable torch file ({err}).") from err


def _index_tensor(value, where: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
            raise ValueError(f"{where}: expected integer neuron indices, got a {value.dtype} tensor.")
        return value.reshape(-1).long()
    if isinstance(value, Sequence) and all(isinstance(v, int) for v in value):
        return torch.tensor(list(value), dtype=torch.long)
    raise ValueError(f"{where}: expected a LongTensor of neuron indices, got {type(value).__name__}.")


def load_reference_neurons(
    path: str | os.PathLike,
    groups: Sequence[str] | None = None,
    num_neurons: int | None = None,
    model: torch.nn.Module | None = None,
) -> NeuronSet:
    """A `NeuronSet` from a Tang et al. neuron file (`neurons[language][layer]`).

    Args:
        path: the `.pth` file.
        groups: the language of each entry, in file order; by default en, zh, fr, es, vi, id, ja
            for 7 entries and en, zh, fr, es, vi, id for 6 (the released files). Needed otherwise.
        num_neurons: neurons per layer (the FFN width); the file does not hold it.
        model: the model the neurons belong to: gives the width, and its layer count is checked.
    """
    data = _safe_load(path)
    if not isinstance(data, (list, tuple)) or not data or not all(isinstance(g, (list, tuple)) for g in data):
        raise ValueError(
            f"`{path}` is not a reference neuron file: expected a list (languages) of lists (layers) of "
            f"LongTensors, got {type(data).__name__}."
        )
    if groups is None:
        if len(data) not in REFERENCE_LANGUAGES:
            raise ValueError(
                f"`{path}` holds {len(data)} languages; lsn knows the order of the released files only for "
                f"{sorted(REFERENCE_LANGUAGES)} languages. Pass `groups=` (in file order)."
            )
        groups = REFERENCE_LANGUAGES[len(data)]
    groups = [str(g) for g in groups]
    if len(groups) != len(data):
        raise ValueError(f"`groups` names {len(groups)} languages but `{path}` holds {len(data)}.")
    num_layers = len(data[0])
    if any(len(layers) != num_layers for layers in data):
        raise ValueError(f"`{path}`: the languages have different numbers of layers {[len(g) for g in data]}.")
    info: dict = {}
    if model is not None:
        shape = model_shape(model)
        if shape["num_layers"] != num_layers:
            raise ValueError(
                f"`{path}` has {num_layers} layers but {shape['architecture']} `{shape['model_name']}` has "
                f"{shape['num_layers']}: these neurons belong to another model."
            )
        if num_neurons is not None and num_neurons != shape["num_neurons"]:
            raise ValueError(f"`num_neurons={num_neurons}` but the model has {shape['num_neurons']} neurons per layer.")
        num_neurons = shape["num_neurons"]
        info = {k: shape[k] for k in ("model_name", "architecture") if shape.get(k)}
    if num_neurons is None:
        raise ValueError(
            f"`{path}` does not say how wide the FFN layers are: pass `num_neurons=` (e.g. 11008 for LLaMA-2-7B) "
            "or `model=`."
        )
    neurons = {
        g: [_index_tensor(idx, f"`{path}`, language `{g}`, layer {layer}") for layer, idx in enumerate(layers)]
        for g, layers in zip(groups, data, strict=True)
    }
    return NeuronSet(
        neurons,
        num_layers=num_layers,
        num_neurons=num_neurons,
        method="lape",
        parameters={"source": "reference", "file": str(path)},
        model=info,
    )


def save_reference_neurons(neuron_set: NeuronSet, path: str | os.PathLike) -> None:
    """Write `neuron_set` as a reference neuron file: `List[List[LongTensor]]` in group order.

    Group names and the width are not part of that format; indices are sorted within a layer,
    as the reference writes them.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = [[idx.clone() for idx in neuron_set[g]] for g in neuron_set.groups]
    tmp = path.with_name(path.name + ".tmp")
    torch.save(data, tmp)
    os.replace(tmp, path)


def load_reference_activations(
    paths: Mapping[str, str | os.PathLike], *, metadata: dict | None = None
) -> ActivationStats:
    """`ActivationStats` from Tang et al. recording files, `{language: path}`.

    Each file holds `n` (tokens) and `over_zero` (counts, `(layers, neurons)`); `select_lape`
    on the result gives the reference's neurons.
    """
    if not paths:
        raise ValueError("No recording files given: pass `{language: path}`.")
    counts, tokens = [], []
    for group, path in paths.items():
        data = _safe_load(path)
        if not isinstance(data, Mapping) or "n" not in data or "over_zero" not in data:
            keys = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(
                f"`{path}` is not a reference recording file: expected keys `n` and `over_zero`, got {keys}."
            )
        over_zero, n = data["over_zero"], data["n"]
        if not isinstance(over_zero, torch.Tensor) or over_zero.ndim != 2 or over_zero.is_floating_point():
            raise ValueError(f"`{path}`: `over_zero` must be an integer tensor (layers, neurons).")
        n = int(n.item() if isinstance(n, torch.Tensor) else n)
        if counts and over_zero.shape != counts[0].shape:
            raise ValueError(
                f"`{path}` (`{group}`) has counts of shape {tuple(over_zero.shape)}, the first file "
                f"{tuple(counts[0].shape)}: they come from different models."
            )
        if int(over_zero.max()) > n or int(over_zero.min()) < 0:
            raise ValueError(f"`{path}`: counts outside [0, n={n}]; the file is damaged.")
        counts.append(over_zero.long())
        tokens.append(n)
    layers, neurons = counts[0].shape
    info = {
        "num_layers": layers,
        "num_neurons": neurons,
        "source": "reference",
        "corpora": {g: str(p) for g, p in paths.items()},
    }
    return ActivationStats(
        counts=torch.stack(counts, dim=-1),
        tokens=torch.tensor(tokens, dtype=torch.long),
        groups=[str(g) for g in paths],
        metadata=info | dict(metadata or {}),
    )
