"""The pieces of lsn's model cards that neuron sets and adapters share: the per-layer counts table and the
parameter list, so a set and the adapter trained on it describe their neurons the same way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["counts_table", "parameter_list"]


def counts_table(rows: Mapping[str, Sequence[int]], num_layers: int, label: str = "group") -> list[str]:
    """Markdown lines: one row per entry of `rows` (a label -> neurons per layer), with its total."""
    header = f"| {label} | total | " + " | ".join(f"L{layer}" for layer in range(num_layers)) + " |"
    rule = "|---" * (num_layers + 2) + "|"
    body = [
        f"| {name} | {sum(counts)} | " + " | ".join(str(int(c)) for c in counts) + " |" for name, counts in rows.items()
    ]
    return [header, rule, *body]


def parameter_list(parameters: Mapping[str, object]) -> str:
    """Markdown bullets of the parameters that were set (unset ones are left out)."""
    return "\n".join(f"- `{k}`: `{v}`" for k, v in parameters.items() if v is not None) or "- (none recorded)"
