"""ActivationStats: probabilities, files, merge, group selection, encoder-decoder tokens."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from lsn import ActivationStats


def planted(layers=3, neurons=7, groups=("en", "fr", "zh"), seed=0, full=False, **kwargs):
    """Random counts below random token totals; with `full`, every optional tensor too."""
    g = torch.Generator().manual_seed(seed)
    K = len(groups)
    tokens = torch.randint(50, 200, (K,), generator=g)
    counts = (torch.rand(layers, neurons, K, generator=g) * tokens).long()
    if full:
        kwargs.setdefault("sums", torch.rand(layers, neurons, K, generator=g, dtype=torch.float64) * 10)
        kwargs.setdefault("quantile", 0.9)
        kwargs.setdefault("quantile_means", torch.randn(layers, neurons, K, generator=g, dtype=torch.float64))
        kwargs.setdefault("quantile_batches", torch.randint(1, 9, (K,), generator=g))
        kwargs.setdefault("above_quantile", (torch.rand(layers, neurons, K, generator=g) * tokens).long())
        kwargs.setdefault("threshold", torch.randn(layers, neurons, generator=g))
        kwargs.setdefault("above_threshold", (torch.rand(layers, neurons, K, generator=g) * tokens).long())
    return ActivationStats(counts=counts, tokens=tokens, groups=list(groups), **kwargs)


def assert_stats_equal(a, b):
    assert a.groups == b.groups
    assert a.quantile == b.quantile
    assert a.metadata == b.metadata
    for name in (
        "counts",
        "tokens",
        "sums",
        "quantile_means",
        "quantile_batches",
        "above_quantile",
        "threshold",
        "above_threshold",
        "encoder_tokens",
    ):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype, name
            assert torch.equal(x, y), name


# ---------------------------------------------------------------- views


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_probabilities_are_counts_over_tokens(seed):
    stats = planted(seed=seed)
    c, t = stats.counts.numpy(), stats.tokens.numpy()
    expected = np.empty(c.shape)
    for l in range(c.shape[0]):
        for j in range(c.shape[1]):
            for k in range(c.shape[2]):
                expected[l, j, k] = c[l, j, k] / t[k]
    p = stats.probabilities()
    assert p.dtype == torch.float64
    np.testing.assert_array_equal(p.numpy(), expected)


def test_means_are_sums_over_tokens_and_need_sums():
    stats = planted(full=True)
    expected = stats.sums.numpy() / stats.tokens.numpy()[None, None, :]
    np.testing.assert_allclose(stats.means().numpy(), expected, rtol=1e-15)
    with pytest.raises(ValueError, match="sums"):
        planted().means()


def test_encoder_decoder_token_counts():
    """Encoder layers divide by encoder_tokens, decoder layers by tokens."""
    counts = torch.arange(4 * 2 * 2).reshape(4, 2, 2).long()
    tokens = torch.tensor([40, 50])
    enc = torch.tensor([80, 100])
    stats = ActivationStats(
        counts=counts, tokens=tokens, encoder_tokens=enc, groups=["en-de", "de-en"], metadata={"num_encoder_layers": 1}
    )
    assert stats.num_encoder_layers == 1
    assert stats.token_counts().tolist() == [[80, 100], [40, 50], [40, 50], [40, 50]]
    p = stats.probabilities()
    for l in range(4):
        for j in range(2):
            for k in range(2):
                denom = [80, 100][k] if l < 1 else [40, 50][k]
                assert p[l, j, k].item() == counts[l, j, k].item() / denom
    # num_encoder_layers without encoder_tokens cannot be resolved
    with pytest.raises(ValueError, match="encoder_tokens"):
        ActivationStats(counts=counts, tokens=tokens, groups=["en-de", "de-en"], metadata={"num_encoder_layers": 2})


@pytest.mark.parametrize(
    "tokens, encoder_tokens, empty",
    [
        ([10, 0, 5], None, "fr"),
        ([0, 3, 5], None, "en"),
        ([10, 4, 5], [7, 7, 0], "zh"),  # encoder side has no tokens
    ],
)
def test_group_without_tokens_raises_naming_it(tokens, encoder_tokens, empty):
    counts = torch.zeros(2, 3, 3, dtype=torch.long)
    metadata = {"num_encoder_layers": 1} if encoder_tokens else {}
    with pytest.raises(ValueError, match="no tokens") as err:
        ActivationStats(
            counts=counts,
            tokens=torch.tensor(tokens),
            groups=["en", "fr", "zh"],
            encoder_tokens=torch.tensor(encoder_tokens) if encoder_tokens else None,
            metadata=metadata,
        )
    assert f"'{empty}'" in str(err.value)
    others = {"en", "fr", "zh"} - {empty}
    assert not any(f"'{g}'" in str(err.value) for g in others)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(counts=torch.zeros(2, 3, 2)), "int64"),  # float counts
        (dict(counts=torch.zeros(2, 3, dtype=torch.long)), "int64"),  # 2-D
        (dict(groups=["en", "en"]), "duplicate"),
        (dict(tokens=torch.tensor([1, 2, 3])), "groups"),
        (dict(sums=torch.zeros(2, 4, 2, dtype=torch.float64)), "sums"),
    ],
)
def test_invalid_construction_raises(kwargs, words):
    base = dict(counts=torch.zeros(2, 3, 2, dtype=torch.long), tokens=torch.tensor([5, 6]), groups=["en", "fr"])
    with pytest.raises(ValueError, match=words):
        ActivationStats(**(base | kwargs))


# ---------------------------------------------------------------- select_groups


def test_select_groups_reorders_every_tensor():
    stats = planted(
        full=True,
        groups=("en", "fr", "zh", "ja"),
        encoder_tokens=torch.tensor([9, 8, 7, 6]),
        metadata={"model_name": "m", "num_encoder_layers": 1},
    )
    sub = stats.select_groups(["zh", "en"])
    assert sub.groups == ["zh", "en"]
    assert sub.quantile == 0.9 and sub.metadata == stats.metadata
    assert torch.equal(sub.threshold, stats.threshold)
    for name in (
        "counts",
        "tokens",
        "sums",
        "quantile_means",
        "quantile_batches",
        "above_quantile",
        "above_threshold",
        "encoder_tokens",
    ):
        full = getattr(stats, name)
        assert torch.equal(getattr(sub, name)[..., 0], full[..., 2]), name
        assert torch.equal(getattr(sub, name)[..., 1], full[..., 0]), name
    with pytest.raises(KeyError, match="de"):
        stats.select_groups(["de"])


# ---------------------------------------------------------------- files


@pytest.mark.parametrize(
    "make",
    [
        lambda: planted(),
        lambda: planted(full=True, metadata={"model_name": "org/tiny", "seq_len": 16, "corpora": {"en": "wiki"}}),
        lambda: planted(
            full=True,
            groups=("en-de", "de-en"),
            encoder_tokens=torch.tensor([11, 13]),
            metadata={"num_encoder_layers": 2, "model_name": "x/marian", "note": "ünïcode 中文"},
        ),
    ],
)
def test_save_load_round_trip(tmp_path, make):
    stats = make()
    path = tmp_path / "sub" / "stats.safetensors"
    stats.save(path)
    assert not (tmp_path / "sub" / "stats.safetensors.tmp").exists()
    loaded = ActivationStats.load(path)
    assert_stats_equal(stats, loaded)
    assert loaded.num_encoder_layers == stats.num_encoder_layers
    np.testing.assert_array_equal(loaded.probabilities().numpy(), stats.probabilities().numpy())


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        ActivationStats.load(tmp_path / "nope.safetensors")


def test_load_random_bytes_raises(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        ActivationStats.load(path)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_load_truncated_file_raises(tmp_path, keep):
    path = tmp_path / "stats.safetensors"
    planted(full=True).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        ActivationStats.load(path)


@pytest.mark.parametrize("metadata", [None, {"format": "pt"}])
def test_load_foreign_safetensors_raises(tmp_path, metadata):
    path = tmp_path / "model.safetensors"
    save_file({"weight": torch.zeros(3, 4)}, str(path), metadata=metadata)
    with pytest.raises(ValueError, match="not an lsn ActivationStats file"):
        ActivationStats.load(path)


def test_load_newer_format_raises(tmp_path):
    tensors, header = planted().state()
    header["format_version"] = "99"
    path = tmp_path / "new.safetensors"
    save_file(tensors, str(path), metadata=header)
    with pytest.raises(ValueError, match="newer lsn"):
        ActivationStats.load(path)


@pytest.mark.parametrize(
    "damage",
    [
        lambda t, h: h.pop("groups"),
        lambda t, h: h.update(groups="[not json"),
        lambda t, h: t.pop("counts"),
        lambda t, h: t.pop("tokens"),
    ],
)
def test_load_damaged_lsn_file_raises_value_error(tmp_path, damage):
    tensors, header = planted().state()
    damage(tensors, header)
    path = tmp_path / "damaged.safetensors"
    save_file(tensors, str(path), metadata=header)
    with pytest.raises(ValueError, match="damaged"):
        ActivationStats.load(path)


def test_saved_header_is_plain_json(tmp_path):
    stats = planted(metadata={"model_name": "org/tiny"})
    tensors, header = stats.state()
    assert header["format"] == "lsn.ActivationStats"
    assert json.loads(header["groups"]) == ["en", "fr", "zh"]
    assert json.loads(header["metadata"])["model_name"] == "org/tiny"
    assert set(tensors) == {"counts", "tokens"}


# ---------------------------------------------------------------- merge


def test_merge_same_groups_adds():
    a, b = planted(seed=1), planted(seed=2)
    m = a.merge(b)
    assert m.groups == a.groups
    np.testing.assert_array_equal(m.counts.numpy(), a.counts.numpy() + b.counts.numpy())
    np.testing.assert_array_equal(m.tokens.numpy(), a.tokens.numpy() + b.tokens.numpy())
    assert m.counts.dtype == torch.int64


def test_merge_appends_new_groups_and_weights_quantile_means():
    a = planted(groups=("en", "fr"), seed=3, full=True)
    b = planted(groups=("zh", "en"), seed=4, full=True)
    b.threshold = a.threshold  # counts above the same thresholds add
    m = a.merge(b)
    assert m.groups == ["en", "fr", "zh"]
    assert torch.equal(m.threshold, a.threshold)
    src = {  # group -> list of (stats, index) contributing
        "en": [(a, 0), (b, 1)],
        "fr": [(a, 1)],
        "zh": [(b, 0)],
    }
    for k, g in enumerate(m.groups):
        parts = src[g]
        for name in ("counts", "tokens", "sums", "above_quantile", "above_threshold", "quantile_batches"):
            expected = sum(getattr(s, name)[..., i].numpy() for s, i in parts)
            np.testing.assert_allclose(getattr(m, name)[..., k].numpy(), expected, rtol=1e-15, err_msg=f"{g} {name}")
        # quantile means: average over batches, each side weighted by its batch count
        num = sum(s.quantile_means[..., i].numpy() * int(s.quantile_batches[i]) for s, i in parts)
        den = sum(int(s.quantile_batches[i]) for s, i in parts)
        np.testing.assert_allclose(m.quantile_means[..., k].numpy(), num / den, rtol=1e-12)
    assert m.quantile == 0.9


def test_merge_quantile_means_hand_numbers():
    ones = torch.ones(1, 1, 1, dtype=torch.long)
    a = ActivationStats(
        counts=ones,
        tokens=torch.tensor([4]),
        groups=["en"],
        quantile=0.9,
        quantile_means=torch.full((1, 1, 1), 1.0, dtype=torch.float64),
        quantile_batches=torch.tensor([3]),
        above_quantile=ones,
    )
    b = ActivationStats(
        counts=ones,
        tokens=torch.tensor([4]),
        groups=["en"],
        quantile=0.9,
        quantile_means=torch.full((1, 1, 1), 5.0, dtype=torch.float64),
        quantile_batches=torch.tensor([1]),
        above_quantile=ones,
    )
    m = a.merge(b)
    assert m.quantile_means.item() == pytest.approx((1.0 * 3 + 5.0 * 1) / 4)
    assert m.quantile_batches.tolist() == [4]


def test_merge_keeps_corpora_of_both():
    a = planted(metadata={"model_name": "m", "corpora": {"en": "wiki-en"}})
    b = planted(seed=5, metadata={"model_name": "m", "corpora": {"fr": "wiki-fr"}})
    assert a.merge(b).metadata["corpora"] == {"en": "wiki-en", "fr": "wiki-fr"}


@pytest.mark.parametrize(
    "other, words",
    [
        (lambda: planted(layers=4), "shape"),
        (lambda: planted(neurons=8), "shape"),
        (lambda: planted(metadata={"model_name": "org/other"}), "org/other"),
        (lambda: planted(full=True, metadata={"model_name": "org/one"}), "only one"),
        (lambda: planted(metadata={"model_name": "org/one"}, encoder_tokens=torch.tensor([1, 2, 3])), "encoder_tokens"),
    ],
)
def test_merge_mismatch_raises(other, words):
    base = planted(metadata={"model_name": "org/one"})
    with pytest.raises(ValueError, match=words):
        base.merge(other())


def test_merge_different_thresholds_raises():
    a, b = planted(full=True), planted(full=True, seed=1)
    with pytest.raises(ValueError, match="same `threshold`"):
        a.merge(b)


def test_pooled_quantile_weights_every_batch_of_every_group():
    q = torch.tensor([[[1.0, 4.0, 10.0]]], dtype=torch.float64)
    stats = planted(layers=1, neurons=1, full=True, quantile_means=q, quantile_batches=torch.tensor([2, 1, 1]))
    assert stats.pooled_quantile().tolist() == [[(1.0 * 2 + 4.0 + 10.0) / 4]]
    with pytest.raises(ValueError, match="quantile="):
        planted().pooled_quantile()


def test_threshold_probabilities_and_their_absence():
    stats = planted(full=True)
    expected = stats.above_threshold.double() / stats.tokens.double()
    assert torch.equal(stats.threshold_probabilities(), expected)
    with pytest.raises(ValueError, match="threshold="):
        planted().threshold_probabilities()
    with pytest.raises(ValueError, match="go together"):
        planted(threshold=torch.zeros(3, 7))


def test_merge_different_quantiles_raises():
    a = planted(full=True)
    b = planted(full=True, quantile=0.5)
    with pytest.raises(ValueError, match="quantile"):
        a.merge(b)
