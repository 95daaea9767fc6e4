"""Reference-exact options (Mondal et al. 2025's released XNLI / XQuAD pipeline), each against a hand computation."""

import copy
from pathlib import Path

import datasets
import peft
import pytest
import torch
from conftest import capture_outputs, make_tiny_classifier, make_tiny_model

import lsn
from lsn import train as lsn_train
from lsn.adapter.layer import NeuronLayer
from lsn.arguments import parse_recipe
from lsn.crosslingual import evaluate_nli_classification, evaluate_qa, load_xnli
from lsn.crosslingual.data import (
    encode_nli_classification,
    encode_qa_prompt,
    mondal_nli_features,
    mondal_qa_features,
    mondal_qa_prompt,
)
from lsn.demo.tasks import world_task_files
from lsn.demo.world import nli_items, qa_items
from lsn.metrics import token_id_scores

INDENT = " " * 12


def test_mondal_prompt_is_their_template():
    expected = (
        "Below is an instruction that describes a task, paired with an input that provides further context. Write a "
        "response that appropriately completes the request.\n\n"
        + INDENT
        + "### Instruction:\n"
        + INDENT
        + "Answer the question based on the given context.\n\n"
        + INDENT
        + "### Input:\n"
        + INDENT
        + "Context: The sky is blue. \n"
        + INDENT
        + "Question: What colour?\n\n"
        + INDENT
        + "### Response:"
    )
    assert mondal_qa_prompt("  The sky is blue. ", " What colour? ") == expected


def test_mondal_qa_features_loss_and_length_cut(tiny_tokenizer):
    tok, row = tiny_tokenizer, qa_items("de", 1, seed=1)[0]
    answer = row["answers"]["text"][0]
    text = mondal_qa_prompt(row["context"], row["question"]) + " " + answer.strip() + tok.eos_token
    ids = tok(text)["input_ids"]
    assert ids[-1] == tok.eos_token_id  # the EOS text is the EOS token
    whole = mondal_qa_features(tok, row["context"], row["question"], answer, max_length=len(ids) + 2)
    assert whole["input_ids"] == ids and whole["labels"] == ids  # loss on every token, as their code
    answer_only = mondal_qa_features(tok, row["context"], row["question"], answer, len(ids) + 2, loss_on="answer")
    n_prompt = len(tok(mondal_qa_prompt(row["context"], row["question"]))["input_ids"])
    assert answer_only["labels"] == [-100] * n_prompt + ids[n_prompt:]
    # their filter: dropped when the row has max_length - 1 tokens or more
    assert mondal_qa_features(tok, row["context"], row["question"], answer, max_length=len(ids) + 1) is None
    assert mondal_qa_features(tok, row["context"], row["question"], answer, max_length=len(ids) + 2) is not None
    batch = {k: [row[k], row[k]] for k in row}
    assert encode_qa_prompt(tok, len(ids) + 1, "mondal", "sequence")(batch)["input_ids"] == []
    assert encode_qa_prompt(tok, len(ids) + 2, "mondal", "sequence")(batch)["labels"] == [ids, ids]


def test_lsn_prompt_loss_on_sequence(tiny_tokenizer):
    tok, row = tiny_tokenizer, qa_items("en", 1, seed=2)[0]
    batch = {k: [row[k]] for k in row}
    answer_loss = encode_qa_prompt(tok, 256)(batch)
    sequence_loss = encode_qa_prompt(tok, 256, loss_on="sequence")(batch)
    assert sequence_loss["input_ids"] == answer_loss["input_ids"]
    assert sequence_loss["labels"] == sequence_loss["input_ids"]
    assert -100 in answer_loss["labels"][0]


def test_token_id_scores_by_hand():
    predictions = [[5, 6, 2], [5, 7, 7, 2], [], [9]]
    references = [[5, 6, 2], [5, 7, 2], [4, 2], [4, 2]]
    # row 2: common = 3 (5, 7, 2), precision 3/4, recall 3/3 -> f1 = 2 * .75 / 1.75
    f1 = [1.0, 2 * 0.75 * 1.0 / 1.75, 0.0, 0.0]
    scores = token_id_scores(predictions, references)
    assert scores["exact_match"] == pytest.approx(25.0)
    assert scores["f1"] == pytest.approx(100 * sum(f1) / 4)


def test_evaluate_qa_mondal_token_ids(tiny_tokenizer):
    """Their prompt goes to generate uncut; a too-long row is dropped; the metric compares generated ids up to the
    first EOS with ' ' + answer + EOS."""
    tok = copy.deepcopy(tiny_tokenizer)
    model = make_tiny_model("llama", vocab_size=len(tok))
    rows = qa_items("en", 3, seed=7)
    long_row = dict(rows[2])
    long_row["context"] = " ".join(r["context"] for r in qa_items("en", 12, seed=8))
    rows = [rows[0], rows[1], long_row]
    gold = [tok(" " + r["answers"]["text"][0].strip(), add_special_tokens=False)["input_ids"] for r in rows]
    max_length = max(len(tok(mondal_qa_prompt(r["context"], r["question"]))["input_ids"]) for r in rows[:2]) + 2
    assert len(tok(mondal_qa_prompt(long_row["context"], long_row["question"]))["input_ids"]) >= max_length - 1
    prompts = []
    eos = tok.eos_token_id

    def generate(input_ids, attention_mask, max_new_tokens, **kwargs):
        prompts.append(input_ids.clone())
        assert max_new_tokens == 100 and kwargs["do_sample"] is False
        first = gold[0] + [eos, 3, 3]  # the answer, EOS, then anything (cut at EOS)
        second = gold[1][:1] + [eos]  # a shorter answer
        width = max(len(first), len(second))
        out = [f + [eos] * (width - len(f)) for f in (first, second)]
        return torch.cat([input_ids, torch.tensor(out)], 1)

    model.generate = generate
    scores = evaluate_qa(
        model,
        tok,
        datasets.Dataset.from_list(rows),
        batch_size=3,
        max_length=max_length,
        max_new_tokens=100,
        prompt_style="mondal",
        qa_metric="token_ids",
    )
    assert scores["dropped"] == 1 and prompts[0].shape[0] == 2
    decoded = tok.decode(prompts[0][0][prompts[0][0] != tok.pad_token_id], skip_special_tokens=True)
    assert decoded.rstrip().endswith("### Response:")
    expected = token_id_scores([gold[0] + [eos], gold[1][:1] + [eos]], [g + [eos] for g in gold[:2]])
    assert scores["exact_match"] == expected["exact_match"] == 50.0
    assert scores["f1"] == pytest.approx(expected["f1"])


def test_mondal_nli_features_by_hand(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.pad_token = tok.eos_token
    items = nli_items("es", 3, seed=2)
    lengths = [len(tok(f"{r['premise']} {tok.eos_token} {r['hypothesis']}")["input_ids"]) for r in items]
    cut = sorted(lengths)[1]  # the shortest row stays, rows of >= cut tokens go
    rows, dropped = mondal_nli_features(tok, [r["premise"] for r in items], [r["hypothesis"] for r in items], cut)
    assert dropped == sum(n >= cut for n in lengths)
    for row, item, n in zip(rows, items, lengths, strict=True):
        if n >= cut:
            assert row is None
            continue
        ids = tok(f"{item['premise']} {tok.eos_token} {item['hypothesis']}")["input_ids"]
        assert row["input_ids"] == ids + [tok.pad_token_id] * (cut - n)  # padded, cut to max_length
        assert row["attention_mask"] == [1] * n + [0] * (cut - n)
    batch = {k: [r[k] for r in items] for k in items[0]}
    enc = encode_nli_classification(tok, cut, "mondal")(batch)
    assert enc["labels"] == [r["label"] for r, n in zip(items, lengths, strict=True) if n < cut]

    model = make_tiny_classifier(tok)
    result = evaluate_nli_classification(model, tok, datasets.Dataset.from_list(items), 2, cut, nli_format="mondal")
    assert result["dropped"] == dropped and 0 <= result["accuracy"] <= 1


def test_mondal_xnli_trains_on_the_first_rows(tiny_tokenizer, monkeypatch):
    data = lsn_train.DataArguments(task="xnli", nli_format="mondal", train_fraction=0.5, data_dir="lsn:world")
    shuffled = lsn_train.DataArguments(task="xnli", train_fraction=0.5, data_dir="lsn:world")
    tok = copy.deepcopy(tiny_tokenizer)
    tok.pad_token = tok.eos_token
    raw = load_xnli("en", "train", data_dir=str(world_task_files()))
    first = raw.select(range(int(len(raw) * 0.5)))
    train, _ = lsn_train.datasets_for(data, tok)
    expected = encode_nli_classification(tok, data.max_length, "mondal")(first[:])
    assert train["input_ids"] == expected["input_ids"] and train["labels"] == expected["labels"]
    other, _ = lsn_train.datasets_for(shuffled, tok)
    assert other["labels"] != train["labels"][: len(other)] or len(other) != len(train)


def test_options_ignored_for_the_other_task_warn():
    with pytest.warns(UserWarning, match="ignores"):
        lsn_train.DataArguments(task="xnli", qa_metric="token_ids")
    with pytest.warns(UserWarning, match="nli_format"):
        lsn_train.DataArguments(task="xquad", nli_format="mondal")
    with pytest.warns(UserWarning, match="dense_lora_modules"):
        lsn_train.NeuronArguments(condition="lora", dense_lora_modules=["q_proj"])


# ---------------------------------------------------------------- one adapter: neuron LoRA + dense q/k/v LoRA


def test_dense_lora_modules_in_one_adapter(tmp_path):
    model = make_tiny_model("llama")
    sites = lsn.find_neuron_sites(model)
    num_neurons = sites[0].num_neurons
    neurons = {"0": [1, 3], "1": [0]}
    config = lsn.NeuronConfig(
        neurons=neurons, target_modules=["gate_proj"], dense_lora_modules=["q_proj", "k_proj", "v_proj"], r=4
    )
    x = torch.randint(0, model.config.vocab_size, (2, 7))
    with torch.no_grad():
        base_out = model(x).logits
    peft_model = peft.get_peft_model(copy.deepcopy(model), config)
    layer0 = peft_model.base_model.model.model.layers[0]
    q = layer0.self_attn.q_proj
    assert q.lsn_indices["default"].tolist() == list(range(q.out_features))
    assert layer0.mlp.gate_proj.lsn_indices["default"].tolist() == [1, 3]
    assert not hasattr(layer0.self_attn.o_proj, "lsn_A") and not hasattr(layer0.mlp.up_proj, "lsn_A")
    torch.manual_seed(1)
    for module in peft_model.modules():
        if isinstance(module, NeuronLayer):
            module.lsn_B["default"].data.normal_()
    # hand computation of q_proj: W x + (alpha / r) * B A x on every row
    h = torch.randn(3, q.in_features)
    A, B = q.lsn_A["default"], q.lsn_B["default"]
    expected = h @ q.base_layer.weight.T + (config.lora_alpha / config.r) * (h @ A.T @ B.T)
    torch.testing.assert_close(q(h), expected)
    trainable = {n.split(".lsn_")[0].rsplit(".", 1)[-1] for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable == {"q_proj", "k_proj", "v_proj", "gate_proj"}
    with torch.no_grad():
        out = peft_model(x).logits
    assert not torch.allclose(out, base_out)
    peft_model.save_pretrained(tmp_path / "adapter")
    loaded = peft.PeftModel.from_pretrained(copy.deepcopy(model), tmp_path / "adapter")
    assert lsn.NeuronConfig.from_pretrained(tmp_path / "adapter").dense_lora_modules == ["q_proj", "k_proj", "v_proj"]
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, out)
    assert num_neurons > 3


def test_dense_lora_modules_errors():
    with pytest.raises(ValueError, match="mode='lora'"):
        lsn.NeuronConfig(neurons={"0": [1]}, mode="full", dense_lora_modules=["q_proj"])
    with pytest.raises(ValueError, match=r"\['nope'\]"):
        peft.get_peft_model(make_tiny_model("llama"), lsn.NeuronConfig(neurons={"0": [1]}, dense_lora_modules=["nope"]))


# ---------------------------------------------------------------- the tiny paper recipes


@pytest.mark.parametrize("task", ["xnli", "xquad"])
def test_tiny_paper_recipes_run_offline(tmp_path, monkeypatch, task):
    monkeypatch.setenv("LSN_CACHE", str(tmp_path / "cache"))
    recipe = Path(__file__).resolve().parents[1] / f"recipes/tiny/{task}/config_neuron_lora_paper.yaml"
    args = [str(recipe), "--output_dir", str(tmp_path / "run"), "--max_steps", "2", "--max_eval_samples", "3"]
    args += ["--eval_languages", "en", "hi"] + (["--max_new_tokens", "4"] if task == "xquad" else [])
    parsed = parse_recipe(lsn_train.build_parser(), args)
    training = parsed[3]
    assert (training.weight_decay, training.adam_beta1, training.adam_beta2) == (0.1, 0.95, 0.999)
    assert (training.max_grad_norm, training.warmup_steps) == (10.0, 0.01)
    results = lsn_train.main(*parsed)
    assert set(results) == {"en", "hi"}
    config = lsn.NeuronConfig.from_pretrained(tmp_path / "run")
    if task == "xquad":
        assert config.dense_lora_modules == ["q_proj", "k_proj", "v_proj"] and "dropped" in results["en"]
    else:
        assert results["en"]["dropped"] >= 0


# ---------------------------------------------------------------- Mondal et al.'s LAPE variant


def mondal_lape_by_hand(p_klj: torch.Tensor, top_rate: float):
    """Their algorithm on `(groups, layers, neurons)` probabilities, in plain torch."""
    bar = p_klj.flatten().quantile(0.95).item()
    norm = p_klj / (p_klj.sum(0) + 1e-10)
    lape = -(norm * torch.log(norm + 1e-10)).sum(0)
    lape[(p_klj > bar).sum(0) == 0] = torch.inf
    m = round(top_rate * lape.numel())
    cutoff = lape.flatten().sort()[0][:m].max()
    chosen = torch.nonzero(lape <= cutoff)
    return {k: {tuple(ij) for ij in chosen.tolist() if p_klj[k, ij[0], ij[1]] > bar} for k in range(p_klj.shape[0])}


@pytest.mark.parametrize("tied", [False, True])
def test_lape_mondal_variant_equals_their_algorithm(tied):
    torch.manual_seed(0)
    tokens = torch.tensor([1000, 1200, 900])
    counts = (torch.rand(3, 40, 3) ** 2 * tokens * 0.7).long()
    if tied:  # many neurons of exactly equal entropy: the `<=` cutoff keeps all of them
        counts[0, :10] = torch.tensor([900, 0, 0])
    stats = lsn.ActivationStats(counts=counts, tokens=tokens, groups=["a", "b", "c"])
    got = lsn.select_lape(stats, top_rate=0.05, variant="mondal")
    expected = mondal_lape_by_hand(stats.probabilities().permute(2, 0, 1).float(), 0.05)
    for k, g in enumerate(stats.groups):
        pairs = {(layer, int(j)) for layer, idx in enumerate(got[g]) for j in idx}
        assert pairs == expected[k]
    assert got.parameters["variant"] == "mondal"
    assert got.parameters["filter_bar"] == pytest.approx(stats.probabilities().flatten().quantile(0.95).item())
    default = lsn.select_lape(stats, top_rate=0.05)
    if tied:  # ties beyond the budget: the default keeps exactly round(N * top_rate) in all
        assert (
            len(set().union(*[{(l, int(j)) for l, idx in enumerate(default[g]) for j in idx} for g in stats.groups]))
            <= 6
            < sum(map(len, expected.values()))
        )


# ---------------------------------------------------------------- Neuron Specialization: fc1 rows only


def test_task_masks_weight_rows_equal_masked_fc1_weight():
    from lsn.translation import TaskMasks

    model = make_tiny_model("opt").eval()
    sites = lsn.find_neuron_sites(model)
    width = sites[0].num_neurons
    keep = {layer: sorted(torch.randperm(width)[: width // 2].tolist()) for layer in range(len(sites))}
    neurons = lsn.NeuronSet({"t": [keep[s.index] for s in sites]}, num_layers=len(sites), num_neurons=width)
    x = torch.randint(0, model.config.vocab_size, (2, 6))
    fc1 = sites[0].input_modules[0]
    with torch.no_grad():
        fc1.bias.normal_()  # a bias that matters
    masks = TaskMasks(neurons, mode="weight_rows")
    with masks.attached(model):
        masks.set_task("t")
        out = model(x).logits
        out.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    # by hand: fc1's rows outside the set zeroed in the forward (W1 := m * W1), the bias left on
    reference = copy.deepcopy(model)
    reference.zero_grad()
    originals = {}
    for site in lsn.find_neuron_sites(reference):
        m = torch.zeros(width)
        m[keep[site.index]] = 1
        layer = site.input_modules[0]
        originals[site.index] = layer.weight
        weight = layer.weight
        del layer.weight
        layer.weight = weight * m[:, None]  # a non-leaf: gradients reach the original through it
    expected = reference(x).logits
    expected.sum().backward()
    torch.testing.assert_close(out, expected)
    site0 = lsn.find_neuron_sites(reference)[0]
    torch.testing.assert_close(grads[f"{sites[0].path}.fc1.bias"], site0.input_modules[0].bias.grad)
    torch.testing.assert_close(grads[f"{sites[0].path}.fc1.weight"], originals[0].grad)
    masked = torch.ones(width, dtype=torch.bool)
    masked[keep[0]] = False
    assert grads[f"{sites[0].path}.fc1.weight"][masked].abs().sum() == 0
    assert grads[f"{sites[0].path}.fc1.bias"][masked].abs().sum() > 0  # the bias still trains
    with pytest.raises(ValueError, match="mode"):
        TaskMasks(neurons, mode="rows")


# ---------------------------------------------------------------- Mondal et al.'s "mean": of the pre-activation


def test_pre_mean_values_by_hand():
    from conftest import padded_batches

    model = make_tiny_model("llama").eval()
    corpora = {"a": padded_batches(2, seed=1), "b": padded_batches(2, seed=2)}
    stats = lsn.record_activations(model, corpora, record_sums=True, progress=False)
    sites = lsn.find_neuron_sites(model)
    for k, group in enumerate(["a", "b"]):
        total = torch.zeros(len(sites), sites[0].num_neurons, dtype=torch.float64)
        tokens = 0
        for batch in corpora[group]:
            seen = capture_outputs(model, [s.input_modules[0] for s in sites], batch)  # by site index
            mask = batch["attention_mask"].bool()
            tokens += int(mask.sum())
            for i, pre in seen.items():  # gate_proj(x) over real tokens
                total[i] += pre[mask].double().sum(0)
        torch.testing.assert_close(stats.pre_means()[..., k], total / tokens)
        values = lsn.neuron_values(stats, group, statistic="pre_mean")
        torch.testing.assert_close(values, (total / tokens).float())
    # the post-activation mean is another table
    assert not torch.allclose(stats.pre_means(), stats.means())


# ---------------------------------------------------------------- Neuron Specialization: padding counted


def test_count_padding_counts_every_position_by_hand(monkeypatch):
    from conftest import padded_batches

    from lsn.corpora import COUNT_PADDING
    from lsn.translation import identification

    model = make_tiny_model("llama").eval()
    batches = padded_batches(2, seed=3)
    assert any((b["attention_mask"] == 0).any() for b in batches)
    stats = lsn.record_activations(model, {"t": [b | {COUNT_PADDING: True} for b in batches]}, progress=False)
    real = lsn.record_activations(model, {"t": batches}, progress=False)
    sites = lsn.find_neuron_sites(model)
    counts = torch.zeros(len(sites), sites[0].num_neurons, dtype=torch.long)
    for batch in batches:  # the model still sees its attention mask; every position counts
        seen = capture_outputs(model, [s.activation for s in sites], batch)  # by site index
        for i, act in seen.items():
            counts[i] += (act > 0).reshape(-1, act.shape[-1]).sum(0)
    assert int(stats.tokens[0]) == sum(b["input_ids"].numel() for b in batches) > int(real.tokens[0])
    assert torch.equal(stats.counts[..., 0], counts)

    captured = {}

    def fake_record(model, corpora, progress=True):
        captured.update(corpora)
        return real

    monkeypatch.setattr(identification, "record_activations", fake_record)
    monkeypatch.setattr(identification, "direction_batches", lambda *a, **k: batches)
    identification.identify(model, None, None, {"en-de": []}, count_padding=True)
    assert all(b[COUNT_PADDING] is True for b in captured["en-de"])
