"""Run by `accelerate launch` from test_packing_resume: record on 2 processes, save on rank 0."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
from conftest import fixed_threshold, make_tiny_model, padded_batches, tiny_texts, tiny_tokenizer_for  # noqa: E402

import lsn  # noqa: E402


def corpora_and_model(tokenizer, texts):
    """Text groups (packed windows are sharded) and a batch group (batches are sharded)."""
    model = make_tiny_model("llama", vocab_size=len(tokenizer))
    corpora = {"en": texts["en"], "hi": texts["hi"], "batches": padded_batches(5, seed=9)}
    return model, corpora


if __name__ == "__main__":
    texts = tiny_texts()
    tokenizer = tiny_tokenizer_for(texts)
    model, corpora = corpora_and_model(tokenizer, texts)
    stats = lsn.record_activations(
        model,
        corpora,
        tokenizer=tokenizer,
        seq_len=16,
        batch_size=2,
        quantile=0.9,
        threshold=fixed_threshold(model),
        record_sums=True,
        progress=False,
    )
    assert torch.distributed.get_world_size() == 2
    if torch.distributed.get_rank() == 0:
        stats.save(sys.argv[1])
