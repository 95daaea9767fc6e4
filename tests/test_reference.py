"""Tang et al.'s published files: neuron files and recording files, built here with torch.save."""

import pickle

import numpy as np
import pytest
import torch
from conftest import make_tiny_model

import lsn
from lsn.cli import main

LAYERS, NEURONS = 3, 40
SEVEN = ["en", "zh", "fr", "es", "vi", "id", "ja"]


def reference_neurons(n_languages, seed=0, layers=LAYERS, neurons=NEURONS):
    """`List[List[LongTensor]]` as the reference writes it: sorted indices, some layers empty."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_languages):
        per_layer = []
        for _ in range(layers):
            keep = torch.rand(neurons, generator=g) < 0.2
            per_layer.append(torch.nonzero(keep).flatten().long())
        per_layer[-1] = torch.tensor([], dtype=torch.long) if n_languages > 1 else per_layer[-1]
        out.append(per_layer)
    return out


def assert_same_structure(a, b):
    assert type(a) is list and len(a) == len(b)
    for ga, gb in zip(a, b, strict=True):
        assert type(ga) is list and len(ga) == len(gb)
        for ta, tb in zip(ga, gb, strict=True):
            assert ta.dtype == tb.dtype == torch.long and torch.equal(ta, tb)


@pytest.mark.parametrize("n_languages", [7, 6])
def test_neuron_file_round_trips_exactly(tmp_path, n_languages):
    data = reference_neurons(n_languages)
    torch.save(data, tmp_path / "ref.neuron.pth")
    ns = lsn.NeuronSet.from_reference(tmp_path / "ref.neuron.pth", num_neurons=NEURONS)
    assert ns.groups == SEVEN[:n_languages]
    assert (ns.num_layers, ns.num_neurons) == (LAYERS, NEURONS)
    for k, g in enumerate(ns.groups):
        for layer in range(LAYERS):
            assert ns[g][layer].tolist() == data[k][layer].tolist()
    ns.to_reference(tmp_path / "back.pth")
    assert_same_structure(torch.load(tmp_path / "back.pth", weights_only=True), data)
    assert lsn.NeuronSet.from_reference(tmp_path / "back.pth", num_neurons=NEURONS) == ns


def test_other_language_counts_need_groups(tmp_path):
    torch.save(reference_neurons(3), tmp_path / "three.pth")
    with pytest.raises(ValueError, match="groups="):
        lsn.NeuronSet.from_reference(tmp_path / "three.pth", num_neurons=NEURONS)
    with pytest.raises(ValueError, match="names 2 languages"):
        lsn.NeuronSet.from_reference(tmp_path / "three.pth", groups=["a", "b"], num_neurons=NEURONS)
    ns = lsn.NeuronSet.from_reference(tmp_path / "three.pth", groups=["de", "ru", "ko"], num_neurons=NEURONS)
    assert ns.groups == ["de", "ru", "ko"]


def test_width_from_model_and_checks(tmp_path):
    model = make_tiny_model("llama")  # 2 layers x 64 neurons
    data = reference_neurons(7, layers=2, neurons=64)
    torch.save(data, tmp_path / "ref.pth")
    ns = lsn.NeuronSet.from_reference(tmp_path / "ref.pth", model=model)
    assert ns.num_neurons == 64
    ns.check_compatible(model)
    with pytest.raises(ValueError, match="num_neurons"):
        lsn.NeuronSet.from_reference(tmp_path / "ref.pth")
    torch.save(reference_neurons(7, layers=3), tmp_path / "three_layers.pth")
    with pytest.raises(ValueError, match="another model"):
        lsn.NeuronSet.from_reference(tmp_path / "three_layers.pth", model=model)
    with pytest.raises(ValueError, match="outside"):  # indices beyond the given width
        lsn.NeuronSet.from_reference(tmp_path / "ref.pth", num_neurons=10)


class _Payload:  # any class: weights_only loading must refuse it, not run its pickle code
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_pickles_needing_more_than_tensors_are_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump([[_Payload()]], f, protocol=2)
    with pytest.raises(ValueError, match="weights_only=True"):
        lsn.NeuronSet.from_reference(path, num_neurons=NEURONS)
    assert "unpickled!" not in capsys.readouterr().out
    torch.save({"n": 5}, tmp_path / "nokeys.pth")
    with pytest.raises(ValueError, match="over_zero"):
        lsn.ActivationStats.from_reference({"en": tmp_path / "nokeys.pth"})
    with pytest.raises(ValueError, match="not a reference neuron file"):
        lsn.NeuronSet.from_reference(tmp_path / "nokeys.pth", num_neurons=NEURONS)


# ---------------------------------------------------------------- recording files + LAPE


def reference_lape(over_zero, n, top_rate=0.01, filter_rate=0.95, activation_bar_ratio=0.95):
    """The reference identification, written from DESIGN.md §3 in plain torch (float32 as there)."""
    probs = over_zero / n  # [layers, neurons, langs]
    normed = probs / probs.sum(-1, keepdim=True)
    normed[torch.isnan(normed)] = 0
    logs = torch.where(normed > 0, normed.log(), 0)
    entropy = -(normed * logs).sum(-1)
    flat = probs.flatten()
    bar = flat.kthvalue(round(flat.numel() * filter_rate)).values.item()
    entropy[(probs > bar).sum(-1) == 0] = torch.inf
    _, index = entropy.flatten().topk(round(entropy.numel() * top_rate), largest=False)
    rows, cols = index // entropy.shape[1], index % entropy.shape[1]
    selected = probs[rows, cols].T  # [langs, kept]
    act_bar = flat.kthvalue(round(flat.numel() * activation_bar_ratio)).values.item()
    out = []
    for k in range(probs.shape[-1]):
        pairs = sorted(zip(rows[selected[k] > act_bar].tolist(), cols[selected[k] > act_bar].tolist(), strict=True))
        out.append([[h for layer, h in pairs if layer == l] for l in range(probs.shape[0])])
    return out


def test_select_lape_on_imported_recordings_equals_the_reference(tmp_path):
    rng = np.random.default_rng(3)
    layers, neurons = 4, 200
    paths, over_zero, ns = {}, [], []
    for k, lang in enumerate(SEVEN):
        n = int(rng.integers(20_000, 90_000))
        base = rng.random((layers, neurons)) ** 3 * 0.5
        base[:, k * 20 : k * 20 + 15] = rng.random((layers, 15)) * 0.4 + 0.5  # each language its own neurons
        counts = torch.from_numpy(np.floor(base * n)).to(torch.int32)
        path = tmp_path / f"activation.{lang}.train.tiny"
        torch.save({"n": n, "over_zero": counts}, path)
        paths[lang], ns = path, ns + [n]
        over_zero.append(counts)
    stats = lsn.ActivationStats.from_reference(paths)
    assert stats.groups == SEVEN and stats.counts.dtype == torch.int64
    assert stats.tokens.tolist() == ns
    expected = reference_lape(torch.stack(over_zero, -1), torch.tensor(ns), top_rate=0.05)
    got = lsn.select_lape(stats, top_rate=0.05)
    assert {g: [t.tolist() for t in got[g]] for g in got.groups} == dict(zip(SEVEN, expected, strict=True))
    assert all(sum(len(x) for x in e) > 0 for e in expected)  # non-trivial: every language gets neurons
    assert sum(int(u.numel()) for u in got.union()) == round(4 * 200 * 0.05)

    # the selected set written back in the reference format matches the reference's structure
    got.to_reference(tmp_path / "lape.neuron.pth")
    back = torch.load(tmp_path / "lape.neuron.pth", weights_only=True)
    assert [[t.tolist() for t in g] for g in back] == expected


def test_recording_files_must_agree(tmp_path):
    torch.save({"n": 10, "over_zero": torch.zeros(2, 5, dtype=torch.int32)}, tmp_path / "a")
    torch.save({"n": 10, "over_zero": torch.zeros(2, 6, dtype=torch.int32)}, tmp_path / "b")
    torch.save({"n": torch.tensor(3), "over_zero": torch.full((2, 5), 4, dtype=torch.int32)}, tmp_path / "c")
    with pytest.raises(ValueError, match="different models"):
        lsn.ActivationStats.from_reference({"en": tmp_path / "a", "fr": tmp_path / "b"})
    with pytest.raises(ValueError, match="damaged"):
        lsn.ActivationStats.from_reference({"en": tmp_path / "c"})


# ---------------------------------------------------------------- CLI


def test_cli_import_reference(tmp_path):
    data = reference_neurons(7)
    torch.save(data, tmp_path / "ref.neuron.pth")
    out = tmp_path / "neurons.json"
    args = ["import-reference", "--neurons", str(tmp_path / "ref.neuron.pth"), "--num-neurons", str(NEURONS)]
    assert main(args + ["--output", str(out)]) == 0
    assert lsn.NeuronSet.load(out) == lsn.NeuronSet.from_reference(tmp_path / "ref.neuron.pth", num_neurons=NEURONS)

    for lang, n in (("en", 100), ("zh", 50)):
        torch.save({"n": n, "over_zero": torch.arange(LAYERS * NEURONS).reshape(LAYERS, NEURONS) % n}, tmp_path / lang)
    stats_out = tmp_path / "stats.safetensors"
    args = ["import-reference", "--activation", f"en={tmp_path / 'en'}", "--activation", f"zh={tmp_path / 'zh'}"]
    assert main(args + ["--output", str(stats_out)]) == 0
    stats = lsn.ActivationStats.load(stats_out)
    assert stats.groups == ["en", "zh"] and stats.tokens.tolist() == [100, 50]
    assert torch.equal(stats.counts[..., 1], torch.arange(LAYERS * NEURONS).reshape(LAYERS, NEURONS) % 50)

    assert main(["import-reference", "--neurons", str(tmp_path / "ref.neuron.pth"), "--output", str(out)]) == 2


def test_cli_import_reference_width_from_a_model_config(tmp_path):
    make_tiny_model("llama").config.save_pretrained(tmp_path / "model")  # 2 layers x 64 neurons, config only
    torch.save(reference_neurons(6, layers=2, neurons=64), tmp_path / "ref.pth")
    args = ["import-reference", "--neurons", str(tmp_path / "ref.pth"), "--model", str(tmp_path / "model")]
    assert main(args + ["--output", str(tmp_path / "out")]) == 0
    ns = lsn.NeuronSet.from_pretrained(tmp_path / "out")
    assert ns.groups == SEVEN[:6] and ns.num_neurons == 64 and ns.model["model_name"] == str(tmp_path / "model")
