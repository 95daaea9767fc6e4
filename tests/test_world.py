"""The synthetic multilingual world: determinism, scripts, parallelism, grammar, NLI/QA schemas, splits."""

import time
from collections import Counter

import pytest

from lsn.demo.world import (
    LANGUAGES,
    SCRIPTS,
    Meaning,
    monolingual_corpus,
    nli_items,
    parallel_corpus,
    qa_items,
    render,
    sample_meanings,
    splits,
)

_SCRIPT_RANGES = {
    "Latin": [(0x41, 0x24F)],
    "Cyrillic": [(0x400, 0x4FF)],
    "Devanagari": [(0x900, 0x97F)],
    "Arabic": [(0x600, 0x6FF)],
    "Han": [(0x4E00, 0x9FFF)],
}
_END = {"hi": "।", "zh": "。"}


def _in_script(char: str, script: str) -> bool:
    return any(lo <= ord(char) <= hi for lo, hi in _SCRIPT_RANGES[script])


def _all_text(lang: str) -> str:
    nli = nli_items(lang, 60, seed=3)
    qa = qa_items(lang, 60, seed=3)
    return " ".join(
        monolingual_corpus(lang, 40, seed=3)
        + [x["premise"] + x["hypothesis"] for x in nli]
        + [x["context"] + x["question"] for x in qa]
    )


def test_languages_and_scripts_are_declared():
    assert LANGUAGES == ("en", "de", "es", "ru", "hi", "ar", "zh")
    assert {SCRIPTS[lang] for lang in LANGUAGES} == {"Latin", "Cyrillic", "Devanagari", "Arabic", "Han"}


def test_same_seed_same_output_and_other_seed_other_output():
    assert sample_meanings(50, seed=1) == sample_meanings(50, seed=1)
    assert parallel_corpus(50, seed=1) == parallel_corpus(50, seed=1)
    assert parallel_corpus(50, seed=1) != parallel_corpus(50, seed=2)
    assert monolingual_corpus("ru", 20, seed=1) == monolingual_corpus("ru", 20, seed=1)
    assert monolingual_corpus("ru", 20, seed=1) != monolingual_corpus("ru", 20, seed=2)
    assert nli_items("de", 30, seed=1) == nli_items("de", 30, seed=1)
    assert nli_items("de", 30, seed=1) != nli_items("de", 30, seed=2)
    assert qa_items("hi", 30, seed=1) == qa_items("hi", 30, seed=1)
    assert qa_items("hi", 30, seed=1) != qa_items("hi", 30, seed=2)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_language_is_written_in_its_own_script(lang):
    letters = [c for c in _all_text(lang) if c.isalpha()]
    assert len(letters) > 5000
    script = SCRIPTS[lang]
    share = sum(_in_script(c, script) for c in letters) / len(letters)
    assert share >= (1.0 if script == "Latin" else 0.9), share
    if script != "Latin":  # and no Latin leaks in (untranslated words)
        assert not any(_in_script(c, "Latin") for c in letters)


def test_parallel_rows_have_every_language_and_render_is_a_function():
    rows = parallel_corpus(20, seed=0)
    assert len(rows) == 20
    meanings = sample_meanings(20, seed=0)
    for row, meaning in zip(rows, meanings, strict=True):
        assert set(row) == set(LANGUAGES)
        for lang in LANGUAGES:
            assert row[lang] == render(meaning, lang) == render(meaning, lang)
            assert row[lang].endswith(_END.get(lang, "."))
            assert row[lang] != row["en"] or lang == "en"
        assert " " not in row["zh"]
    assert parallel_corpus(5, seed=0, languages=["ru", "zh"]) == [{k: r[k] for k in ("ru", "zh")} for r in rows[:5]]
    with pytest.raises(ValueError):
        parallel_corpus(1, languages=["xx"])


def test_distinct_meanings_give_distinct_sentences():
    meanings = sample_meanings(1000, seed=0)
    for lang in LANGUAGES:
        sentences = {render(m, lang) for m in meanings}
        assert len(sentences) > 900, lang
    # Changing any one slot changes the sentence in every language (otherwise NLI labels would be invisible).
    seen = sample_meanings(4000, seed=5)
    base = Meaning("action", "anna", verb="see", obj="book", adj="red", place="park", time="morning")
    variants = {
        "agent": [Meaning("action", a, verb="see", obj="book") for a in {m.agent for m in seen}],
        "obj": [Meaning("action", "anna", verb="see", obj=o) for o in {m.obj for m in seen if m.obj}],
        "adj": [Meaning("action", "anna", verb="see", obj="book", adj=a) for a in {m.adj for m in seen if m.adj}],
        "place": [Meaning("located", "anna", place=p) for p in {m.place for m in seen if m.place}],
        "time": [Meaning("located", "anna", place="park", time=t) for t in {m.time for m in seen if m.time}],
        "count": [Meaning("have", "anna", obj="book", count=c) for c in range(1, 11)],
        "verb": [Meaning("action", "anna", verb=v, obj="ball") for v in ("see", "buy", "throw", "hide", "wash")],
        "negated": [
            base,
            Meaning("action", "anna", verb="see", obj="book", adj="red", place="park", time="morning", negated=True),
        ],
    }
    assert len(variants["agent"]) >= 15 + 8 and len(variants["obj"]) >= 40 and len(variants["adj"]) >= 15
    assert len(variants["place"]) >= 12
    for lang in LANGUAGES:
        for slot, group in variants.items():
            assert len({render(m, lang) for m in group}) == len(group), (lang, slot)


@pytest.mark.parametrize(
    "meaning, expected",
    [
        (
            Meaning("action", "anna", verb="read", obj="book", adj="red", place="park", time="morning"),
            {
                "en": "Anna reads the red book in the park in the morning.",
                "de": "Anna liest am Morgen das rote Buch im Park.",
                "es": "Ana lee el libro rojo en el parque por la mañana.",
                "ru": "Анна утром читает красную книгу в парке.",
                "hi": "अन्ना सुबह पार्क में लाल किताब पढ़ती है।",
                "ar": "آنا تقرأ الكتاب الأحمر في المتنزه في الصباح.",
                "zh": "安娜早上在公园读红色的书。",
            },
        ),
        (
            Meaning("action", "teacher", verb="feed", obj="dog", adj="black", negated=True),
            {
                "en": "The teacher does not feed the black dog.",
                "de": "Der Lehrer füttert den schwarzen Hund nicht.",
                "es": "El maestro no alimenta al perro negro.",
                "ru": "Учитель не кормит чёрную собаку.",
                "hi": "अध्यापक काले कुत्ते को नहीं खिलाता।",
                "ar": "المعلم لا يطعم الكلب الأسود.",
                "zh": "老师不喂黑色的狗。",
            },
        ),
        (
            Meaning("have", "omar", obj="apple", count=3),
            {
                "en": "Omar has three apples.",
                "de": "Omar hat drei Äpfel.",
                "es": "Omar tiene tres manzanas.",
                "ru": "У Омара есть три яблока.",
                "hi": "उमर के पास तीन सेब हैं।",
                "ar": "لدى عمر ثلاث تفاحات.",
                "zh": "奥马尔有三个苹果。",
            },
        ),
        (
            Meaning("located", "omar", partner="leila", place="school", negated=True),
            {
                "en": "Omar and Leila are not at school.",
                "de": "Omar und Leila sind nicht in der Schule.",
                "es": "Omar y Leila no están en la escuela.",
                "ru": "Омар и Лейла не в школе.",
                "hi": "उमर और लैला स्कूल में नहीं हैं।",
                "ar": "عمر وليلى ليسا في المدرسة.",
                "zh": "奥马尔和莱拉不在学校。",
            },
        ),
    ],
)
def test_grammar_of_reference_sentences(meaning, expected):
    assert {lang: render(meaning, lang) for lang in LANGUAGES} == expected


def test_russian_and_arabic_number_agreement():
    def have(n, obj="book"):
        return Meaning("have", "anna", obj=obj, count=n)

    assert [render(have(n), "ru") for n in (1, 2, 5)] == [
        "У Анны есть одна книга.",
        "У Анны есть две книги.",
        "У Анны есть пять книг.",
    ]
    assert [render(have(n), "ar") for n in (1, 2, 3)] == [
        "لدى آنا كتاب واحد.",
        "لدى آنا كتابان اثنان.",
        "لدى آنا ثلاثة كتب.",
    ]  # masculine noun: ثلاثة
    assert render(have(3, "apple"), "ar") == "لدى آنا ثلاث تفاحات."  # feminine noun: ثلاث


def test_invalid_meanings_are_rejected():
    with pytest.raises(ValueError):
        Meaning("action", "anna", verb="eat", obj="book")  # one does not eat books here
    with pytest.raises(ValueError):
        Meaning("have", "anna", obj="book", count=3, negated=True)
    with pytest.raises(ValueError):
        Meaning("located", "anna")  # no place
    with pytest.raises(ValueError):
        Meaning("have", "anna", obj="book", place="park")  # "have" takes no place
    with pytest.raises(ValueError):
        render(Meaning("located", "anna", place="park"), "fr")


def test_monolingual_corpus_is_large_fast_and_language_specific():
    start = time.perf_counter()
    docs = monolingual_corpus("en", 2000)
    assert time.perf_counter() - start < 2.0
    assert len(docs) == 2000 and sum(map(len, docs)) > 100_000
    assert all(doc.count(".") == 8 for doc in docs[:50])
    assert all(doc.count("。") == 3 and " " not in doc for doc in monolingual_corpus("zh", 20, sentences_per_doc=3))
    # Languages draw different meaning streams: the order of names in en and de text differs
    # (en and de spell every name alike, so parallel text would give identical sequences).
    names = {
        "Anna",
        "Maria",
        "Leila",
        "Sara",
        "Nina",
        "Elena",
        "Lina",
        "Mila",
        "Omar",
        "David",
        "Pablo",
        "Karim",
        "Tom",
        "Max",
        "Ravi",
        "Adam",
    }

    def name_sequence(lang):
        words = " ".join(monolingual_corpus(lang, 20)).replace(".", " ").split()
        return [w for w in words if w in names]

    assert name_sequence("en") and name_sequence("en") != name_sequence("de")


def test_nli_schema_balance_and_parallelism():
    items = {lang: nli_items(lang, 300, seed=0) for lang in LANGUAGES}
    for rows in items.values():
        assert len(rows) == 300
        for row in rows:
            assert set(row) == {"premise", "hypothesis", "label"}
            assert isinstance(row["premise"], str) and isinstance(row["hypothesis"], str) and row["premise"]
            assert row["label"] in (0, 1, 2)
            assert row["premise"] != row["hypothesis"]
        counts = Counter(row["label"] for row in rows)
        assert all(0.25 <= counts[label] / 300 <= 0.42 for label in (0, 1, 2)), counts
    labels = [row["label"] for row in items["en"]]
    for lang in LANGUAGES:
        assert [row["label"] for row in items[lang]] == labels
        assert sum(a["premise"] == b["premise"] for a, b in zip(items[lang], items["en"], strict=True)) == (
            300 if lang == "en" else 0
        )


def test_nli_negation_is_not_a_label_shortcut():
    rows = nli_items("en", 600, seed=1)

    def negated(text):
        return " not " in text or " no " in text

    by_label = Counter(row["label"] for row in rows if negated(row["hypothesis"]))
    assert all(by_label[label] >= 20 for label in (0, 1, 2)), by_label
    both_negated = Counter(row["label"] for row in rows if negated(row["premise"]) and negated(row["hypothesis"]))
    assert both_negated[0] >= 10, both_negated  # "not A" entails "not A at night"


def test_nli_entailed_positive_actions_only_drop_details():
    checked = 0
    for row in nli_items("en", 300, seed=2):
        p, h = row["premise"], row["hypothesis"]
        if row["label"] == 0 and not any(w in f" {h} " for w in (" not ", " no ", " is ", " are ", " has ")):
            assert set(h.rstrip(".").split()) <= set(p.replace(".", " ").split()), (p, h)
            checked += 1
    assert checked >= 10


@pytest.mark.parametrize("lang", LANGUAGES)
def test_qa_answers_are_exact_spans(lang):
    rows = qa_items(lang, 150, seed=0)
    assert len(rows) == 150
    for row in rows:
        assert set(row) == {"id", "context", "question", "answers"}
        (text,) = row["answers"]["text"]
        (start,) = row["answers"]["answer_start"]
        assert text and text in row["context"]
        assert row["context"][start : start + len(text)] == text
        assert row["question"].endswith({"ar": "؟", "zh": "？"}.get(lang, "?"))
        sentences = row["context"].count(_END.get(lang, "."))
        assert 3 <= sentences <= 5


def test_qa_is_parallel_and_covers_every_question_type():
    ids = [row["id"] for row in qa_items("en", 100, seed=4)]
    assert len(set(ids)) == 100
    for lang in LANGUAGES:
        assert [row["id"] for row in qa_items(lang, 100, seed=4)] == ids
    starts = Counter(
        " ".join(row["question"].split()[:2]) if row["question"].startswith("How") else row["question"].split()[0]
        for row in qa_items("en", 100, seed=4)
    )
    assert all(starts[word] == 20 for word in ("Who", "What", "Where", "When", "How many")), starts
    assert sum(starts.values()) == 100


def test_splits_are_disjoint_complete_deterministic_and_sized():
    items = list(range(1000))
    parts = splits(items, seed=0)
    assert set(parts) == {"train", "validation", "test"}
    assert [len(parts[k]) for k in ("train", "validation", "test")] == [800, 100, 100]
    assert sorted(parts["train"] + parts["validation"] + parts["test"]) == items
    assert parts == splits(items, seed=0) and parts != splits(items, seed=1)
    assert [len(v) for v in splits(list(range(10)), fractions=(0.5, 0.5, 0.0)).values()] == [5, 5, 0]
    # parallel lists split the same way
    en, zh = nli_items("en", 90, seed=0), nli_items("zh", 90, seed=0)
    assert [x["label"] for x in splits(en)["test"]] == [x["label"] for x in splits(zh)["test"]]
    with pytest.raises(ValueError):
        splits(items, fractions=(0.8, 0.3, 0.1))
