"""XNLI / XQuAD loading code against local files in the hub schemas, and the task formats."""

import json

import datasets
import pytest

from lsn.crosslingual import (
    encode_nli_classification,
    encode_nli_prompt,
    encode_qa_prompt,
    load_xnli,
    load_xquad,
    paper_split,
)
from lsn.demo.world import nli_items, qa_items


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def test_hub_names_and_configs(monkeypatch):
    calls = []

    def fake(name, config, split):
        calls.append((name, config, split))
        if name == "facebook/xnli":
            return datasets.Dataset.from_list(nli_items("en", 6, seed=0))
        return datasets.Dataset.from_list(qa_items("en", 5, seed=0))

    monkeypatch.setattr(datasets, "load_dataset", fake)
    assert len(load_xnli("fr", "train", limit=4)) == 4
    assert len(load_xquad("hi")) == 5
    assert calls == [("facebook/xnli", "fr", "train"), ("google/xquad", "xquad.hi", "validation")]
    with pytest.raises(ValueError, match="XNLI has no language `ja`"):
        load_xnli("ja")
    with pytest.raises(ValueError, match="XQuAD has no language `fr`"):
        load_xquad("fr")


def test_local_files_in_the_hub_schema(tmp_path):
    write_jsonl(tmp_path / "xnli.zh.test.jsonl", nli_items("zh", 10, seed=1))
    write_jsonl(tmp_path / "xquad.ar.jsonl", qa_items("ar", 10, seed=1))
    xnli = load_xnli("zh", "test", data_dir=tmp_path)
    assert xnli.column_names == ["premise", "hypothesis", "label"] and len(xnli) == 10
    xquad = load_xquad("ar", data_dir=tmp_path)
    row = xquad[3]
    start, text = row["answers"]["answer_start"][0], row["answers"]["text"][0]
    assert row["context"][start : start + len(text)] == text
    train, test = paper_split(xquad)
    assert [r["id"] for r in train] == xquad["id"][:8] and [r["id"] for r in test] == xquad["id"][8:]
    write_jsonl(tmp_path / "xnli.de.test.jsonl", [{"premise": "x", "hyp": "y", "label": 0}])
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['hypothesis'\]"):
        load_xnli("de", "test", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="No XNLI fr/test file"):
        load_xnli("fr", "test", data_dir=tmp_path)


def test_formats(tiny_tokenizer):
    tok = tiny_tokenizer
    items = nli_items("en", 4, seed=2)
    batch = {k: [r[k] for r in items] for k in items[0]}
    cls = encode_nli_classification(tok)(batch)
    first = tok(items[0]["premise"] + tok.eos_token + items[0]["hypothesis"])["input_ids"]
    assert cls["input_ids"][0] == first and tok.eos_token_id in first[1:] and cls["labels"] == batch["label"]

    prompt = encode_nli_prompt(tok)(batch)
    for ids, labels, y in zip(prompt["input_ids"], prompt["labels"], batch["label"], strict=True):
        answer = [t for t in labels if t != -100]
        assert labels[: len(ids) - len(answer)] == [-100] * (len(ids) - len(answer))
        assert tok.decode(answer, skip_special_tokens=True).strip() == ["entailment", "neutral", "contradiction"][y]
        assert ids[-len(answer) :] == answer

    qa = qa_items("en", 3, seed=2)
    qbatch = {k: [r[k] for r in qa] for k in qa[0]}
    enc = encode_qa_prompt(tok, max_length=40)(qbatch)
    for ids, labels, row in zip(enc["input_ids"], enc["labels"], qa, strict=True):
        answer = [t for t in labels if t != -100]
        assert tok.decode(answer, skip_special_tokens=True).strip() == row["answers"]["text"][0]
        assert len(ids) <= 40 and ids[0] == tok.bos_token_id  # cut from the left, BOS kept
