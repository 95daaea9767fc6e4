"""Local `evaluate` modules, loadable offline."""

from __future__ import annotations

from pathlib import Path

__all__ = ["load"]

_MODULES = Path(__file__).resolve().parent / "evaluate_modules"
_NAMES = {"squad": "lsn_squad", "accuracy": "lsn_accuracy"}


def load(name: str, **kwargs):
    """`evaluate.load` of lsn's local module `name` (`"squad"` or `"accuracy"`)."""
    import evaluate

    if name not in _NAMES:
        raise ValueError(f"No local metric `{name}`; available: {sorted(_NAMES)}.")
    return evaluate.load(str(_MODULES / _NAMES[name]), **kwargs)
