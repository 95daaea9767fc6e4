"""Kojima et al. 2024: sentence responses (mean over real tokens) and average-precision neurons."""

import numpy as np
import pytest
import torch
from conftest import make_tiny_model
from sklearn.metrics import average_precision_score

from lsn.hooks import activation_hooks
from lsn.models import find_neuron_sites
from lsn.responses import SentenceResponses, record_sentence_responses
from lsn.selection_ap import average_precision, median_responses, select_average_precision


def _planted(seed=0, sentences=40, layers=2, neurons=6, groups=("en", "de", "ru")):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(sentences) % len(groups)
    values = torch.randint(0, 4, (sentences, layers, neurons), generator=g).float()  # many ties
    values[:, 0, 0] += 10 * (labels == 1)  # a perfect de detector
    values[:, 1, 2] = 1.0  # all tied
    return SentenceResponses(values, labels, list(groups))


def test_average_precision_equals_sklearn_with_ties():
    r = _planted()
    ap = average_precision(r)
    assert ap.shape == (2, 6, 3)
    for layer in range(2):
        for neuron in range(6):
            for k in range(3):
                y = (r.labels == k).numpy()
                expected = average_precision_score(y, r.values[:, layer, neuron].numpy())
                assert ap[layer, neuron, k].item() == pytest.approx(expected, abs=1e-12)
    assert ap[0, 0, 1].item() == 1.0


def test_average_precision_in_chunks(monkeypatch):
    import lsn.selection_ap as module

    r = _planted(seed=3)
    whole = average_precision(r)
    monkeypatch.setattr(module, "_CHUNK_ELEMENTS", 40 * 5)  # 5 columns a chunk
    assert torch.equal(average_precision(r), whole)


def test_select_and_median():
    r = _planted(seed=1)
    s = select_average_precision(r, top_n=3, bottom_n=2)
    assert s.method == "average_precision" and s.groups == ["en", "de", "ru"]
    ap = np.array(
        [
            [[average_precision_score((r.labels == k).numpy(), r.values[:, i, j].numpy()) for k in range(3)]
             for j in range(6)]
            for i in range(2)
        ]
    ).reshape(12, 3)  # fmt: skip
    for k, g in enumerate(s.groups):
        chosen = sorted(int(layer) * 6 + int(n) for layer, idx in enumerate(s[g]) for n in idx)
        order = np.argsort(-ap[:, k], kind="stable")
        assert chosen == sorted([*order[:3], *order[-2:]])
    assert 0 * 6 + 0 in [int(n) for n in s["de"][0]]
    med = median_responses(r)
    for k in range(3):
        expected = np.median(r.values[r.labels == k].numpy(), axis=0)
        assert np.allclose(med[..., k].numpy(), expected)
        assert torch.equal(median_responses(r, r.groups[k]), med[..., k])
    with pytest.raises(ValueError, match="exceeds"):
        select_average_precision(r, top_n=10, bottom_n=3)


def test_pooled_responses_equal_masked_mean(tmp_path, multilingual_texts, tiny_tokenizer):
    tok = tiny_tokenizer
    model = make_tiny_model("llama", vocab_size=len(tok))
    corpora = {g: [s.split(". ")[0] for s in texts[:4]] for g, texts in list(multilingual_texts.items())[:3]}
    r = record_sentence_responses(model, corpora, tokenizer=tok, batch_size=3, max_length=64, progress=False)
    assert r.values.shape == (12, 2, 64) and r.groups == list(corpora)
    assert r.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    # Independently: one sentence at a time (no padding), mean over its tokens.
    sites = find_neuron_sites(model)
    expected, acts = [], {}

    def keep(site, pre, act):
        acts[site.index] = act[0].mean(0)

    for texts in corpora.values():
        for text in texts:
            ids = tok(text, return_tensors="pt", truncation=True, max_length=64)
            with activation_hooks(sites, keep), torch.no_grad():
                model(**ids)
            expected.append(torch.stack([acts[i] for i in range(len(sites))]))
    lengths = [len(tok(t)["input_ids"]) for texts in corpora.values() for t in texts]
    assert len(set(lengths)) > 1  # batches really were padded
    torch.testing.assert_close(r.values, torch.stack(expected), atol=1e-5, rtol=1e-5)

    # Saved and reloaded; streamed to disk in chunks: the same rows.
    again = SentenceResponses.load(r.save(tmp_path / "r.safetensors"))
    assert torch.equal(again.values, r.values) and again.groups == r.groups
    assert again.metadata["num_neurons"] == 64
    streamed = record_sentence_responses(
        model, corpora, tokenizer=tok, batch_size=3, output=tmp_path / "chunks", chunk_size=5, progress=False
    )
    assert len(list((tmp_path / "chunks").glob("chunk-*.safetensors"))) == 2  # batches 3+1+3, 1+3+1
    assert torch.equal(streamed.values, r.values) and torch.equal(streamed.labels, r.labels)
    with pytest.raises(ValueError, match="no sentences"):
        record_sentence_responses(model, {"en": ["", " "]}, tokenizer=tok)
