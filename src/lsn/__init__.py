"""lsn: find, intervene on and fine-tune the language-specific neurons of Hugging Face models."""

__version__ = "0.1.0"

from .adapter import NeuronConfig, NeuronModel, to_lora  # noqa: E402
from .diffmean import add_direction, diffmean_directions, record_residual_means  # noqa: E402
from .generation import generate  # noqa: E402
from .intervention import apply_intervention, intervene, neuron_values  # noqa: E402
from .language_id import LanguageIdentifier  # noqa: E402
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
from .responses import SentenceResponses, record_sentence_responses  # noqa: E402
from .scoring import token_nll  # noqa: E402
from .selection import random_neurons, select_by_probability, select_lape, select_specialized  # noqa: E402
from .selection_ap import average_precision, median_responses, select_average_precision  # noqa: E402
from .stats import ActivationStats  # noqa: E402
from .steering import steer  # noqa: E402
from .steering_eval import SteeringReport, steering_eval  # noqa: E402
from .trainer import NeuronTrainer  # noqa: E402

__all__ = [
    "ActivationStats",
    "LanguageIdentifier",
    "MLPFamily",
    "NLLMatrix",
    "NeuronConfig",
    "NeuronModel",
    "NeuronSet",
    "NeuronSite",
    "NeuronTrainer",
    "SentenceResponses",
    "SteeringReport",
    "UnsupportedModelError",
    "add_direction",
    "apply_intervention",
    "average_precision",
    "diffmean_directions",
    "find_neuron_sites",
    "generate",
    "intervene",
    "mean_token_nll",
    "neuron_values",
    "median_responses",
    "nll_matrix",
    "random_neurons",
    "record_activations",
    "record_residual_means",
    "record_sentence_responses",
    "register_mlp_family",
    "select_average_precision",
    "select_by_probability",
    "select_lape",
    "select_specialized",
    "steer",
    "steering_eval",
    "to_lora",
    "token_nll",
]
