"""`NeuronLayer`: one FFN matrix with trainable deltas on the rows or columns of the selected neurons only.

Rows (gate/up/fc1/c_fc: the neurons are output channels), k selected of the matrix's outputs, s = alpha / r:
    y = base(x);  y[..., idx] += s * dropout(x) @ A^T @ B^T          A: r x H,  B: k x r
Columns (down/fc2/c_proj: the neurons are input channels):
    y = base(x) + s * dropout(x[..., idx]) @ A^T @ B^T               A: r x k,  B: H x r
Full mode trains a k x H (rows) or H x k (columns) delta on the same channels instead. The delta is applied by
gather (`index_select`) and scatter (`index_add`) on the k channels; no tensor spans all neurons.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from peft.tuners._buffer_dict import BufferDict
from peft.tuners.tuners_utils import BaseTunerLayer, check_adapters_to_merge
from peft.utils import resolve_quantization_backend
from torch import nn

from ..models import is_conv1d, linear_features
from .config import NeuronConfig

__all__ = ["Axis", "NeuronLayer", "is_quantized"]

Axis = Literal["rows", "columns"]


def is_quantized(layer: nn.Module) -> bool:
    """A quantized base layer: one PEFT knows (bitsandbytes, HQQ, GPTQ ...) or one that stores its weight in a
    non-float dtype (bitsandbytes 4-bit packs uint8, 8-bit stores int8) and dequantizes in forward."""
    weight = getattr(layer, "weight", None)
    if weight is None or not isinstance(weight, torch.Tensor):
        return True
    return not weight.dtype.is_floating_point or resolve_quantization_backend(layer) is not None


class NeuronLayer(nn.Module, BaseTunerLayer):
    """Wraps one FFN matrix (`nn.Linear`, `Conv1D` or a quantized linear) and adds each active adapter's delta on
    its neurons' rows (`axis="rows"`) or columns (`axis="columns"`)."""

    adapter_layer_names = ("lsn_A", "lsn_B", "lsn_delta")
    other_param_names = ("lsn_indices", "lsn_scaling", "lsn_mode", "lsn_dropout")

    def __init__(
        self, base_layer: nn.Module, adapter_name: str, indices: torch.Tensor, axis: Axis, config: NeuronConfig
    ) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.lsn_axis: Axis = axis
        self.lsn_A = nn.ParameterDict()
        self.lsn_B = nn.ParameterDict()
        self.lsn_delta = nn.ParameterDict()
        self.lsn_indices = BufferDict(persistent=True)  # saved, moved and deleted with the adapter
        self.lsn_dropout = nn.ModuleDict()
        self.lsn_scaling: dict[str, float] = {}
        self.lsn_mode: dict[str, str] = {}
        self.in_features, self.out_features = linear_features(base_layer)
        self.lsn_quantized = is_quantized(base_layer)
        self._disable_adapters = False
        self.merged_adapters: list[str] = []
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, indices, config)

    def update_layer(self, adapter_name: str, indices: torch.Tensor, config: NeuronConfig) -> None:
        """Add an adapter on channels `indices`: LoRA factors (A kaiming-uniform, B zero) or a zero delta, so a
        fresh adapter leaves the output unchanged."""
        k = len(indices)  # resolved and range-checked by `plan_targets`
        other = self.in_features if self.lsn_axis == "rows" else self.out_features
        self.lsn_indices[adapter_name] = indices.to(torch.long)
        self.lsn_mode[adapter_name] = config.mode
        self.lsn_dropout[adapter_name] = nn.Dropout(config.lora_dropout) if config.lora_dropout > 0 else nn.Identity()
        if config.mode == "lora":
            r = config.r
            self.lsn_scaling[adapter_name] = config.lora_alpha / r
            a_shape, b_shape = ((r, other), (k, r)) if self.lsn_axis == "rows" else ((r, k), (other, r))
            A = torch.empty(a_shape)
            nn.init.kaiming_uniform_(A, a=math.sqrt(5))
            self.lsn_A[adapter_name] = nn.Parameter(A)
            self.lsn_B[adapter_name] = nn.Parameter(torch.zeros(b_shape))
        else:
            self.lsn_scaling[adapter_name] = 1.0
            shape = (k, other) if self.lsn_axis == "rows" else (other, k)
            self.lsn_delta[adapter_name] = nn.Parameter(torch.zeros(shape))
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    # ------------------------------------------------------------------ forward
    def _adapter_dtype(self, adapter_name: str) -> torch.dtype:
        store = self.lsn_A if self.lsn_mode[adapter_name] == "lora" else self.lsn_delta
        return store[adapter_name].dtype

    def _delta_out(self, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        """The adapter's contribution for input `x` (already restricted to the neurons for columns)."""
        x = self.lsn_dropout[adapter_name](x.to(self._adapter_dtype(adapter_name)))
        if self.lsn_mode[adapter_name] == "full":
            return F.linear(x, self.lsn_delta[adapter_name])
        low = F.linear(x, self.lsn_A[adapter_name])  # [..., r]
        return F.linear(low, self.lsn_B[adapter_name]) * self.lsn_scaling[adapter_name]

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        result = self.base_layer(x, *args, **kwargs)
        if self.merged:
            return result
        for name in self.active_adapters:
            if name not in self.lsn_indices:
                continue
            idx = self.lsn_indices[name]
            if self.lsn_axis == "rows":
                delta = self._delta_out(name, x)  # [..., k]
                result = result.index_add(-1, idx, delta.to(result.dtype))
            else:
                delta = self._delta_out(name, x.index_select(-1, idx))  # [..., H]
                result = result + delta.to(result.dtype)
        return result

    # ------------------------------------------------------------------ merge
    def compact_delta(self, adapter_name: str) -> torch.Tensor:
        """The weight change on the selected channels, in [out, in] layout: k x in (rows) or out x k (columns)."""
        if self.lsn_mode[adapter_name] == "full":
            return self.lsn_delta[adapter_name]
        return (self.lsn_B[adapter_name] @ self.lsn_A[adapter_name]) * self.lsn_scaling[adapter_name]

    def _weight_view(self) -> torch.Tensor:
        """The base weight as an [out, in] view (Conv1D stores [in, out])."""
        weight = self.get_base_layer().weight.data
        return weight.T if is_conv1d(self.get_base_layer()) else weight

    def _scatter(self, weight: torch.Tensor, adapter_name: str, sign: float) -> None:
        delta = (self.compact_delta(adapter_name).detach() * sign).to(weight.dtype)
        weight.index_add_(0 if self.lsn_axis == "rows" else 1, self.lsn_indices[adapter_name], delta)

    def check_mergeable(self) -> None:
        if self.lsn_quantized:
            raise TypeError(
                f"Cannot merge an lsn adapter into a quantized base layer ({type(self.get_base_layer()).__name__}): "
                "re-quantizing would change every weight of the matrix, not only the neurons. Load the base model "
                "unquantized to merge, or keep the adapter unmerged (forward works on quantized bases)."
            )

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """Add the active (or given) adapters' deltas into the base weight at their rows/columns.

        `safe_merge` merges into a copy first and refuses a result with NaN/inf.
        """
        adapter_names = check_adapters_to_merge(self, adapter_names)
        if not adapter_names:
            return
        self.check_mergeable()
        for name in adapter_names:
            if name not in self.lsn_indices:
                continue
            weight = self._weight_view()
            with torch.no_grad():
                if safe_merge:
                    merged = weight.clone()
                    self._scatter(merged, name, 1.0)
                    if not torch.isfinite(merged).all():
                        raise ValueError(f"NaNs detected in the merged weights. The adapter {name} seems to be broken")
                    weight.copy_(merged)
                else:
                    self._scatter(weight, name, 1.0)
            self.merged_adapters.append(name)

    def unmerge(self) -> None:
        """Subtract the merged adapters' deltas again, last merged first."""
        if not self.merged:
            warnings.warn("Already unmerged. Nothing to do.", stacklevel=2)
            return
        with torch.no_grad():
            while self.merged_adapters:
                name = self.merged_adapters.pop()
                if name in self.lsn_indices:
                    self._scatter(self._weight_view(), name, -1.0)

    def __repr__(self) -> str:
        return "lsn." + super().__repr__()

    def extra_repr(self) -> str:
        return f"axis={self.lsn_axis}, quantized={self.lsn_quantized}"
