"""Neuron Specialization for translation: identification, masks, sampling, metrics, training."""

import math

import pytest
import sacrebleu
import torch
from conftest import make_tiny_model
from test_recording import reference_stats

import lsn
from lsn.demo.tokenizer import train_tokenizer
from lsn.demo.world import LANGUAGES, parallel_corpus
from lsn.models import find_neuron_sites
from lsn.translation import (
    DirectionBatchSampler,
    SpecializationTrainer,
    TaskCollator,
    TaskMasks,
    TranslationFormat,
    build_dataset,
    direction_batches,
    identify,
    score_direction,
    temperature_probabilities,
)

DIRECTIONS = ["en-de", "de-en", "en-zh"]


@pytest.fixture(scope="module")
def world_pairs():
    rows = parallel_corpus(24, seed=3)
    return {d: [(r[d[:2]], r[d[3:]]) for r in rows] for d in DIRECTIONS}


@pytest.fixture(scope="module")
def seq2seq_tokenizer():
    texts = [r[lang] for r in parallel_corpus(200, seed=0) for lang in LANGUAGES]
    return train_tokenizer(
        texts,
        vocab_size=400,
        add_bos=False,
        add_eos=True,
        extra_special_tokens=[TranslationFormat.tag(lang) for lang in LANGUAGES],
    )


def tiny_m2m(tokenizer):
    return make_tiny_model("m2m100", vocab_size=len(tokenizer), max_position_embeddings=256)


def test_identification_equals_an_independent_count(world_pairs, seq2seq_tokenizer, tiny_tokenizer):
    cases = [
        (tiny_m2m(seq2seq_tokenizer), seq2seq_tokenizer, TranslationFormat("tag")),
        (
            make_tiny_model("llama", vocab_size=len(tiny_tokenizer), max_position_embeddings=512),
            tiny_tokenizer,
            TranslationFormat("prompt"),
        ),
    ]
    for model, tokenizer, fmt in cases:
        stats, neurons = identify(model, tokenizer, fmt, world_pairs, k=0.9, batch_size=5, progress=False)
        encdec = model.config.is_encoder_decoder
        batches = {
            d: direction_batches(tokenizer, fmt, d, p, 5, model=model if encdec else None)
            for d, p in world_pairs.items()
        }
        counts, tokens, *_ = reference_stats(model, batches)
        assert torch.equal(stats.counts, counts)
        assert torch.equal(stats.tokens, tokens)
        assert neurons.groups == DIRECTIONS
        assert neurons == lsn.select_specialized(stats, 0.9)
        if encdec:  # encoder and decoder layers, each side counted over its own real tokens
            assert stats.num_encoder_layers == 2 and neurons.num_layers == 4
        else:  # the prompt's tokens are part of the teacher-forced sequence
            assert int(stats.tokens[0]) == sum(int(b["attention_mask"].sum()) for b in batches["en-de"])


def _loss_and_grads(model, batch):
    model.zero_grad()
    model(**batch).loss.backward()
    return {n: (p.grad.clone() if p.grad is not None else None) for n, p in model.named_parameters()}


@pytest.mark.parametrize("family", ["m2m100", "llama"])
def test_masked_neurons_output_zero_and_get_no_gradient(family, world_pairs, seq2seq_tokenizer, tiny_tokenizer):
    tokenizer = seq2seq_tokenizer if family == "m2m100" else tiny_tokenizer
    model = (
        tiny_m2m(tokenizer)
        if family == "m2m100"
        else make_tiny_model("llama", vocab_size=len(tokenizer), max_position_embeddings=512)
    ).train()
    fmt = TranslationFormat("tag" if family == "m2m100" else "prompt")
    sites = find_neuron_sites(model)
    keep = {d: [torch.arange(0, 64, 2 + k) for _ in sites] for k, d in enumerate(DIRECTIONS)}
    neurons = lsn.NeuronSet(keep, num_layers=len(sites), num_neurons=64, method="test")
    masks = TaskMasks(neurons)
    batch = direction_batches(
        tokenizer, fmt, "de-en", world_pairs["de-en"][:4], 4, model=model if family == "m2m100" else None
    )[0]
    seen = {}
    with masks.attached(model):
        probes = [
            s.activation.register_forward_hook(lambda m, a, out, i=s.index: seen.__setitem__(i, out)) for s in sites
        ]  # registered after the mask: sees the masked activation
        masks.set_task("de-en")
        grads = _loss_and_grads(model, batch)
        for p in probes:
            p.remove()
    off = torch.ones(64, dtype=torch.bool)
    off[keep["de-en"][0]] = False
    for site in sites:
        act = seen[site.index]
        assert torch.all(act[..., off] == 0), "masked neurons output exactly 0"
        assert torch.any(act[..., ~off] != 0)
        first = site.input_modules[0]
        grad = grads[next(n for n, p in model.named_parameters() if p is first.weight)]
        assert torch.all(grad[off] == 0), "masked neurons get no gradient from their direction's batch"
        assert torch.any(grad[~off] != 0)
    shared = [n for n in grads if "self_attn" in n and n.endswith("weight")]
    assert shared and all(grads[n] is not None and torch.any(grads[n] != 0) for n in shared)
    assert all(not s.activation._forward_hooks for s in sites)


def test_sampler_one_direction_per_batch_following_the_temperature():
    directions = ["a"] * 800 + ["b"] * 150 + ["c"] * 50
    probs = temperature_probabilities({"a": 800, "b": 150, "c": 50}, temperature=5.0)
    expected = {d: (n / 1000) ** 0.2 for d, n in {"a": 800, "b": 150, "c": 50}.items()}
    norm = sum(expected.values())
    assert probs == pytest.approx({d: v / norm for d, v in expected.items()})
    assert temperature_probabilities({"a": 800, "b": 200}, 1.0) == pytest.approx({"a": 0.8, "b": 0.2})

    sampler = DirectionBatchSampler(directions, batch_size=8, temperature=5.0, num_batches=4000, seed=1)
    counts = {"a": 0, "b": 0, "c": 0}
    for batch in sampler:
        kinds = {directions[i] for i in batch}
        assert len(batch) == 8 and len(kinds) == 1
        counts[kinds.pop()] += 1
    for d in counts:  # within 4 standard deviations of the binomial
        sd = math.sqrt(4000 * probs[d] * (1 - probs[d]))
        assert abs(counts[d] - 4000 * probs[d]) < 4 * sd
    assert list(DirectionBatchSampler(directions, 8, seed=1)) == list(DirectionBatchSampler(directions, 8, seed=1))
    with pytest.raises(ValueError, match="temperature"):
        temperature_probabilities({"a": 1}, 0)


def test_bleu_and_chrf_equal_sacrebleu():
    hyps = ["the cat sat on the mat .", "a dog reads the book", "hello"]
    refs = ["the cat sat on a mat .", "the dog reads a book", "hello there"]
    score = score_direction("de-en", hyps, refs)
    assert score.bleu == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert score.chrf == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs], word_order=2).score)
    assert "tok:13a" in score.bleu_signature and "nw:2" in score.chrf_signature
    zh = score_direction("en-zh", ["猫坐在垫子上。"], ["猫坐在垫子上了。"])
    assert zh.bleu == pytest.approx(
        sacrebleu.corpus_bleu(["猫坐在垫子上。"], [["猫坐在垫子上了。"]], tokenize="zh").score
    )


def test_trainer_uses_one_direction_per_batch_with_its_mask(tmp_path, world_pairs, seq2seq_tokenizer):
    from transformers import Seq2SeqTrainingArguments

    model = tiny_m2m(seq2seq_tokenizer)
    fmt = TranslationFormat("tag")
    sites = find_neuron_sites(model)
    neurons = lsn.NeuronSet(
        {d: [torch.arange(k, 64, 3) for _ in sites] for k, d in enumerate(DIRECTIONS)},
        num_layers=len(sites),
        num_neurons=64,
        method="test",
    )
    masks = TaskMasks(neurons)
    train = build_dataset(seq2seq_tokenizer, fmt, world_pairs, DIRECTIONS)
    seen = []

    class Spy(SpecializationTrainer):
        def compute_loss(self, model, inputs, *args, **kwargs):
            tasks = set(inputs["task_id"].tolist())
            loss = super().compute_loss(model, inputs, *args, **kwargs)
            seen.append((tasks, self.task_masks.task))
            return loss

    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=6,
        learning_rate=1e-3,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        logging_steps=100,
        seed=0,
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = Spy(
        model=model,
        args=args,
        train_dataset=train,
        data_collator=TaskCollator(seq2seq_tokenizer, model),
        task_masks=masks,
        directions=DIRECTIONS,
    )
    trainer.train()
    assert len(seen) == 6
    for tasks, active in seen:
        assert len(tasks) == 1 and DIRECTIONS[tasks.pop()] == active
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert any("fc1" in n for n in changed) and any("self_attn" in n for n in changed)
    assert all(not s.activation._forward_hooks for s in sites)


def test_loaders_flores_and_files(tmp_path, monkeypatch):
    import datasets

    from lsn.translation import load_flores, load_parallel_file

    rows = {
        "eng_Latn": [{"id": 1, "text": "one"}, {"id": 2, "text": "two"}, {"id": 3, "text": "three"}],
        "deu_Latn": [{"id": 2, "text": "zwei"}, {"id": 1, "text": "eins"}],
    }
    calls = []

    def fake(name, config, split):
        calls.append((name, config, split))
        return rows[config]

    monkeypatch.setattr(datasets, "load_dataset", fake)
    pairs = load_flores(["en-de", "de-en"], "devtest")
    assert pairs == {"en-de": [("one", "eins"), ("two", "zwei")], "de-en": [("eins", "one"), ("zwei", "two")]}
    assert calls == [
        ("openlanguagedata/flores_plus", "eng_Latn", "devtest"),
        ("openlanguagedata/flores_plus", "deu_Latn", "devtest"),
    ]
    with pytest.raises(ValueError, match="No FLORES code for `xx`"):
        load_flores(["en-xx"])

    (tmp_path / "a.jsonl").write_text('{"source": "Hallo", "target": "Hello"}\n\n{"source": "Ja", "target": "Yes"}\n')
    (tmp_path / "a.tsv").write_text("Hallo\tHello\nJa\tYes\n")
    assert (
        load_parallel_file(tmp_path / "a.jsonl")
        == load_parallel_file(tmp_path / "a.tsv")
        == [("Hallo", "Hello"), ("Ja", "Yes")]
    )
    (tmp_path / "b.tsv").write_text("only one column\n")
    with pytest.raises(ValueError, match="line 1: expected 2 tab-separated columns"):
        load_parallel_file(tmp_path / "b.tsv")


def test_results_table_averages(tmp_path):
    import json

    from lsn.translation import group_averages, results_table

    def scores(offset):
        return {d: score_direction(d, [f"w{offset} x y z"] * 2, ["w0 x y z"] * 2) for d in ["en-de", "de-en", "en-hi"]}

    results = {"baseline": scores(1), "specialized": scores(0)}
    table = results_table(results, tmp_path, resource_groups={"low": ["hi"]})
    averages = group_averages(results["specialized"], resource_groups={"low": ["hi"]})
    assert (
        averages["en->x"]["directions"] == 2
        and averages["x->en"]["directions"] == 1
        and averages["low"]["directions"] == 1
    )
    assert averages["all"]["bleu"] == pytest.approx(100.0)
    assert "| **en->x** |" in table and "BLEU signature" in table
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["specialized"]["averages"]["all"]["bleu"] == pytest.approx(100.0)
    assert (tmp_path / "results.md").read_text().startswith("| direction |")


def test_tiny_recipe_identify_train_evaluate(tmp_path):
    """The offline recipe end to end on the embedded demo model, shortened."""
    import json
    from pathlib import Path

    from lsn import translate

    recipe = Path(__file__).resolve().parents[1] / "recipes/tiny/mt/config_specialized.yaml"
    translate.main(
        [
            "all",
            str(recipe),
            "--output_dir",
            str(tmp_path),
            "--max_steps",
            "3",
            "--max_train_pairs",
            "40",
            "--max_eval_pairs",
            "4",
            "--num_beams",
            "1",
            "--max_new_tokens",
            "8",
            "--directions",
            "en-de",
            "de-en",
        ]
    )
    neurons = lsn.NeuronSet.load(tmp_path / "neurons")
    assert neurons.groups == ["en-de", "de-en"] and neurons.method == "specialized"
    assert (tmp_path / "neurons" / "overlap.png").is_file()
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"baseline", "specialized"}
    assert set(results["specialized"]["directions"]) == {"en-de", "de-en"}
    assert "| **en->x** |" in (tmp_path / "results.md").read_text()


def nllb_tokenizer(tmp_path, seq2seq_tokenizer):
    """A real `NllbTokenizerFast` (FLORES-200 language codes) over the world's own BPE."""
    from transformers import NllbTokenizerFast

    path = tmp_path / "tokenizer.json"
    seq2seq_tokenizer.backend_tokenizer.save(str(path))
    tok = NllbTokenizerFast(tokenizer_file=str(path), src_lang="eng_Latn", tgt_lang="deu_Latn")
    return tok, lambda lang: tok.convert_tokens_to_ids(TranslationFormat("codes").language_code(tok, lang))


def m2m100_tokenizer(tmp_path, seq2seq_tokenizer):
    """A real `M2M100Tokenizer` (`__de__` codes) over a sentencepiece model of the world's text."""
    import io
    import json

    import sentencepiece as spm
    from transformers import M2M100Tokenizer

    texts = [r[lang] for r in parallel_corpus(200, seed=0) for lang in LANGUAGES]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        vocab_size=400,
        character_coverage=1.0,
        model_type="bpe",
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        minloglevel=2,
    )
    (tmp_path / "spm.model").write_bytes(model.getvalue())
    pieces = spm.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for i in range(pieces.get_piece_size()):
        vocab.setdefault(pieces.id_to_piece(i), len(vocab))
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    tok = M2M100Tokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "spm.model"), src_lang="en", tgt_lang="de")
    return tok, tok.get_lang_id


@pytest.mark.parametrize("make_tokenizer", [nllb_tokenizer, m2m100_tokenizer], ids=["nllb", "m2m100"])
def test_codes_style_uses_the_tokenizers_language_codes(make_tokenizer, tmp_path, world_pairs, seq2seq_tokenizer):
    tok, lang_id = make_tokenizer(tmp_path, seq2seq_tokenizer)
    fmt = TranslationFormat("codes")
    code = {lang: lang_id(lang) for lang in ("en", "de", "zh")}
    assert len(set(code.values())) == 3 and tok.unk_token_id not in code.values()
    eos = tok.eos_token_id
    for direction in DIRECTIONS:
        src, tgt = direction.split("-")
        pairs = world_pairs[direction][:3]
        for (source, target), f in zip(pairs, fmt.encode(tok, direction, pairs), strict=True):
            assert f["input_ids"] == [code[src], *tok(source, add_special_tokens=False)["input_ids"], eos]
            assert f["labels"] == [code[tgt], *tok(target, add_special_tokens=False)["input_ids"], eos]
            assert f["attention_mask"] == [1] * len(f["input_ids"])

    vocab = max(len(tok), *code.values()) + 1
    model = make_tiny_model("m2m100", vocab_size=vocab, max_position_embeddings=256)
    sources = [p[0] for p in world_pairs["en-zh"][:2]]
    inputs, extra = fmt.generation_inputs(tok, "en-zh", sources)
    assert extra == {"forced_bos_token_id": code["zh"]}
    assert inputs["input_ids"][:, 0].tolist() == [code["en"]] * 2
    generated = model.generate(**inputs, **extra, max_new_tokens=4, num_beams=2)
    assert generated[:, 1].tolist() == [code["zh"]] * 2  # after decoder_start: the target's code
    hypotheses = fmt.decode(tok, generated, inputs)
    assert len(hypotheses) == 2 and all(tok.convert_ids_to_tokens(code["zh"]) not in h for h in hypotheses)

    pairs = {d: world_pairs[d][:6] for d in DIRECTIONS}
    stats, _ = identify(model, tok, fmt, pairs, k=0.9, batch_size=3, progress=False)
    batches = {d: direction_batches(tok, fmt, d, p, 3, model=model) for d, p in pairs.items()}
    counts, tokens, *_ = reference_stats(model, batches)
    assert torch.equal(stats.counts, counts) and torch.equal(stats.tokens, tokens)


def test_unknown_language_codes_are_clear_errors(tmp_path, world_pairs, seq2seq_tokenizer):
    tok, _ = nllb_tokenizer(tmp_path, seq2seq_tokenizer)
    pairs = world_pairs["en-de"][:1]
    with pytest.raises(ValueError, match=r"No language code for `xx`; pass `codes="):
        TranslationFormat("codes").encode(tok, "en-xx", pairs)
    with pytest.raises(ValueError, match=r"NllbTokenizer(Fast)? has no language code `cmn_Hans` for `zh`"):
        TranslationFormat("codes", codes={"zh": "cmn_Hans"}).generation_inputs(tok, "en-zh", ["x"])  # FLORES+, not NLLB


def test_nllb_recipe_runs_offline_on_a_tiny_seq2seq_model(tmp_path, world_pairs, seq2seq_tokenizer):
    """The NLLB recipe itself (codes style, local files, resource groups), on a tiny M2M100 + NLLB tokenizer."""
    import json
    from pathlib import Path

    from lsn import translate

    tok, _ = nllb_tokenizer(tmp_path, seq2seq_tokenizer)
    model_dir = tmp_path / "tiny-nllb"
    make_tiny_model("m2m100", vocab_size=len(tok), max_position_embeddings=256).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for direction, pairs in world_pairs.items():
        for split, rows in (("train", pairs[:16]), ("validation", pairs[16:20]), ("test", pairs[20:23])):
            with open(data_dir / f"{split}.{direction}.jsonl", "w", encoding="utf-8") as f:
                f.writelines(json.dumps({"source": s, "target": t}, ensure_ascii=False) + "\n" for s, t in rows)

    recipe = Path(__file__).resolve().parents[1] / "recipes/nllb-200-distilled-600m/mt/config_specialized.yaml"
    out = tmp_path / "run"
    translate.main(
        [
            "all",
            str(recipe),
            "--model_name_or_path",
            str(model_dir),
            "--dtype",
            "float32",
            "--data_dir",
            str(data_dir),
            "--directions",
            *DIRECTIONS,
            "--output_dir",
            str(out),
            "--max_steps",
            "2",
            "--warmup_steps",
            "0",
            "--bf16",
            "false",
            "--use_cpu",
            "true",
            "--per_device_train_batch_size",
            "4",
            "--gradient_accumulation_steps",
            "1",
            "--identify_batch_size",
            "4",
            "--num_beams",
            "2",
            "--max_new_tokens",
            "6",
            "--resource_groups",
            '{"high": ["de", "zh"]}',
        ]
    )
    neurons = lsn.NeuronSet.load(out / "neurons")
    assert neurons.groups == DIRECTIONS and neurons.num_layers == 4  # encoder and decoder layers
    results = json.loads((out / "results.json").read_text())
    assert set(results["specialized"]["directions"]) == set(DIRECTIONS)
    table = (out / "results.md").read_text()
    assert "| **high** |" in table and "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp" in table


@pytest.mark.parametrize("stage, field", [("identify", "language_codes"), ("evaluate", "resource_groups")])
def test_bad_json_recipe_fields_fail_before_any_model_loads(tmp_path, stage, field):
    from pathlib import Path

    from lsn import translate

    recipe = Path(__file__).resolve().parents[1] / "recipes/tiny/mt/config_specialized.yaml"
    with pytest.raises(ValueError, match=rf"`{field}` must be a JSON object, e.g. .*got '\{{zh: x'"):
        translate.main(
            [
                stage,
                str(recipe),
                "--model_name_or_path",
                str(tmp_path / "no-such-model"),
                "--output_dir",
                str(tmp_path / "run"),
                f"--{field}",
                "{zh: x",
            ]
        )
