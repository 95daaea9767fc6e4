"""lsn: find, intervene on and fine-tune the language-specific neurons of Hugging Face models."""

__version__ = "0.1.0"

from .adapter import NeuronConfig, NeuronModel, to_lora  # noqa: E402
from .generation import generate  # noqa: E402
from .intervention import apply_intervention, intervene, neuron_values  # noqa: E402
from .measurement import NLLMatrix, mean_token_nll, nll_matrix  # noqa: E402
from .models import (  # noqa: E402
    MLPFamily,
    NeuronSite,
    UnsupportedModelError,
    find_neuron_sites,
    register_mlp_family,
)
from .neuron_set import NeuronSet  # noqa: E402
from .recording import record_activations  # noqa: E402
from .scoring import token_nll  # noqa: E402
from .selection import random_neurons, select_by_probability, select_lape, select_specialized  # noqa: E402
from .stats import ActivationStats  # noqa: E402
from .trainer import NeuronTrainer  # noqa: E402

__all__ = [
    "ActivationStats",
    "MLPFamily",
    "NLLMatrix",
    "NeuronConfig",
    "NeuronModel",
    "NeuronSet",
    "NeuronSite",
    "NeuronTrainer",
    "UnsupportedModelError",
    "apply_intervention",
    "find_neuron_sites",
    "generate",
    "intervene",
    "mean_token_nll",
    "neuron_values",
    "nll_matrix",
    "random_neurons",
    "record_activations",
    "register_mlp_family",
    "select_by_probability",
    "select_lape",
    "select_specialized",
    "to_lora",
    "token_nll",
]
