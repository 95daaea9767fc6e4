"""Training with task masks: `SpecializationTrainer`, a `Seq2SeqTrainer` with one direction per batch.

What it changes, and nothing else: the training batches come from `DirectionBatchSampler`
(one direction each, temperature sampling), and the batch's direction selects the active
`TaskMasks` entry in training and evaluation forward passes. The masks combine with full
fine-tuning, LoRA or lsn's neuron adapter alike, since they act on the activations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext

import datasets
from torch.utils.data import DataLoader
from transformers import Seq2SeqTrainer

from .data import TASK_KEY, Pair, TranslationFormat
from .masks import TaskMasks
from .sampling import DirectionBatchSampler

__all__ = ["SpecializationTrainer", "build_dataset"]


def build_dataset(
    tokenizer, fmt: TranslationFormat, pairs: Mapping[str, Sequence[Pair]], directions: Sequence[str]
) -> datasets.Dataset:
    """Teacher-forcing features of every pair, with `task_id` = the index of its direction in `directions`."""
    rows = []
    for direction, direction_pairs in pairs.items():
        if direction not in directions:
            raise ValueError(f"Direction `{direction}` is not among the tasks {list(directions)}.")
        for feature in fmt.encode(tokenizer, direction, direction_pairs):
            rows.append(feature | {TASK_KEY: directions.index(direction)})
    if not rows:
        raise ValueError("No training pairs: every direction is empty.")
    return datasets.Dataset.from_list(rows)


class SpecializationTrainer(Seq2SeqTrainer):
    """`Seq2SeqTrainer` for Neuron Specialization (Tan et al. 2024).

    Args:
        task_masks (`TaskMasks`, *optional*): per-direction masks; `None` trains the unmasked
            baseline with the same one-direction-per-batch sampling.
        directions (`Sequence[str]`): direction names, indexed by the datasets' `task_id` column.
        direction_temperature (`float`, *optional*, defaults to 5.0): sampling temperature.
    Other arguments are `Seq2SeqTrainer`'s; `train_dataset` rows need a `task_id` column
    (see `build_dataset`).
    """

    def __init__(
        self,
        *args,
        task_masks: TaskMasks | None = None,
        directions: Sequence[str],
        direction_temperature: float = 5.0,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.task_masks = task_masks
        self.directions = list(directions)
        self.direction_temperature = direction_temperature

    # ------------------------------------------------------------------ batches
    def get_train_dataloader(self) -> DataLoader:
        dataset = self.train_dataset
        sampler = DirectionBatchSampler(
            [self.directions[t] for t in dataset[TASK_KEY]],
            self._train_batch_size,
            temperature=self.direction_temperature,
            seed=self.args.seed,
        )
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
        )
        return self.accelerator.prepare(loader)

    # ------------------------------------------------------------------ masks
    def _masks_attached(self):
        return self.task_masks.attached(self.model) if self.task_masks is not None else nullcontext()

    def _select_task(self, inputs: dict) -> None:
        task = inputs.pop(TASK_KEY, None)
        if self.task_masks is None:
            return
        if task is None:
            raise ValueError("A batch without `task_id` reached the trainer; build datasets with `build_dataset`.")
        # Stays set until the next batch, so a recomputed forward (gradient checkpointing) sees it too.
        self.task_masks.set_task(self.directions[int(task[0])])

    def train(self, *args, **kwargs):
        with self._masks_attached():
            return super().train(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        with self._masks_attached():
            return super().evaluate(*args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self._select_task(inputs)
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        self._select_task(inputs)
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys, **gen_kwargs)

    def _set_signature_columns_if_needed(self):
        # `task_id` is no model argument, but the trainer needs it in every batch.
        super()._set_signature_columns_if_needed()
        if TASK_KEY not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, TASK_KEY]
