"""NeuronSet: construction, set algebra, JSON files, model checks and the hub round trip."""

import json
import random
from pathlib import Path

import pytest
import torch
import transformers

from lsn import NeuronSet

LAYERS, NEURONS = 3, 20


def random_sets(seed, groups=("en", "fr", "zh"), layers=LAYERS, neurons=NEURONS):
    """group -> per layer a python set of random indices (some layers possibly empty)."""
    rng = random.Random(seed)
    return {g: [set(rng.sample(range(neurons), rng.randint(0, neurons // 2))) for _ in range(layers)] for g in groups}


def make(sets, **kwargs):
    return NeuronSet(
        {g: [sorted(s) for s in layers] for g, layers in sets.items()}, num_layers=LAYERS, num_neurons=NEURONS, **kwargs
    )


def example(**kwargs):
    neurons = {"en": [[3, 1], [], [19, 0]], "fr": [[1, 2, 3], [5], [0]], "zh": [[], [5, 6], [7]]}
    kwargs = (
        dict(
            method="lape",
            parameters={"top_rate": 0.01, "filter_rate": 0.95},
            model={"model_name": "org/tiny-llama", "revision": "abc"},
        )
        | kwargs
    )
    return NeuronSet(neurons, num_layers=LAYERS, num_neurons=NEURONS, **kwargs)


# ---------------------------------------------------------------- construction


@pytest.mark.parametrize(
    "given, expected",
    [
        ([5, 1, 5, 3, 1], [1, 3, 5]),
        (torch.tensor([[4, 2], [2, 0]]), [0, 2, 4]),
        ([], []),
        ((19, 0), [0, 19]),
    ],
)
def test_construction_sorts_and_uniques(given, expected):
    ns = NeuronSet({"en": [given, [], []]}, num_layers=LAYERS, num_neurons=NEURONS)
    assert ns["en"][0].tolist() == expected
    assert ns["en"][0].dtype == torch.long
    assert ns.groups == ["en"] and len(ns) == 1 and "en" in ns and "fr" not in ns


@pytest.mark.parametrize("bad", [[-1, 2], [0, NEURONS], [NEURONS + 7]])
def test_out_of_range_indices_raise(bad):
    with pytest.raises(ValueError, match="outside"):
        NeuronSet({"en": [[], bad, []]}, num_layers=LAYERS, num_neurons=NEURONS)


def test_wrong_number_of_layers_raises():
    with pytest.raises(ValueError, match="layers"):
        NeuronSet({"en": [[1], [2]]}, num_layers=LAYERS, num_neurons=NEURONS)


def test_unknown_group_raises_key_error():
    with pytest.raises(KeyError, match="de"):
        example()["de"]
    with pytest.raises(KeyError, match="de"):
        example().union(["en", "de"])


# ---------------------------------------------------------------- set algebra


@pytest.mark.parametrize("seed", range(5))
def test_set_algebra_matches_python_sets(seed):
    sets = random_sets(seed)
    ns = make(sets)
    groups = list(sets)
    for chosen in (None, "fr", ["en", "zh"], ["zh", "fr", "en"]):
        gs = groups if chosen is None else ([chosen] if isinstance(chosen, str) else chosen)
        union = [sorted(set().union(*(sets[g][l] for g in gs))) for l in range(LAYERS)]
        inter = [sorted(set.intersection(*(sets[g][l] for g in gs))) for l in range(LAYERS)]
        assert [t.tolist() for t in ns.union(chosen)] == union
        assert [t.tolist() for t in ns.intersection(chosen)] == inter
        assert ns.layer_dict(chosen) == {l: idx for l, idx in enumerate(union) if idx}

    masks = ns.masks()
    assert masks.shape == (3, LAYERS, NEURONS) and masks.dtype == torch.bool
    for k, g in enumerate(groups):
        for l in range(LAYERS):
            assert {j for j in range(NEURONS) if masks[k, l, j]} == sets[g][l]

    assert ns.counts_per_layer().tolist() == [[len(sets[g][l]) for l in range(LAYERS)] for g in groups]

    flat = {g: {(l, j) for l in range(LAYERS) for j in sets[g][l]} for g in groups}
    iou = ns.overlap()
    for a, ga in enumerate(groups):
        for b, gb in enumerate(groups):
            u = len(flat[ga] | flat[gb])
            expected = len(flat[ga] & flat[gb]) / u if u else 0.0
            assert iou[a, b].item() == pytest.approx(expected, abs=1e-7)


def test_overlap_hand_numbers_and_empty_groups():
    ns = NeuronSet(
        {"a": [[0, 1, 2], [], []], "b": [[1, 2, 3], [], []], "c": [[], [], []]}, num_layers=LAYERS, num_neurons=NEURONS
    )
    expected = [[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 0.0]]  # |{1,2}| / |{0,1,2,3}| = 0.5
    assert ns.overlap().tolist() == expected


def test_subset_keeps_metadata():
    ns = example()
    sub = ns.subset(["zh", "en"])
    assert sub.groups == ["zh", "en"]
    assert sub.method == "lape" and sub.parameters == ns.parameters and sub.model == ns.model
    assert [t.tolist() for t in sub["en"]] == [[1, 3], [], [0, 19]]


def test_equality():
    assert example() == example()
    assert example() == example(method="other")  # == compares the neurons and shape
    other = NeuronSet(
        {"en": [[1, 3], [], [0, 19]], "fr": [[1, 2, 3], [5], [0]], "zh": [[], [5, 6], [8]]},
        num_layers=LAYERS,
        num_neurons=NEURONS,
    )
    assert example() != other


# ---------------------------------------------------------------- JSON files


def test_save_load_round_trip(tmp_path):
    ns = example()
    ns.save(tmp_path / "deep" / "set.json")
    loaded = NeuronSet.load(tmp_path / "deep" / "set.json")
    assert loaded == ns
    assert (loaded.method, loaded.parameters, loaded.model) == (ns.method, ns.parameters, ns.model)
    assert (loaded.num_layers, loaded.num_neurons) == (LAYERS, NEURONS)


@pytest.mark.parametrize("seed", range(3))
def test_random_round_trip_and_json_text(tmp_path, seed):
    ns = make(random_sets(seed, groups=("en", "中文", "x y")))
    path = tmp_path / "n.json"
    ns.save(path)
    assert NeuronSet.load(path) == ns
    text = path.read_text(encoding="utf-8")
    lines = [line.strip().rstrip(",") for line in text.splitlines()]
    for g in ns.groups:
        for idx in ns[g]:
            assert json.dumps(idx.tolist()) in lines  # each layer's list is one whole line
    assert "中文" in text  # not escaped


def test_json_is_human_readable():
    text = example().to_json()
    data = json.loads(text)
    assert data["format"] == "lsn.NeuronSet" and data["format_version"] == 1
    assert data["model"]["num_layers"] == LAYERS and data["model"]["num_neurons"] == NEURONS
    assert data["groups"]["fr"] == [[1, 2, 3], [5], [0]]
    lines = text.splitlines()
    assert "      [1, 2, 3]," in lines
    assert "      [5]," in lines
    assert "      [0, 19]" in lines
    assert "      []," in lines
    # the layers of one group are consecutive lines, one per layer
    start = lines.index('    "zh": [')
    assert lines[start + 1 : start + 5] == ["      [],", "      [5, 6],", "      [7]", "    ]"]


def test_load_directory_uses_neurons_json(tmp_path):
    example().save(tmp_path / "neurons.json")
    assert NeuronSet.load(tmp_path) == example()


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        NeuronSet.load(tmp_path / "none.json")


@pytest.mark.parametrize(
    "content, words",
    [
        (lambda text: text[: len(text) // 2], "not valid JSON"),
        (lambda text: "\x00\xff garbage", "not valid JSON"),
        (lambda text: json.dumps({"groups": {"en": [[1]]}}), "not an lsn NeuronSet"),
        (lambda text: json.dumps([1, 2, 3]), "not an lsn NeuronSet"),
        (lambda text: json.dumps(json.loads(text) | {"format_version": 2}), "newer lsn"),
        (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "model"}), "damaged"),
        (lambda text: json.dumps(json.loads(text) | {"groups": [[1]]}), "damaged"),
        (lambda text: json.dumps(json.loads(text) | {"groups": {"en": [[1], [2], [99]]}}), "outside"),
    ],
)
def test_bad_files_raise_clear_value_errors(tmp_path, content, words):
    path = tmp_path / "bad.json"
    path.write_text(content(example().to_json()), encoding="utf-8")
    with pytest.raises(ValueError, match=words):
        NeuronSet.load(path)


def test_bad_bytes_raise_value_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(bytes(range(128, 256)))
    with pytest.raises(ValueError, match="not valid JSON"):
        NeuronSet.load(path)


# ---------------------------------------------------------------- models


@pytest.fixture(scope="module")
def tiny_llama():
    config = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


def test_check_compatible(tiny_llama):
    NeuronSet({"en": [[0, 63], [5]]}, num_layers=2, num_neurons=64).check_compatible(tiny_llama)
    for layers, neurons in ((3, 64), (2, 128)):
        ns = NeuronSet({"en": [[0]] * layers}, num_layers=layers, num_neurons=neurons, model={"model_name": "org/big"})
        with pytest.raises(ValueError) as err:
            ns.check_compatible(tiny_llama)
        message = str(err.value)
        assert f"{layers} layers x {neurons} neurons" in message
        assert "2 x 64" in message
        assert "org/big" in message


def test_check_compatible_logs_other_model_name_of_same_shape(tiny_llama, caplog):
    tiny_llama.config._name_or_path = "org/tiny-a"
    try:
        ns = NeuronSet({"en": [[1], [2]]}, num_layers=2, num_neurons=64, model={"model_name": "org/tiny-b"})
        with caplog.at_level("INFO", logger="lsn.neuron_set"):
            ns.check_compatible(tiny_llama)  # a fine-tune of the same shape is fine
        assert "`org/tiny-b` is used with `org/tiny-a`" in caplog.text
    finally:
        tiny_llama.config._name_or_path = ""


# ---------------------------------------------------------------- hub


def test_save_pretrained_writes_json_and_model_card(tmp_path):
    ns = example()
    ns.save_pretrained(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["README.md", "neurons.json"]
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "base_model: org/tiny-llama" in card
    assert "org/tiny-llama" in card and "lape" in card
    assert "`top_rate`: `0.01`" in card and "`filter_rate`: `0.95`" in card
    assert "| group | total | L0 | L1 | L2 |" in card
    assert "| en | 4 | 2 | 0 | 2 |" in card  # en: [1, 3], [], [0, 19]
    assert "| fr | 5 | 3 | 1 | 1 |" in card
    assert "| zh | 3 | 0 | 2 | 1 |" in card
    assert NeuronSet.from_pretrained(tmp_path / "out") == ns
    assert NeuronSet.from_pretrained(str(tmp_path / "out" / "neurons.json")) == ns


def test_model_card_without_base_model():
    card = NeuronSet({"en": [[1], [], []]}, num_layers=LAYERS, num_neurons=NEURONS).model_card()
    assert "base_model" not in card and "(none recorded)" in card


def test_push_to_hub_uploads_folder(monkeypatch):
    import huggingface_hub

    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create"] = (repo_id, kwargs)

    def upload_folder(self, *, repo_id, folder_path, commit_message=None, **kwargs):
        folder = Path(folder_path)
        calls["upload"] = {p.name: p.read_text(encoding="utf-8") for p in folder.iterdir()}
        calls["repo"] = repo_id
        calls["message"] = commit_message
        return "https://hf.example/commit/1"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    ns = example()
    url = ns.push_to_hub("me/my-neurons", private=True)
    assert url == "https://hf.example/commit/1"
    assert calls["create"][0] == "me/my-neurons" and calls["create"][1]["private"] is True
    assert calls["repo"] == "me/my-neurons"
    assert set(calls["upload"]) == {"neurons.json", "README.md"}
    assert NeuronSet.from_dict(json.loads(calls["upload"]["neurons.json"])) == ns
    assert "org/tiny-llama" in calls["upload"]["README.md"]


def test_from_pretrained_hub_id_downloads(monkeypatch, tmp_path):
    import huggingface_hub

    ns = example()
    ns.save(tmp_path / "neurons.json")
    seen = {}

    def fake_download(repo_id, filename, **kwargs):
        seen.update(repo_id=repo_id, filename=filename, **kwargs)
        return str(tmp_path / "neurons.json")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    loaded = NeuronSet.from_pretrained("someone/neurons-not-a-local-path", revision="v1")
    assert loaded == ns
    assert seen["repo_id"] == "someone/neurons-not-a-local-path"
    assert seen["filename"] == "neurons.json"
    assert seen["revision"] == "v1"
