"""`NeuronConfig`: which neurons an lsn adapter trains, how, and the facts its model card reports."""

from __future__ import annotations

import enum
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from huggingface_hub import ModelCard
from peft import PeftConfig

from .. import __version__
from ..cards import counts_table, parameter_list
from ..neuron_set import NeuronSet

__all__ = ["LsnPeftType", "NeuronConfig", "card_section", "write_card_section"]

_CARD_BEGIN, _CARD_END = "<!-- lsn-adapter -->", "<!-- /lsn-adapter -->"


class LsnPeftType(str, enum.Enum):
    """lsn's PEFT type. PEFT keys its registries by `PeftType`; a str-Enum member with the same name and value
    hashes and compares like the string `"LSN"` stored in `adapter_config.json`."""

    LSN = "LSN"


@dataclass
class NeuronConfig(PeftConfig):
    """Configuration of a neuron adapter ([`NeuronModel`]): trainable deltas on the selected FFN neurons only.

    Neuron j of layer l is row j of the matrices that produce the FFN's intermediate activation (gate/up, fc1,
    c_fc ...) and column j of the matrix that consumes it (down, fc2, c_proj ...). Only those rows and columns
    change; the trainable tensors are compact (r x H + k x r per matrix in `"lora"` mode, k x H in `"full"` mode).

    Args:
        neurons (`dict[int, list[int]]`, `NeuronSet` or `str`):
            The neurons to train: `{layer: [indices]}` (layer = lsn's flat FFN layer index, encoder layers first),
            an `lsn.NeuronSet` (with `groups`), or the path of a saved NeuronSet. Stored as
            `{"layer": [indices]}` in `adapter_config.json`, so a saved adapter reloads with nothing else.
        groups (`list[str]`, *optional*, defaults to `None`):
            Groups of a NeuronSet to train (their union). Required when the set has several groups. With a plain
            mapping it only labels the model card.
        mode (`Literal["lora", "full"]`, *optional*, defaults to `"lora"`):
            `"lora"`: a rank-`r` delta `lora_alpha / r * B @ A` restricted to the neurons' rows/columns.
            `"full"`: a dense trainable delta on those rows (k x H) or columns (H x k), initialised to zero.
        r (`int`, *optional*, defaults to `8`):
            LoRA rank (`"lora"` mode only).
        lora_alpha (`float`, *optional*, defaults to `16`):
            LoRA scaling numerator; the delta is scaled by `lora_alpha / r` (`"lora"` mode only).
        lora_dropout (`float`, *optional*, defaults to `0.0`):
            Dropout on the adapter's input (the selected input channels for column matrices), both modes.
        target_modules (`list[str]`, *optional*, defaults to `None`):
            FFN matrices to adapt by attribute name, e.g. `["gate_proj"]`, `["gate_proj", "up_proj", "down_proj"]`,
            `["fc1", "fc2"]`. `None`: every FFN matrix of the model's family.
        fused_gate_up (`Literal["both", "gate", "up"]`, *optional*, defaults to `"both"`):
            For a fused gate/up matrix (Phi-3 `gate_up_proj`, rows `[0:I]` gate and `[I:2I]` up), which rows of
            neuron j to adapt: both (`j` and `I + j`), the gate row `j` only, or the up row `I + j` only.
        modules_to_save (`list[str]`, *optional*, defaults to `None`):
            Other modules to train fully and save with the adapter, e.g. a new classification head.
        num_layers (`int`, *optional*, defaults to `None`):
            FFN layers of the model the neurons were selected on (filled from a NeuronSet, or from the model when
            the adapter is created). A model of another shape is refused.
        num_neurons (`int`, *optional*, defaults to `None`):
            Neurons per FFN layer of that model.
        neuron_method (`str`, *optional*, defaults to `""`):
            How the neurons were selected (e.g. `"lape"`), for the model card.
        neuron_parameters (`dict`, *optional*, defaults to `{}`):
            The selection method's parameters, for the model card.
        neuron_model (`str`, *optional*, defaults to `""`):
            The model the neurons were selected on, for the model card.
    """

    neurons: dict[str, list[int]] | str | os.PathLike | NeuronSet | None = field(
        default=None,
        metadata={
            "help": "The neurons to train: {layer: [indices]}, an lsn.NeuronSet (with `groups`) or the path of "
            'a saved NeuronSet. Stored as {"layer": [indices]}.'
        },
    )
    groups: list[str] | None = field(
        default=None,
        metadata={"help": "Groups of a NeuronSet to train (their union); required when the set has several groups."},
    )
    mode: Literal["lora", "full"] = field(
        default="lora",
        metadata={"help": "'lora': rank-r delta on the neurons' rows/columns; 'full': a dense delta on them."},
    )
    r: int = field(default=8, metadata={"help": "LoRA rank ('lora' mode only)."})
    lora_alpha: float = field(
        default=16, metadata={"help": "The delta is scaled by lora_alpha / r ('lora' mode only)."}
    )
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the adapter's input, both modes."})
    target_modules: list[str] | str | None = field(
        default=None,
        metadata={
            "help": "FFN matrices to adapt by attribute name, e.g. ['gate_proj'] or ['fc1', 'fc2']; "
            "None: every FFN matrix of the model's family."
        },
    )
    dense_lora_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Other linear modules, by attribute name (e.g. ['q_proj', 'k_proj', 'v_proj']), that get a plain "
            "dense LoRA in this same adapter (every output row), as Mondal et al.'s XQuAD runs add attention LoRA "
            "to the neuron-restricted gate_proj LoRA. 'lora' mode only."
        },
    )
    fused_gate_up: Literal["both", "gate", "up"] = field(
        default="both",
        metadata={"help": "Fused gate/up matrices (Phi-3): adapt the gate row j, the up row I + j, or both."},
    )
    modules_to_save: list[str] | None = field(
        default=None, metadata={"help": "Other modules to train fully and save with the adapter."}
    )
    num_layers: int | None = field(default=None, metadata={"help": "FFN layers of the neurons' model."})
    num_neurons: int | None = field(default=None, metadata={"help": "Neurons per FFN layer of the neurons' model."})
    neuron_method: str = field(default="", metadata={"help": "How the neurons were selected, for the model card."})
    neuron_parameters: dict = field(
        default_factory=dict, metadata={"help": "The selection method's parameters, for the model card."}
    )
    neuron_model: str = field(default="", metadata={"help": "The model the neurons were selected on."})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = LsnPeftType.LSN
        if self.mode not in ("lora", "full"):
            raise ValueError(f"`mode` must be 'lora' or 'full', got {self.mode!r}.")
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r <= 0:
            raise ValueError(f"`r` must be a positive integer, got {self.r!r}.")
        if not self.lora_alpha > 0:
            raise ValueError(f"`lora_alpha` must be positive, got {self.lora_alpha!r}.")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"`lora_dropout` must be in [0, 1), got {self.lora_dropout!r}.")
        if self.fused_gate_up not in ("both", "gate", "up"):
            raise ValueError(f"`fused_gate_up` must be 'both', 'gate' or 'up', got {self.fused_gate_up!r}.")
        if self.mode == "full" and (self.r, self.lora_alpha) != (8, 16):
            warnings.warn(
                f"`r`={self.r} and `lora_alpha`={self.lora_alpha} are ignored in mode='full' "
                "(the delta is trained densely, unscaled).",
                stacklevel=3,
            )
        if isinstance(self.dense_lora_modules, str):
            self.dense_lora_modules = [self.dense_lora_modules]
        if self.dense_lora_modules is not None:
            self.dense_lora_modules = list(dict.fromkeys(self.dense_lora_modules)) or None
            if self.dense_lora_modules and self.mode != "lora":
                raise ValueError(
                    f"`dense_lora_modules` {self.dense_lora_modules} needs mode='lora' (a dense full delta would be "
                    "full fine-tuning); use `modules_to_save` to train whole modules."
                )
        if isinstance(self.target_modules, str):
            self.target_modules = [self.target_modules]
        if self.target_modules is not None:
            self.target_modules = list(dict.fromkeys(self.target_modules))
            if not self.target_modules:
                raise ValueError("`target_modules` is empty; leave it unset to adapt every FFN matrix.")
        if isinstance(self.groups, str):
            self.groups = [self.groups]
        self.neurons = self._normalise_neurons(self.neurons)

    def _normalise_neurons(self, neurons: Any) -> dict[str, list[int]]:
        """Types only, for JSON: `{"layer": sorted unique indices}`. Ranges are checked against the model, once,
        when the adapter is created (`lsn.models.resolve_neurons`)."""
        if neurons is None:
            raise ValueError("`neurons` is required: pass {layer: [indices]}, an lsn.NeuronSet or its saved path.")
        if isinstance(neurons, (str, os.PathLike)):
            neurons = NeuronSet.load(neurons)
        if isinstance(neurons, NeuronSet):
            if self.groups is None and len(neurons) != 1:
                raise ValueError(
                    f"`groups` is required: the NeuronSet has groups {neurons.groups}; pass e.g. "
                    f"groups=[{neurons.groups[0]!r}] (several groups train their union)."
                )
            self.groups = list(self.groups if self.groups is not None else neurons.groups)
            self.num_layers, self.num_neurons = neurons.num_layers, neurons.num_neurons
            self.neuron_method = self.neuron_method or neurons.method
            self.neuron_parameters = self.neuron_parameters or dict(neurons.parameters)
            self.neuron_model = self.neuron_model or neurons.model.get("model_name", "")
            neurons = dict(enumerate(neurons.union(self.groups)))
        if not isinstance(neurons, Mapping):
            raise TypeError(
                "`neurons` must be a mapping {layer: [indices]}, a NeuronSet or a path, "
                f"got {type(neurons).__name__}."
            )
        out: dict[int, list[int]] = {}
        for layer, indices in neurons.items():
            try:
                values = sorted({int(i) for i in (indices.tolist() if hasattr(indices, "tolist") else indices)})
                key = int(layer)
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"`neurons` must map integer layers to integer indices; layer {layer!r} has {indices!r}."
                ) from err
            if values:
                out[key] = values
        if not out:
            raise ValueError("`neurons` selects no neuron; pass at least one layer with indices.")
        return {str(layer): out[layer] for layer in sorted(out)}

    def save_pretrained(self, save_directory: str, **kwargs: Any) -> None:
        """Save `adapter_config.json` and add lsn's section to the folder's model card (`README.md`).

        PEFT writes its card before it saves each adapter's config, so the section is added last and survives
        `PeftModel.save_pretrained`. (`PeftModel.push_to_hub` then replaces the README with a generic card;
        `lsn.adapter.push_to_hub` uploads this one.)
        """
        super().save_pretrained(save_directory, **kwargs)
        write_card_section(Path(save_directory), self)


def card_section(config: NeuronConfig, lora_rank: int | None = None) -> str:
    """The model card text of an lsn adapter: method, parameters, base model and per-layer neuron counts.
    `lora_rank`: the adapter was exported by `to_lora` as a plain LoRA of that rank."""
    counts = {int(layer): len(idx) for layer, idx in config.neurons.items()}
    num_layers = config.num_layers or max(counts) + 1
    table = counts_table({"neurons": [counts.get(layer, 0) for layer in range(num_layers)]}, num_layers, label="")
    training = (
        f"LoRA factors of rank {config.r} (lora_alpha {config.lora_alpha})"
        if config.mode == "lora"
        else "a dense delta (full mode)"
    )
    targets = ", ".join(f"`{m}`" for m in config.target_modules) if config.target_modules else "every FFN matrix"
    if config.dense_lora_modules:
        targets += " (plus a dense LoRA on every " + ", ".join(f"`{m}`" for m in config.dense_lora_modules) + ")"
    params = parameter_list(config.neuron_parameters)
    shape = f"{config.num_layers} layers x {config.num_neurons} neurons" if config.num_neurons else "unknown shape"
    exported = (
        []
        if lora_rank is None
        else [
            "",
            f"Exported by `lsn.to_lora` as a plain LoRA of rank {lora_rank} whose factors are zero outside the "
            "neurons' rows/columns: the same outputs, loadable by standard LoRA serving without lsn.",
        ]
    )
    lines = [
        _CARD_BEGIN,
        "## Language-specific neuron adapter (lsn)",
        "",
        f"Trains only selected FFN neurons of `{config.base_model_name_or_path or 'the base model'}` with lsn "
        f"{__version__}: {training} on the neurons' rows (input matrices) and columns (output matrix) of "
        f"{targets}; every other weight is frozen.",
        *exported,
        "",
        f"- Neuron selection: **{config.neuron_method or 'custom'}** on `{config.neuron_model or 'unknown'}` "
        f"({shape}), groups: {', '.join(config.groups or []) or '-'}",
        f"- Mode: `{config.mode}`, dropout {config.lora_dropout}",
        "",
        "### Selection parameters",
        "",
        params,
        "",
        "### Neurons per layer",
        "",
        *table,
        "",
        "### Use",
        "",
        "```python",
        *(["import lsn  # registers the method with PEFT"] if lora_rank is None else []),
        "from peft import PeftModel",
        "",
        'model = PeftModel.from_pretrained(base_model, "REPO_OR_DIR")',
        "```",
        _CARD_END,
    ]
    return "\n".join(lines)


def write_card_section(directory: Path, config: NeuronConfig, lora_rank: int | None = None) -> None:
    """Add (or replace) lsn's section and tags in `directory/README.md`, keeping what PEFT wrote."""
    path = directory / "README.md"
    card = ModelCard.load(path) if path.is_file() else ModelCard("---\nlibrary_name: peft\n---\n")
    card.data.tags = sorted(set(card.data.tags or []) | {"lsn", "language-specific-neurons"})
    if config.base_model_name_or_path and not card.data.get("base_model"):
        card.data.base_model = config.base_model_name_or_path
    text = card.text
    if _CARD_BEGIN in text and _CARD_END in text:
        head, _, rest = text.partition(_CARD_BEGIN)
        text = head + rest.partition(_CARD_END)[2].lstrip("\n")
    card.text = card_section(config, lora_rank) + "\n\n" + text.lstrip("\n")
    card.save(path)
