"""Bounded-memory scoring: chunked next-token NLL equals the model's own loss, and stays small at 128k vocab."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_model, padded_batches

import lsn
from lsn.corpora import Batch
from lsn.measurement import mean_token_nll
from lsn.scoring import token_nll


@pytest.mark.parametrize("family", ["llama", "gemma2", "gpt2", "opt"])
@pytest.mark.parametrize("chunk", [1, 5, None])
def test_token_nll_equals_the_models_loss(family, chunk):
    model = make_tiny_model(family)
    for batch in padded_batches(2, seed=3):
        ids, mask = batch["input_ids"], batch["attention_mask"]
        with torch.no_grad():
            loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
            nll = token_nll(model, ids, mask, chunk_tokens=chunk)
        assert nll.shape == (ids.shape[0], ids.shape[1] - 1)
        assert torch.all(nll[mask[:, 1:] == 0] == 0)
        torch.testing.assert_close(nll.sum() / mask[:, 1:].sum(), loss, rtol=1e-5, atol=1e-6)


def test_labels_select_the_scored_positions():
    """With `labels`, only their non -100 targets count (the NLI prompt's label word)."""
    model = make_tiny_model("llama")
    ids = torch.randint(3, 128, (2, 7), generator=torch.Generator().manual_seed(0))
    labels = torch.full_like(ids, -100)
    labels[:, 4:] = ids[:, 4:]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[:, :-1].float(), -1)
        expected = -logp.gather(-1, ids[:, 1:, None])[..., 0][:, 3:].sum(-1)
        got = token_nll(model, ids, None, labels, chunk_tokens=3).sum(-1)
    torch.testing.assert_close(got, expected)


def test_mean_token_nll_and_nll_matrix_baseline_equal_the_models_loss():
    model = make_tiny_model("llama")
    batches = [Batch(inputs=b, masks={"decoder": b["attention_mask"]}) for b in padded_batches(3, seed=5)]
    mean, count = mean_token_nll(model, batches)
    total, n = 0.0, 0
    with torch.no_grad():
        for b in batches:
            ids, mask = b.inputs["input_ids"], b.inputs["attention_mask"]
            k = int(mask[:, 1:].sum())
            total += float(model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss) * k
            n += k
    assert count == n
    assert mean == pytest.approx(total / n, rel=1e-5)


def test_token_nll_refuses_models_without_an_lm_head():
    with pytest.raises(ValueError, match="backbone and LM head"):
        token_nll(make_tiny_model("llama").model, torch.ones(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="decoder-only"):
        token_nll(make_tiny_model("marian"), torch.ones(1, 4, dtype=torch.long))


def test_peak_memory_at_llama3_vocabulary_stays_bounded():
    """Vocab 128256, batch 4 x 1024: the full float32 logits alone would be 2 GB (the old path grew ~6 GB)."""
    worker = Path(__file__).with_name("nll_memory_worker.py")
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(Path(lsn.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])
    }
    result = subprocess.run(
        [sys.executable, str(worker), "128256", "4", "1024"], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["peak_growth_mib"] < 700, figures
    assert figures["max_loss_diff"] < 1e-4, figures
