"""Text packing as the reference does it; resumable and multi-process runs give exact counts."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import fixed_threshold, make_tiny_model, padded_batches
from test_recording import reference_stats

import lsn

SEQ_LEN, BATCH = 16, 3


def pack_reference(texts, tokenizer, seq_len, batch_size, max_tokens=None):
    """Tokenize each text (with BOS), concatenate, cut into windows, pad only the last batch."""
    ids = [i for t in texts for i in tokenizer(t)["input_ids"]]
    if max_tokens is not None:
        ids = ids[:max_tokens]
    windows = [ids[i : i + seq_len] for i in range(0, len(ids), seq_len)]
    batches = []
    for b in range(0, len(windows), batch_size):
        chunk = windows[b : b + batch_size]
        width = max(map(len, chunk))
        input_ids = torch.tensor([w + [tokenizer.pad_token_id] * (width - len(w)) for w in chunk])
        mask = torch.tensor([[1] * len(w) + [0] * (width - len(w)) for w in chunk])
        batches.append({"input_ids": input_ids, "attention_mask": mask})
    return batches, len(ids)


def big_model(tokenizer):
    return make_tiny_model("llama", vocab_size=len(tokenizer))


@pytest.mark.parametrize("max_tokens", [None, 150])
def test_packed_texts_equal_reference_packing(multilingual_texts, tiny_tokenizer, max_tokens):
    model = big_model(tiny_tokenizer)
    texts = {g: multilingual_texts[g] for g in ("en", "ru", "zh")}
    stats = lsn.record_activations(
        model, texts, tokenizer=tiny_tokenizer, seq_len=SEQ_LEN, batch_size=BATCH, max_tokens=max_tokens, progress=False
    )
    reference = {}
    totals = []
    for g, t in texts.items():
        reference[g], n = pack_reference(t, tiny_tokenizer, SEQ_LEN, BATCH, max_tokens)
        totals.append(n)
    counts, tokens, *_ = reference_stats(model, reference)
    assert stats.tokens.tolist() == totals == tokens.tolist()
    if max_tokens is not None:
        assert totals == [max_tokens] * 3
    assert torch.equal(stats.counts, counts)


def test_dataset_text_column(multilingual_texts, tiny_tokenizer):
    import datasets

    model = big_model(tiny_tokenizer)
    ds = datasets.Dataset.from_dict({"body": multilingual_texts["hi"]})
    from_ds = lsn.record_activations(
        model, {"hi": ds}, tokenizer=tiny_tokenizer, text_column="body", seq_len=SEQ_LEN, progress=False
    )
    from_list = lsn.record_activations(
        model, {"hi": multilingual_texts["hi"]}, tokenizer=tiny_tokenizer, seq_len=SEQ_LEN, progress=False
    )
    assert torch.equal(from_ds.counts, from_list.counts)
    with pytest.raises(ValueError, match="no `text` column"):
        lsn.record_activations(model, {"hi": ds}, tokenizer=tiny_tokenizer, progress=False)


class Crash(Exception):
    pass


def crash_on_call(model, n):
    """A pre-hook that raises on the model's n-th decoder-layer-0 call, as a kill would."""
    calls = []

    def hook(*_):
        calls.append(1)
        if len(calls) == n:
            raise Crash

    return model.model.layers[0].register_forward_pre_hook(hook)


def test_resume_after_a_crash_gives_exact_counts(tmp_path, multilingual_texts, tiny_tokenizer):
    model = big_model(tiny_tokenizer)
    texts = {g: multilingual_texts[g] for g in ("en", "de", "ar")}
    kwargs = dict(
        tokenizer=tiny_tokenizer,
        seq_len=SEQ_LEN,
        batch_size=2,
        record_sums=True,
        quantile=0.9,
        threshold=fixed_threshold(model),
        progress=False,
    )
    expected = lsn.record_activations(model, texts, **kwargs)

    ckpt = tmp_path / "ckpt"
    n_en = -(-int(expected.tokens[0]) // (SEQ_LEN * 2))  # batches of the first group
    handle = crash_on_call(model, n_en + 3)  # dies in the middle of the second group
    with pytest.raises(Crash):
        lsn.record_activations(model, texts, checkpoint=ckpt, checkpoint_every=2, **kwargs)
    handle.remove()
    assert list(ckpt.iterdir()), "the crashed run saved its progress"

    calls = []
    probe = model.model.layers[0].register_forward_pre_hook(lambda *_: calls.append(1))
    resumed = lsn.record_activations(model, texts, checkpoint=ckpt, checkpoint_every=2, **kwargs)
    probe.remove()
    total_batches = sum(-(-int(n) // (SEQ_LEN * 2)) for n in expected.tokens)
    assert len(calls) == total_batches - (n_en + 2), "only the batches after the last save are recomputed"
    assert torch.equal(resumed.counts, expected.counts)
    assert torch.equal(resumed.tokens, expected.tokens)
    assert torch.equal(resumed.above_quantile, expected.above_quantile)
    assert torch.equal(resumed.above_threshold, expected.above_threshold)
    torch.testing.assert_close(resumed.sums, expected.sums)
    torch.testing.assert_close(resumed.quantile_means, expected.quantile_means)

    # A finished checkpoint answers at once with the same result.
    again = lsn.record_activations(model, texts, checkpoint=ckpt, **kwargs)
    assert torch.equal(again.counts, expected.counts)


def test_checkpoint_with_other_arguments_or_damaged_is_refused(tmp_path):
    model = make_tiny_model("llama")
    corpora = {"en": padded_batches(2, 0)}
    lsn.record_activations(model, corpora, checkpoint=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"other arguments \(differ: corpora, groups\)"):
        lsn.record_activations(model, corpora | {"de": padded_batches(1, 1)}, checkpoint=tmp_path, progress=False)
    threshold = torch.zeros(2, 64)
    with pytest.raises(ValueError, match=r"other arguments \(differ: threshold\)"):
        lsn.record_activations(model, corpora, threshold=threshold, checkpoint=tmp_path, progress=False)
    (file,) = tmp_path.iterdir()
    file.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="damaged"):
        lsn.record_activations(model, corpora, checkpoint=tmp_path, progress=False)
    assert file.read_bytes() == b"not a safetensors file", "a bad checkpoint is never overwritten"


WORKER = Path(__file__).with_name("distributed_worker.py")


def test_two_processes_equal_one_process(tmp_path, multilingual_texts, tiny_tokenizer):
    """Two real CPU processes (accelerate launch, gloo) give exactly the one-process counts."""
    out = tmp_path / "stats.safetensors"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29517",
        str(WORKER),
        str(out),
    ]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    distributed = lsn.ActivationStats.load(out)
    assert distributed.metadata["world_size"] == 2

    sys.path.insert(0, str(WORKER.parent))
    from distributed_worker import corpora_and_model

    model, corpora = corpora_and_model(tiny_tokenizer, multilingual_texts)
    single = lsn.record_activations(
        model,
        corpora,
        tokenizer=tiny_tokenizer,
        seq_len=SEQ_LEN,
        batch_size=2,
        quantile=0.9,
        threshold=fixed_threshold(model),
        record_sums=True,
        progress=False,
    )
    assert torch.equal(distributed.counts, single.counts)
    assert torch.equal(distributed.tokens, single.tokens)
    assert torch.equal(distributed.above_quantile, single.above_quantile)
    assert torch.equal(distributed.above_threshold, single.above_threshold)
    assert torch.equal(distributed.quantile_batches, single.quantile_batches)
    torch.testing.assert_close(distributed.quantile_means, single.quantile_means)
    torch.testing.assert_close(distributed.sums, single.sums)
