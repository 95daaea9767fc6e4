"""`python -m lsn.demo.export` writes the world's text per language, exactly the demo's own corpora."""

from lsn.demo.export import main
from lsn.demo.pretrain import heldout_texts, pretraining_texts
from lsn.demo.world import LANGUAGES


def test_export_writes_the_demo_corpora(tmp_path, capsys):
    main([str(tmp_path), "--docs", "5"])
    for split, texts in (("pretraining", pretraining_texts(5)), ("heldout", heldout_texts(5))):
        for lang in LANGUAGES:
            lines = (tmp_path / split / f"{lang}.txt").read_text(encoding="utf-8").splitlines()
            assert lines == [doc.replace("\n", " ") for doc in texts[lang]]
    assert capsys.readouterr().out.count("wrote ") == 2 * len(LANGUAGES)
