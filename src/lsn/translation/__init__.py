"""Neuron Specialization for multilingual translation (Tan, Wu, Monz 2024), with sacrebleu scoring."""

from .data import TaskCollator, TranslationFormat, load_flores, load_parallel_file, parse_direction
from .evaluation import evaluate_directions, results_table, translate
from .identification import direction_batches, direction_k, identify
from .masks import TaskMasks
from .metrics import DirectionScore, group_averages, score_direction
from .sampling import DirectionBatchSampler, temperature_probabilities
from .trainer import SpecializationTrainer, build_dataset

__all__ = [
    "DirectionBatchSampler",
    "DirectionScore",
    "SpecializationTrainer",
    "TaskCollator",
    "TaskMasks",
    "TranslationFormat",
    "build_dataset",
    "direction_batches",
    "direction_k",
    "evaluate_directions",
    "group_averages",
    "identify",
    "load_flores",
    "load_parallel_file",
    "parse_direction",
    "results_table",
    "score_direction",
    "temperature_probabilities",
    "translate",
]
