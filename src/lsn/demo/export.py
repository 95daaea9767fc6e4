"""`python -m lsn.demo.export DIR`: the demo world's text, one file per language, for the command line.

The demo model knows nothing outside its synthetic world: sentences of your own get an NLL worse than uniform and
meaningless deltas. These files hold text it can read, for `lsn record` / `lsn nll-matrix` / `lsn steer-eval`:

    python -m lsn.demo.export world/
    lsn record --model lsn:demo --corpus en=world/pretraining/en.txt --corpus de=world/pretraining/de.txt \\
        --seq-len 128 --record-sums --output stats.safetensors
    lsn nll-matrix --model lsn:demo --neurons lsn-demo-neurons/ --corpus en=world/heldout/en.txt ... --seq-len 128
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .pretrain import heldout_texts, pretraining_texts

__all__ = ["export_texts", "main"]


def export_texts(directory: str | Path, docs: int = 200) -> list[Path]:
    """`DIR/pretraining/{lang}.txt` (the pretraining distribution) and `DIR/heldout/{lang}.txt` (another seed,
    never seen in pretraining), `docs` documents each, one per line."""
    written = []
    for split, texts in (("pretraining", pretraining_texts(docs)), ("heldout", heldout_texts(docs))):
        folder = Path(directory) / split
        folder.mkdir(parents=True, exist_ok=True)
        for lang, documents in texts.items():
            path = folder / f"{lang}.txt"
            path.write_text("".join(doc.replace("\n", " ") + "\n" for doc in documents), encoding="utf-8")
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lsn.demo.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", help="where to write pretraining/{lang}.txt and heldout/{lang}.txt")
    parser.add_argument("--docs", type=int, default=200, help="documents per language and split (default: 200)")
    args = parser.parse_args(argv)
    if args.docs < 1:
        parser.error("--docs must be positive")
    for path in export_texts(args.directory, args.docs):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
