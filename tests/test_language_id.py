"""Language identification: label mapping per backend, restriction to the user's languages, errors."""

import pytest

from lsn import language_id
from lsn.demo.world import LANGUAGES, monolingual_corpus
from lsn.language_id import LanguageFilter, LanguageIdentifier, filter_by_language, normalize_language_code


class FakeFastText:
    """What `fasttext.load_model` returns, as far as lsn uses it: labels and ranked predictions."""

    def __init__(self, labels, answers):
        self.labels, self.answers, self.calls = labels, answers, []

    def get_labels(self):
        return list(self.labels)

    def predict(self, lines, k=1):
        self.calls.append((list(lines), k))
        ranked = [tuple(self.answers[line]) for line in lines]
        ranked = [r if k == -1 else r[:k] for r in ranked]
        return ranked, [[1.0] * len(r) for r in ranked]


def _fasttext(monkeypatch, tmp_path, fake, **kwargs):
    path = tmp_path / "lid.bin"
    path.write_bytes(b"")
    monkeypatch.setattr(language_id, "_load_fasttext", lambda p: fake)
    return LanguageIdentifier("fasttext", model_path=path, **kwargs)


def test_normalize_codes():
    assert normalize_language_code("__label__deu_Latn") == ("de", "Latn")
    assert normalize_language_code("__label__de") == ("de", None)
    assert normalize_language_code("cmn_Hani") == ("zh", "Hani")
    assert normalize_language_code("zh-hans") == ("zh", "Hans")
    assert normalize_language_code("yue_Hant") == ("yue", "Hant")


def test_lid176_labels_map_to_iso1(monkeypatch, tmp_path):
    fake = FakeFastText(
        ["__label__en", "__label__de", "__label__fr", "__label__ru"],
        {"hallo welt": ["__label__fr", "__label__de", "__label__en"], "privet": ["__label__ru", "__label__en"]},
    )
    lid = _fasttext(monkeypatch, tmp_path, fake, languages=["en", "de", "ru"])
    assert lid.mapping == {"en": "en", "de": "de", "ru": "ru"}
    # fr is not allowed, so the best allowed label wins; blank text gets no language; newlines are joined.
    assert lid.predict(["hallo\nwelt", "privet", "  "]) == ["de", "ru", ""]
    assert fake.calls == [(["hallo welt", "privet"], -1)]


def test_nllb_glotlid_labels_map_to_user_codes(monkeypatch, tmp_path):
    labels = ["__label__deu_Latn", "__label__eng_Latn", "__label__zho_Hans", "__label__zho_Hant", "__label__arb_Arab"]
    answers = {"a": ["__label__zho_Hant", "__label__deu_Latn"], "b": ["__label__arb_Arab"], "c": ["__label__eng_Latn"]}
    lid = _fasttext(monkeypatch, tmp_path, FakeFastText(labels, answers), languages=["de", "en", "zh", "ar"])
    assert lid.mapping == {"deu_Latn": "de", "eng_Latn": "en", "zho_Hans": "zh", "zho_Hant": "zh", "arb_Arab": "ar"}
    assert lid.predict(["a", "b", "c"]) == ["zh", "ar", "en"]
    # User codes with scripts: script-exact matches; 639-3 user codes too.
    lid = _fasttext(monkeypatch, tmp_path, FakeFastText(labels, answers), languages=["zho_Hans", "zho_Hant", "deu"])
    assert lid.mapping == {"zho_Hans": "zho_Hans", "zho_Hant": "zho_Hant", "deu_Latn": "deu"}
    assert lid.predict(["a"]) == ["zho_Hant"]


def test_label_map_overrides_and_unrestricted(monkeypatch, tmp_path):
    fake = FakeFastText(["__label__yue_Hant", "__label__eng_Latn"], {"x": ["__label__yue_Hant", "__label__eng_Latn"]})
    lid = _fasttext(monkeypatch, tmp_path, fake, languages=["zh", "en"], label_map={"__label__yue_Hant": "zh"})
    assert lid.predict(["x"]) == ["zh"]
    lid = _fasttext(monkeypatch, tmp_path, fake)  # no languages: the labels without `__label__`, top-1
    assert lid.predict(["x"]) == ["yue_Hant"]
    assert fake.calls[-1] == (["x"], 1)


def test_errors_before_any_work(monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError, match="No fastText model"):
        LanguageIdentifier("fasttext", model_path=tmp_path / "missing.bin")
    with pytest.raises(ValueError, match="model_path"):
        LanguageIdentifier("fasttext")
    fake = FakeFastText(["__label__en"], {})
    with pytest.raises(ValueError, match=r"knows no language matching \['xx'\]"):
        _fasttext(monkeypatch, tmp_path, fake, languages=["en", "xx"])
    with pytest.raises(ValueError, match=r"knows no language matching \['tlh'\]"):
        LanguageIdentifier("langid", languages=["en", "tlh"])
    with pytest.raises(ValueError, match="backend"):
        LanguageIdentifier("cld3")


def test_langid_identifies_the_demo_world():
    lid = LanguageIdentifier("langid", languages=LANGUAGES)
    assert sorted(lid.mapping) == sorted(LANGUAGES)
    for lang in LANGUAGES:
        texts = monolingual_corpus(lang, 50, seed=1)
        assert lid.predict(texts) == [lang] * 50, lang


def test_filter_by_language():
    lid = LanguageIdentifier("langid", languages=["en", "de"])
    en, de = monolingual_corpus("en", 3, seed=2), monolingual_corpus("de", 2, seed=2)
    assert filter_by_language(en[:2] + de + en[2:], "de", lid) == de


def test_language_filter_streams_in_chunks_and_fingerprints(tmp_path, capsys):
    from lsn.cli import main
    from lsn.corpora import corpus_fingerprint, load_corpus

    lid = LanguageIdentifier("langid", languages=["en", "de"])
    en, de = monolingual_corpus("en", 5, seed=3), monolingual_corpus("de", 4, seed=3)
    mixed = tmp_path / "de.txt"
    mixed.write_text("\n".join(de[:2] + en + de[2:]) + "\n", encoding="utf-8")
    corpus = LanguageFilter(load_corpus(str(mixed)), "de", lid, chunk=2)
    assert list(corpus) == de and (corpus.kept, corpus.seen) == (4, 9)
    assert list(corpus) == de  # re-iterable, as recording and resuming need
    assert corpus_fingerprint(corpus).endswith("|lid:langid:de")
    assert corpus_fingerprint(corpus) != corpus_fingerprint(LanguageFilter(load_corpus(str(mixed)), "en", lid))
    # the CLI refuses a group the identifier does not know before any model loads
    argv = ["record", "--model", "./no-model-needed", "--corpus", f"xx={mixed}", "--lid-filter", "langid"]
    assert main([*argv, "--output", str(tmp_path / "s.safetensors")]) == 2
    assert "xx" in capsys.readouterr().err
