"""Mondal et al.'s two-pass percentile selection against a plain-torch computation of both passes."""

import pytest
import torch
from conftest import capture_outputs, make_tiny_model, padded_batches

import lsn
from lsn.cli import main


def gate_outputs(model, batch):
    """[real tokens, neurons] pre-activation `gate_proj(x)` of every layer, by a hook of our own."""
    captured = capture_outputs(model, [layer.mlp.gate_proj for layer in model.model.layers], batch)
    mask = batch["attention_mask"].reshape(-1).bool()
    return [captured[i].reshape(-1, captured[i].shape[-1])[mask] for i in range(len(captured))]


def plain_two_pass(model, first, second, q=0.9):
    """P90_k = mean over pass-1 batches of torch.quantile; score_k = share of pass-2 tokens above P90_k."""
    L, I = len(model.model.layers), model.config.intermediate_size
    P = torch.zeros(L, I, len(first))
    for k, batches in enumerate(first.values()):
        for batch in batches:
            for layer, h in enumerate(gate_outputs(model, batch)):
                P[layer, :, k] += torch.quantile(h, q, dim=0) / len(batches)
    above = torch.zeros(L, I, len(second))
    tokens = torch.zeros(len(second))
    for k, batches in enumerate(second.values()):
        for batch in batches:
            hs = gate_outputs(model, batch)
            tokens[k] += hs[0].shape[0]
            for layer, h in enumerate(hs):
                above[layer, :, k] += (h > P[layer, :, k]).sum(0)
    return P, above / tokens


def corpora(seed):
    return {g: padded_batches(3, seed=seed + k, batch=4, seq=12) for k, g in enumerate(("en", "fr", "zh"))}


@pytest.fixture(scope="module")
def two_passes():
    model = make_tiny_model("llama", seed=1)
    pass1, pass2 = corpora(10), corpora(20)
    first = lsn.record_activations(model, pass1, quantile=0.9, progress=False)
    second = lsn.record_activations(model, pass2, threshold=first.group_quantiles(), progress=False)
    return model, pass1, pass2, first, second


def test_two_pass_faithful_equals_plain_torch(two_passes):
    model, pass1, pass2, first, second = two_passes
    P, score = plain_two_pass(model, pass1, pass2)
    thresholds = first.group_quantiles()
    assert thresholds.shape == (2, 64, 3)
    torch.testing.assert_close(thresholds, P, rtol=1e-5, atol=1e-5)
    assert second.per_group_threshold and torch.equal(second.threshold, thresholds)
    got_score = second.threshold_probabilities()
    torch.testing.assert_close(got_score.float(), score, rtol=0, atol=1e-6)
    # close to 1 - q on average (by construction), but it varies between neurons
    assert abs(float(score.mean()) - 0.1) < 0.05 and float(score.std()) > 0.01

    top_k = 9
    ns = lsn.select_by_probability(second, score="faithful", top_k=top_k)
    flat = score.reshape(-1, 3)
    for k, g in enumerate(ns.groups):
        chosen = torch.cat([layer * 64 + idx for layer, idx in enumerate(ns[g])])
        assert chosen.numel() == top_k
        expected = torch.sort(flat[:, k], descending=True).values[:top_k]
        # up to ties: the chosen scores are exactly the top-k scores
        assert torch.equal(torch.sort(flat[chosen, k], descending=True).values, expected)
    assert ns.parameters["score"] == "faithful"


def test_one_threshold_for_all_groups_still_works(two_passes):
    model, _, pass2, first, _ = two_passes
    pooled = lsn.record_activations(model, pass2, threshold=first.pooled_quantile(), progress=False)
    assert not pooled.per_group_threshold
    with pytest.raises(ValueError, match="group_quantiles"):
        lsn.select_by_probability(pooled, score="faithful", top_k=3)
    lsn.select_by_probability(pooled, above="threshold", top_k=3)  # the pooled margin score


def test_faithful_errors_and_per_group_thresholds_follow_groups(two_passes):
    _, _, _, first, second = two_passes
    with pytest.raises(ValueError, match="group_quantiles"):
        lsn.select_by_probability(first, score="faithful", top_k=3)  # one pass is not the method
    with pytest.raises(ValueError, match="leave `above` unset"):
        lsn.select_by_probability(second, score="faithful", above="threshold", top_k=3)
    with pytest.raises(ValueError, match="threshold per group"):
        lsn.select_by_probability(second, score="margin", above="threshold", top_k=3)
    sub = second.select_groups(["zh", "en"])
    assert torch.equal(sub.threshold, second.threshold[..., [2, 0]])
    merged = sub.merge(second.select_groups(["fr"]))
    assert merged.groups == ["zh", "en", "fr"] and torch.equal(merged.threshold, second.threshold[..., [2, 0, 1]])
    with pytest.raises(ValueError, match="different thresholds"):
        other = second.select_groups(["en"])
        other.threshold = other.threshold + 1
        sub.merge(other)


def test_cli_two_pass_per_group(tmp_path, multilingual_texts, tiny_tokenizer):
    model_dir = tmp_path / "model"
    make_tiny_model("llama", vocab_size=len(tiny_tokenizer)).save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)
    paths = {}
    for lang in ("en", "ru"):
        paths[lang] = tmp_path / f"{lang}.txt"
        paths[lang].write_text("\n".join(multilingual_texts[lang]) + "\n")
    common = ["record", "--model", str(model_dir), "--seq-len", "16", "--batch-size", "2"]
    common += [f"--corpus={g}={p}" for g, p in paths.items()]
    assert main(common + ["--quantile", "0.9", "--output", str(tmp_path / "p1.safetensors")]) == 0
    # pass 2 lists the groups in another order: each still gets its own threshold
    reordered = ["record", "--model", str(model_dir), "--seq-len", "16", "--batch-size", "2"]
    reordered += [f"--corpus=ru={paths['ru']}", f"--corpus=en={paths['en']}"]
    args = ["--threshold-from", str(tmp_path / "p1.safetensors"), "--per-group-threshold"]
    assert main(reordered + args + ["--output", str(tmp_path / "p2.safetensors")]) == 0
    first = lsn.ActivationStats.load(tmp_path / "p1.safetensors")
    second = lsn.ActivationStats.load(tmp_path / "p2.safetensors")
    assert second.groups == ["ru", "en"]
    assert torch.equal(second.threshold, first.group_quantiles()[..., [1, 0]])
    assert second.metadata["threshold"]["group_quantile"] == 0.9
    out = tmp_path / "faithful.json"
    select = ["select", str(tmp_path / "p2.safetensors"), "--method", "probability", "--score", "faithful"]
    assert main(select + ["--top-k", "4", "--output", str(out)]) == 0
    assert lsn.NeuronSet.load(out) == lsn.select_by_probability(second, score="faithful", top_k=4)
