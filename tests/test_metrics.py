"""Metrics against hand-computed values, directly and through the local `evaluate` modules."""

import pytest

from lsn import metrics
from lsn.metrics import accuracy, exact_match, f1_score, normalize_answer, qa_scores, tokens


@pytest.mark.parametrize(
    "text, lang, expected",
    [
        ("The  Cat, sat!", None, "cat sat"),
        ("An apple a day", "en", "apple day"),
        ("The theatre", "de", "the theatre"),  # no English articles outside English
        ("«¿Dónde está?»", "es", "dónde está"),  # Unicode punctuation goes
        ("Кто-то, «там».", "ru", "кто то там"),
        ("猫在公园里。", "zh", "猫在公园里"),
        ("डेविड ने कहा।", "hi", "डेविड ने कहा"),
    ],
)
def test_normalize(text, lang, expected):
    assert normalize_answer(text, lang) == expected


def test_tokens_of_unspaced_scripts_are_characters():
    assert tokens("猫在 park 里", "zh") == ["猫", "在", "park", "里"]
    assert tokens("東京タワー", "ja") == ["東", "京", "タ", "ワ", "ー"]
    assert tokens("the big park", "en") == ["big", "park"]


def test_exact_match_and_f1_by_hand():
    assert exact_match("the Library.", "library") == 1.0
    assert exact_match("in the library", "library") == 0.0
    # pred "in library" (2 tokens) vs ref "library": common 1, P = 1/2, R = 1 -> F1 = 2/3
    assert f1_score("in the library", "the library") == pytest.approx(2 / 3)
    # zh chars: pred 在公园 (3) vs ref 公园里 (3): common 2 -> P = R = 2/3
    assert f1_score("在公园", "公园里", "zh") == pytest.approx(2 / 3)
    # without the character rule the zh strings share no whitespace token
    assert f1_score("在公园", "公园里", "en") == 0.0
    assert f1_score("", "") == 1.0 and f1_score("x", "") == 0.0
    scores = qa_scores(["library", "in park"], [["the library", "a room"], ["park"]])
    # item 1: EM 1, F1 1; item 2: EM 0, F1 = 2 * (1/2 * 1) / (1/2 + 1) = 2/3
    assert scores == pytest.approx({"exact_match": 50.0, "f1": 100 * (1 + 2 / 3) / 2})


def test_accuracy_by_hand():
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    with pytest.raises(ValueError, match="3 predictions for 2 references"):
        accuracy([0, 1, 2], [0, 1])


def test_local_evaluate_modules_load_offline_and_agree():
    squad = metrics.load("squad")
    got = squad.compute(predictions=["在公园", "library"], references=[["公园里"], ["the library"]], lang="zh")
    assert got == pytest.approx(qa_scores(["在公园", "library"], [["公园里"], ["the library"]], "zh"))
    assert metrics.load("accuracy").compute(predictions=[1, 0, 2], references=[1, 1, 2]) == {
        "accuracy": pytest.approx(2 / 3)
    }
    with pytest.raises(ValueError, match="No local metric `bleu`"):
        metrics.load("bleu")
