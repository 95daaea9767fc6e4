"""Where the neurons are: a registry of FFN layouts and the per-layer neuron sites of a model.

A neuron is one channel of an FFN's intermediate dimension (DESIGN.md §1). Each supported
family is plain data: which MLP attributes hold the activation module, the input matrix or
matrices (whose output channels are the neurons) and the output matrix (whose input
channels are the neurons). Sites are found by structure, so any model whose MLP has the
same attribute names (Llama, Mistral, Qwen2, Gemma, ...) works without a new entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

import torch
from torch import nn

if TYPE_CHECKING:
    from .neuron_set import NeuronSet

__all__ = [
    "NeuronSpec",
    "MLPFamily",
    "NeuronSite",
    "UnsupportedModelError",
    "base_layer",
    "check_indices",
    "check_shape",
    "decoder_layers",
    "ffn_shape",
    "find_neuron_sites",
    "first_device",
    "is_conv1d",
    "is_dtensor",
    "linear_features",
    "model_shape",
    "register_mlp_family",
    "registered_families",
    "resolve_neurons",
    "tensor_parallel_range",
    "unwrap_model",
]


class UnsupportedModelError(ValueError):
    """The model has no FFN layout that lsn knows."""


@dataclass(frozen=True)
class MLPFamily:
    """How one family of FFN blocks is laid out.

    Args:
        name (`str`): a short name, e.g. `"gated"` or `"gpt2"`.
        activation (`str`): attribute of the block holding the activation module; its output
            is the neuron activation (its input is the pre-activation).
        inputs (`tuple[str, ...]`): attributes of the matrices whose output channels are the
            neurons (gate and up for gated MLPs, the first matrix for plain ones).
        output (`str`): attribute of the matrix whose input channels are the neurons.
        fused_inputs (`int`, *optional*, defaults to 1): how many neuron blocks one input
            matrix stacks along its output channels (2 for Phi-3's `gate_up_proj`).
        gated (`bool`, *optional*, defaults to `False`): the activation is multiplied by an
            up projection before the output matrix.
        description (`str`, *optional*): the models this entry is meant for, for messages.
    """

    name: str
    activation: str
    inputs: tuple[str, ...]
    output: str
    fused_inputs: int = 1
    gated: bool = False
    description: str = ""

    def matches(self, module: nn.Module) -> bool:
        names = (self.activation, self.output, *self.inputs)
        return all(isinstance(getattr(module, n, None), nn.Module) for n in names)


_FAMILIES: list[MLPFamily] = [
    MLPFamily(
        "gated",
        "act_fn",
        ("gate_proj", "up_proj"),
        "down_proj",
        gated=True,
        description="Llama, Mistral, Qwen2, Gemma, Gemma2 and any MLP with gate_proj/up_proj/down_proj/act_fn",
    ),
    MLPFamily(
        "phi3",
        "activation_fn",
        ("gate_up_proj",),
        "down_proj",
        fused_inputs=2,
        gated=True,
        description="Phi-3 (fused gate_up_proj)",
    ),
    MLPFamily("gpt2", "act", ("c_fc",), "c_proj", description="GPT-2"),
    MLPFamily("gpt_neox", "act", ("dense_h_to_4h",), "dense_4h_to_h", description="GPT-NeoX, Pythia"),
    MLPFamily("bloom", "gelu_impl", ("dense_h_to_4h",), "dense_4h_to_h", description="BLOOM"),
    MLPFamily(
        "fc",
        "activation_fn",
        ("fc1",),
        "fc2",
        description="OPT, and encoder + decoder layers of M2M100, NLLB, Marian, BART",
    ),
]


def register_mlp_family(family: MLPFamily, *, first: bool = True) -> None:
    """Teach lsn a new FFN layout; `first` puts it ahead of the built-in entries."""
    if any(f.name == family.name for f in _FAMILIES):
        raise ValueError(f"An MLP family named `{family.name}` is already registered.")
    _FAMILIES.insert(0 if first else len(_FAMILIES), family)


def registered_families() -> tuple[MLPFamily, ...]:
    return tuple(_FAMILIES)


def base_layer(module: nn.Module) -> nn.Module:
    """The original layer inside a PEFT tuner layer (the module itself otherwise)."""
    return module.get_base_layer() if hasattr(module, "get_base_layer") else module


def is_conv1d(module: nn.Module) -> bool:
    """transformers' `Conv1D` (GPT-2) stores its weight as [in, out]."""
    return type(module).__name__ == "Conv1D"


def linear_features(module: nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of a Linear, a Conv1D or a quantized linear (whose packed
    weight, e.g. bitsandbytes 4-bit, does not have the matrix's shape)."""
    module = base_layer(module)
    if is_conv1d(module):
        return tuple(module.weight.shape)
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return module.in_features, module.out_features
    out_features, in_features = module.weight.shape
    return in_features, out_features


@dataclass
class NeuronSite:
    """One FFN layer's neurons: the block, its activation module and its matrices.

    `index` is the flat layer index lsn uses everywhere (encoder layers first, then
    decoder layers); `side` is `"encoder"` or `"decoder"`.
    """

    index: int
    path: str
    side: str
    family: MLPFamily
    block: nn.Module = field(repr=False)

    @property
    def activation(self) -> nn.Module:
        return getattr(self.block, self.family.activation)

    @property
    def input_modules(self) -> list[nn.Module]:
        return [getattr(self.block, n) for n in self.family.inputs]

    @property
    def output_module(self) -> nn.Module:
        return getattr(self.block, self.family.output)

    @property
    def device(self) -> torch.device:
        """Where the layer's weights live (a model dispatched over devices has several)."""
        return base_layer(self.input_modules[0]).weight.device

    @property
    def num_neurons(self) -> int:
        """The layer's full width (under tensor parallelism, of all ranks together)."""
        return linear_features(self.input_modules[0])[1] // self.family.fused_inputs

    @property
    def neuron_range(self) -> tuple[int, int]:
        """`[start, stop)`: the global neuron indices whose activations this process computes.

        The whole layer, unless the input matrix is a DTensor sharded along its output channels
        (transformers' `tp_plan`, `colwise`: `Shard(0)`), when it is this rank's contiguous shard.
        """
        return tensor_parallel_range(self)

    @property
    def local_neurons(self) -> int:
        start, stop = self.neuron_range
        return stop - start

    def local_indices(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(here, local)`: which of the global `indices` this process computes (a bool mask over them), and
        those indices within its shard (`index - start`). The whole layer, and `indices` unchanged, without
        tensor parallelism."""
        start, stop = self.neuron_range
        here = (indices >= start) & (indices < stop)
        return here, indices[here] - start


def tensor_parallel_range(site: NeuronSite) -> tuple[int, int]:
    """`site.neuron_range` from the DTensor placements of the site's input matrix; clear errors otherwise."""
    weight = base_layer(site.input_modules[0]).weight
    width = site.num_neurons
    if not is_dtensor(weight):
        return 0, width
    from torch.distributed.tensor import Replicate, Shard

    sharded = [(dim, p) for dim, p in enumerate(weight.placements) if not isinstance(p, Replicate)]
    if not sharded:
        return 0, width
    rows = 1 if is_conv1d(base_layer(site.input_modules[0])) else 0  # the weight dimension of the neurons
    if len(sharded) > 1 or not isinstance(sharded[0][1], Shard) or sharded[0][1].dim != rows:
        raise UnsupportedModelError(
            f"`{site.path}`: its input matrix is sharded as {tuple(weight.placements)}; lsn supports tensor "
            f"parallelism that splits the neurons (`Shard({rows})` on one mesh dimension, transformers' "
            "`colwise` plan for gate/up and `rowwise` for down). Use `tp_plan='auto'` or shard only the FFN that way."
        )
    if site.family.fused_inputs != 1:
        raise UnsupportedModelError(
            f"`{site.path}`: a fused input matrix ({site.family.name}) under tensor parallelism mixes gate and up "
            "channels in each shard; lsn cannot map them to neurons. Load this model without `tp_plan`."
        )
    mesh_dim = sharded[0][0]
    parts = weight.device_mesh.size(mesh_dim)
    coordinate = weight.device_mesh.get_coordinate()[mesh_dim]
    step = -(-width // parts)  # torch.chunk's split: ceil(width / parts), the last shard smaller
    start = min(width, coordinate * step)
    return start, min(width, start + step)


def is_dtensor(tensor: torch.Tensor) -> bool:
    if not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The transformers model inside a PEFT or accelerate/DDP wrapper."""
    while True:
        if hasattr(model, "get_base_model") and callable(model.get_base_model):
            inner = model.get_base_model()
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            inner = model.module
        else:
            return model
        if inner is model:
            return model
        model = inner


def _unsupported(model: nn.Module) -> UnsupportedModelError:
    families = "; ".join(f"{f.name}: {f.description}" for f in _FAMILIES)
    return UnsupportedModelError(
        f"lsn found no FFN neurons in {type(model).__name__}. Supported families: {families}. "
        "To add another layout, describe it with `lsn.MLPFamily(...)` and call "
        "`lsn.register_mlp_family(family)` before using the model."
    )


def find_neuron_sites(model: nn.Module) -> list[NeuronSite]:
    """The FFN neuron sites of `model` in flat layer order (encoder first, then decoder).

    Raises `UnsupportedModelError` when no layout matches, or when the layers do not all
    have the same number of neurons.
    """
    model = unwrap_model(model)
    found: list[tuple[str, MLPFamily, nn.Module]] = []
    claimed: list[str] = []
    for path, module in model.named_modules():
        if any(path == c or path.startswith(c + ".") for c in claimed):
            continue
        family = next((f for f in _FAMILIES if f.matches(module)), None)
        if family is not None:
            found.append((path, family, module))
            claimed.append(path)
    if not found:
        raise _unsupported(model)

    encoder = [x for x in found if _side(x[0]) == "encoder"]
    decoder = [x for x in found if _side(x[0]) == "decoder"]
    sites = [
        NeuronSite(i, path, _side(path), family, block) for i, (path, family, block) in enumerate(encoder + decoder)
    ]
    if len({id(s.activation) for s in sites}) != len(sites):
        raise UnsupportedModelError(
            f"{type(model).__name__} shares one activation module between FFN layers, so lsn "
            "cannot tell its layers apart; give each layer its own activation module."
        )
    sizes = {s.num_neurons for s in sites}
    if len(sizes) != 1:
        raise UnsupportedModelError(
            f"{type(model).__name__} has FFN layers of different widths {sorted(sizes)}; "
            "lsn needs the same number of neurons in every layer."
        )
    return sites


def _side(path: str) -> str:
    return "encoder" if "encoder" in path.split(".") else "decoder"


def model_shape(model: nn.Module, sites: Sequence[NeuronSite] | None = None) -> dict:
    """The facts a neuron set or statistics file must match: layers, neurons, sides, name (`sites`: the model's
    neuron sites when the caller has found them already)."""
    sites = find_neuron_sites(model) if sites is None else sites
    base = unwrap_model(model)
    config = getattr(base, "config", None)
    return {
        "num_layers": len(sites),
        "num_neurons": sites[0].num_neurons,
        "num_encoder_layers": sum(s.side == "encoder" for s in sites),
        "architecture": type(base).__name__,
        "model_name": getattr(config, "_name_or_path", "") or "",
        "revision": getattr(config, "_commit_hash", None),
    }


def ffn_shape(sites: Sequence[NeuronSite]) -> tuple[int, int]:
    """(layers, neurons per layer) of a model's neuron sites."""
    return len(sites), sites[0].num_neurons


# Any way a user names neurons: a NeuronSet (with `groups`), `{layer: indices}`, or one index list per layer.
NeuronSpec = Union["NeuronSet", Mapping[int, Sequence[int] | torch.Tensor], Sequence[Sequence[int] | torch.Tensor]]


def check_indices(indices: Sequence[int] | torch.Tensor, num_neurons: int, where: str) -> torch.Tensor:
    """Sorted unique `LongTensor` of `indices`, all within `[0, num_neurons)`: the one range rule of lsn."""
    try:
        t = torch.unique(torch.as_tensor(indices, dtype=torch.long).reshape(-1))  # sorted, no repeats
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{where}: neuron indices must be integers, got {indices!r}.") from err
    if t.numel() and (t[0] < 0 or t[-1] >= num_neurons):
        bad = t[(t < 0) | (t >= num_neurons)].tolist()
        raise ValueError(
            f"{where}: neuron indices {bad[:5]} are outside [0, {num_neurons}); were these neurons selected on "
            "another model?"
        )
    return t


def check_shape(sites: Sequence[NeuronSite], num_layers: int | None, num_neurons: int | None, source: str) -> None:
    """Refuse neurons selected on a model of another FFN shape (`None` = not recorded, accepted)."""
    layers, neurons = ffn_shape(sites)
    if num_layers not in (None, layers) or num_neurons not in (None, neurons):
        block = sites[0].block
        raise ValueError(
            f"These neurons were selected on a model with {num_layers} layers x {num_neurons} neurons ({source}), "
            f"but this model ({type(block).__name__} blocks) has {layers} x {neurons}. Select neurons on this model "
            "(`lsn record` + `lsn select`) or load the matching model."
        )


def resolve_neurons(
    sites: Sequence[NeuronSite], neurons: NeuronSpec, groups: str | Iterable[str] | None = None
) -> dict[int, torch.Tensor]:
    """`{layer: sorted LongTensor}` (non-empty layers only) of `neurons` on the model whose sites are `sites`.

    The one place a neuron spec meets a model: a `NeuronSet` (the union of `groups`, all groups by default; its
    shape must match), a mapping `{layer: indices}` (layers may be strings, as in JSON), or one index list per
    layer (what `neuron_set[group]` returns). Layers and indices are range-checked here, once.
    """
    from .neuron_set import NeuronSet

    num_layers, num_neurons = ffn_shape(sites)
    if isinstance(neurons, NeuronSet):
        check_shape(sites, neurons.num_layers, neurons.num_neurons, neurons.model.get("model_name") or "unknown model")
        per_layer = dict(enumerate(neurons.union(groups)))
    else:
        if groups is not None:
            raise ValueError("`groups` selects groups of a NeuronSet; these `neurons` are already per layer.")
        if isinstance(neurons, Mapping):
            try:
                per_layer = {int(layer): idx for layer, idx in neurons.items()}
            except (TypeError, ValueError) as err:
                raise ValueError(f"`neurons` must map integer layers to indices, got keys {list(neurons)}.") from err
        else:
            if len(neurons) != num_layers:
                raise ValueError(
                    f"Got {len(neurons)} per-layer index lists, but the model has {num_layers} FFN layers; "
                    "pass one list per layer, or a `{layer: [indices]}` mapping."
                )
            per_layer = dict(enumerate(neurons))
    out = {}
    for layer, idx in sorted(per_layer.items()):
        if not 0 <= layer < num_layers:
            raise ValueError(
                f"Layer {layer} does not exist: the model has FFN layers 0..{num_layers - 1} (encoder layers first)."
            )
        t = check_indices(idx, num_neurons, f"Layer {layer}")
        if t.numel():
            out[layer] = t
    return out


def decoder_layers(model: nn.Module, sites: Sequence[NeuronSite] | None = None) -> list[nn.Module]:
    """The decoder layers (each decoder FFN block's parent module), in order: their outputs are the residual
    stream. `sites`: the model's neuron sites, when the caller has them."""
    sites = find_neuron_sites(model) if sites is None else sites
    modules = dict(unwrap_model(model).named_modules())
    return [modules[s.path.rpartition(".")[0]] for s in sites if s.side == "decoder"]


def first_device(model: nn.Module) -> torch.device:
    """Where a model's inputs go (its first parameter's device)."""
    return next(unwrap_model(model).parameters()).device
