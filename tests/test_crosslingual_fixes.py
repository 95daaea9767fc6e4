"""XQuAD prompts keep the question and the answer cue on a long context; XNLI pools on the last real token."""

import copy

import datasets
import pytest
import torch
import transformers
from conftest import make_tiny_classifier, make_tiny_model

from lsn.crosslingual import encode_nli_classification, encode_qa_prompt, evaluate_qa, fit_qa_prompt, qa_prompt
from lsn.demo.world import nli_items, qa_items


def long_item(lang="de"):
    items = qa_items(lang, 12, seed=4)
    row = dict(items[0])
    row["context"] = " ".join(r["context"] for r in items)  # a context far over the budget
    return row


def fixed_tokens(tok, row):
    """Tokens of the prompt without its context: the instruction, the question and the cue."""
    return len(tok(qa_prompt("", row["question"]))["input_ids"])


@pytest.mark.parametrize("room", [5, 30, 100])
def test_fit_qa_prompt_cuts_the_context_only(tiny_tokenizer, room):
    tok, row = tiny_tokenizer, long_item()
    budget = fixed_tokens(tok, row) + room
    assert len(tok(qa_prompt(row["context"], row["question"]))["input_ids"]) > 3 * budget  # right-cut loses the end
    prompt = fit_qa_prompt(tok, row["context"], row["question"], budget)
    assert len(tok(prompt)["input_ids"]) <= budget
    assert prompt.endswith(f"\nQuestion: {row['question']}\nAnswer:")
    assert prompt.startswith("Answer the question with a span copied from the context.\nContext: ")
    kept = prompt.split("\nContext: ", 1)[1].rsplit("\nQuestion: ", 1)[0]
    assert kept and tok.decode(tok(row["context"], add_special_tokens=False)["input_ids"][:3]).startswith(kept[:3])
    short = qa_items("de", 1, seed=5)[0]
    assert fit_qa_prompt(tok, short["context"], short["question"], 10_000) == qa_prompt(
        short["context"], short["question"]
    )


def test_training_features_keep_the_question_and_cue(tiny_tokenizer):
    tok, row = tiny_tokenizer, long_item("ru")
    batch = {k: [row[k]] for k in row}
    max_length = fixed_tokens(tok, row) + 40
    assert len(tok(qa_prompt(row["context"], row["question"]))["input_ids"]) > 2 * max_length
    enc = encode_qa_prompt(tok, max_length=max_length)(batch)
    ids, labels = enc["input_ids"][0], enc["labels"][0]
    assert len(ids) <= max_length
    prompt_ids = [t for t, y in zip(ids, labels, strict=True) if y == -100]
    text = tok.decode(prompt_ids, skip_special_tokens=True)
    assert text.rstrip().endswith("Answer:") and row["question"].split()[0] in text.rsplit("Question:", 1)[1]
    assert ids[0] == tok.bos_token_id
    assert tok.decode([t for t in labels if t != -100], skip_special_tokens=True).strip() == row["answers"]["text"][0]


def test_evaluation_prompts_keep_the_question_and_cue(tiny_tokenizer):
    tok = tiny_tokenizer
    model = make_tiny_model("llama", vocab_size=len(tok))
    rows = [long_item("de"), qa_items("de", 1, seed=6)[0]]
    seen = []
    original = model.generate

    def generate(**kwargs):
        seen.append(kwargs["input_ids"].clone())
        return original(**kwargs)

    model.generate = generate
    max_length = fixed_tokens(tok, rows[0]) + 30 + 8
    evaluate_qa(model, tok, datasets.Dataset.from_list(rows), batch_size=2, max_length=max_length, max_new_tokens=8)
    (ids,) = seen
    assert ids.shape[1] <= max_length - 8
    for row, line in zip(rows, ids.tolist(), strict=True):
        text = tok.decode([t for t in line if t != tok.pad_token_id], skip_special_tokens=True)
        assert text.rstrip().endswith("Answer:")
        assert row["question"].split()[-1] in text.rsplit("Question:", 1)[1]


# ---------------------------------------------------------------- XNLI pooling


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_xnli_pooled_position_is_the_last_real_token(tiny_tokenizer, padding_side):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.pad_token = tok.eos_token  # as for Llama-type tokenizers: pad = EOS, and an EOS inside every input
    tok.padding_side = padding_side
    model = make_tiny_classifier(tok)
    items = nli_items("es", 4, seed=3)
    enc = encode_nli_classification(tok)({k: [r[k] for r in items] for k in items[0]})
    features = [
        {"input_ids": i, "attention_mask": m} for i, m in zip(enc["input_ids"], enc["attention_mask"], strict=True)
    ]
    batch = transformers.DataCollatorWithPadding(tok)(features)
    assert (batch["input_ids"] == tok.eos_token_id).sum(1).gt(0).all()
    assert len(set(map(len, enc["input_ids"]))) > 1  # real padding in the batch

    captured = {}
    handle = model.score.register_forward_hook(lambda m, a, out: captured.__setitem__("all", out))
    try:
        with torch.no_grad():
            pooled = model(**batch).logits
    finally:
        handle.remove()
    mask = batch["attention_mask"]
    last = (torch.arange(mask.shape[1]) * mask).argmax(-1)  # the last real token of each row
    if padding_side == "right":  # transformers < 4.49 pooled at the first pad id - 1: the premise's end
        first_eos = (batch["input_ids"] == tok.eos_token_id).int().argmax(-1)
        assert (last != first_eos - 1).all()
    torch.testing.assert_close(pooled, captured["all"][torch.arange(len(last)), last])
