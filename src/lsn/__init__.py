"""lsn: find, intervene on and fine-tune the language-specific neurons of Hugging Face models.

The public names are imported on first use (PEP 562), so `import lsn` and `lsn --help` do not load torch,
transformers or peft. `import lsn` still registers lsn's PEFT method before PEFT can be used: if peft is already
imported, `lsn.adapter` is imported now; otherwise it is imported right after peft's own import completes.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

_EXPORTS = {
    "ActivationStats": "stats",
    "LanguageIdentifier": "language_id",
    "MLPFamily": "models",
    "NLLMatrix": "measurement",
    "NeuronConfig": "adapter",
    "NeuronModel": "adapter",
    "NeuronSet": "neuron_set",
    "NeuronSite": "models",
    "NeuronTrainer": "trainer",
    "SentenceResponses": "responses",
    "SteeringReport": "steering_eval",
    "UnsupportedModelError": "models",
    "add_direction": "diffmean",
    "apply_intervention": "intervention",
    "average_precision": "selection_ap",
    "diffmean_directions": "diffmean",
    "find_neuron_sites": "models",
    "generate": "generation",
    "intervene": "intervention",
    "mean_token_nll": "measurement",
    "median_responses": "selection_ap",
    "neuron_values": "intervention",
    "nll_matrix": "measurement",
    "random_neurons": "selection",
    "record_activations": "recording",
    "record_residual_means": "diffmean",
    "record_sentence_responses": "responses",
    "register_mlp_family": "models",
    "select_average_precision": "selection_ap",
    "select_by_probability": "selection",
    "select_lape": "selection",
    "select_specialized": "selection",
    "steer": "steering",
    "steering_eval": "steering_eval",
    "to_lora": "adapter",
    "token_nll": "scoring",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """`lsn.X`: a public name from its module, or a submodule (`lsn.models`), imported on first use."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _RegisterAfterPeft(importlib.abc.MetaPathFinder):
    """Finds `peft` through the other finders and hands out a loader that registers lsn after it.

    It stays on `sys.meta_path` until peft is actually executed: a mere `importlib.util.find_spec("peft")` (as
    transformers' availability checks do) imports nothing.
    """

    _finding = False

    def find_spec(self, fullname, path, target=None):
        if fullname != "peft" or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec("peft")
        finally:
            self._finding = False
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenRegister(spec.loader)
        return spec


class _ThenRegister(importlib.abc.Loader):
    """peft's own loader, followed by `import lsn.adapter` (which registers the PEFT method)."""

    def __init__(self, loader) -> None:
        self._loader = loader

    def __getattr__(self, name: str):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RegisterAfterPeft)]
        self._loader.exec_module(module)
        importlib.import_module(".adapter", __name__)


if "peft" in sys.modules:
    importlib.import_module(".adapter", __name__)
elif not any(isinstance(f, _RegisterAfterPeft) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterPeft())
