"""Parallel data for translation directions, and how a pair becomes model inputs.

Sources: FLORES (`openlanguagedata/flores_plus`, one hub config per language, aligned by `id`),
local files (`.jsonl` with `source`/`target`, or `.tsv` with two columns), or in-memory pairs.
Formats:
- `"codes"`: NLLB / M2M100 tokenizers with `src_lang`/`tgt_lang` language codes;
- `"tag"`: any seq2seq tokenizer; a target-language tag token such as `<2de>` starts the source;
- `"prompt"`: decoder LLMs; an instruction prompt, loss on the target tokens only.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from transformers import DataCollatorForSeq2Seq

__all__ = [
    "FLORES_CODES",
    "NLLB_CODES",
    "TASK_KEY",
    "TaskCollator",
    "TranslationFormat",
    "load_flores",
    "load_parallel_file",
    "parse_direction",
]

# ISO 639-1 -> FLORES+ config (ISO 639-3 + script); extend by passing `codes=`.
FLORES_CODES = {
    "en": "eng_Latn",
    "de": "deu_Latn",
    "fr": "fra_Latn",
    "es": "spa_Latn",
    "it": "ita_Latn",
    "pt": "por_Latn",
    "nl": "nld_Latn",
    "ru": "rus_Cyrl",
    "uk": "ukr_Cyrl",
    "cs": "ces_Latn",
    "pl": "pol_Latn",
    "ro": "ron_Latn",
    "hi": "hin_Deva",
    "bn": "ben_Beng",
    "mr": "mar_Deva",
    "ar": "arb_Arab",
    "he": "heb_Hebr",
    "zh": "cmn_Hans",
    "ja": "jpn_Jpan",
    "ko": "kor_Hang",
    "vi": "vie_Latn",
    "id": "ind_Latn",
    "tr": "tur_Latn",
    "fa": "pes_Arab",
    "sw": "swh_Latn",
    "ur": "urd_Arab",
    "ta": "tam_Taml",
    "th": "tha_Thai",
    "el": "ell_Grek",
}

# NLLB's language codes are FLORES-200's; FLORES+ renamed a few (Chinese: cmn_Hans), so they differ there.
NLLB_CODES = FLORES_CODES | {"zh": "zho_Hans"}

LANGUAGE_NAMES = {
    "en": "English",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "ru": "Russian",
    "uk": "Ukrainian",
    "cs": "Czech",
    "pl": "Polish",
    "ro": "Romanian",
    "hi": "Hindi",
    "bn": "Bengali",
    "mr": "Marathi",
    "ar": "Arabic",
    "he": "Hebrew",
    "zh": "Chinese",
    "ja": "Japanese",
    "ko": "Korean",
    "vi": "Vietnamese",
    "id": "Indonesian",
    "tr": "Turkish",
    "fa": "Persian",
    "sw": "Swahili",
    "ur": "Urdu",
    "ta": "Tamil",
    "th": "Thai",
    "el": "Greek",
}

Pair = tuple[str, str]
TASK_KEY = "task_id"  # the direction index carried by training rows and batches


def parse_direction(direction: str) -> tuple[str, str]:
    """`"en-de"` -> `("en", "de")`."""
    source, sep, target = direction.partition("-")
    if not sep or not source or not target or "-" in target:
        raise ValueError(f"A direction is written `SRC-TGT` (e.g. `en-de`), got {direction!r}.")
    return source, target


def load_flores(
    directions: Iterable[str],
    split: str = "devtest",
    *,
    codes: Mapping[str, str] | None = None,
    name: str = "openlanguagedata/flores_plus",
    limit: int | None = None,
) -> dict[str, list[Pair]]:
    """FLORES+ sentence pairs per direction (sentences aligned by their `id`)."""
    import datasets

    codes = {**FLORES_CODES, **(codes or {})}
    cache: dict[str, dict[int, str]] = {}

    def sentences(lang: str) -> dict[int, str]:
        if lang not in cache:
            if lang not in codes:
                raise ValueError(f"No FLORES code for `{lang}`; pass `codes={{'{lang}': 'xxx_Scrp'}}`.")
            rows = datasets.load_dataset(name, codes[lang], split=split)
            cache[lang] = {int(r["id"]): r["text"] for r in rows}
        return cache[lang]

    out = {}
    for direction in directions:
        src, tgt = parse_direction(direction)
        s, t = sentences(src), sentences(tgt)
        ids = sorted(set(s) & set(t))[:limit]
        out[direction] = [(s[i], t[i]) for i in ids]
    return out


def load_parallel_file(path: str | Path, limit: int | None = None) -> list[Pair]:
    """Pairs from a `.jsonl` file (`source`, `target` fields) or a `.tsv` file (two columns)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No parallel file at `{path}`.")
    pairs: list[Pair] = []
    with path.open(encoding="utf-8") as f:
        if path.suffix == ".jsonl":
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                        pairs.append((row["source"], row["target"]))
                    except (json.JSONDecodeError, KeyError) as err:
                        raise ValueError(
                            f'`{path}` line {n}: expected {{"source": ..., "target": ...}} ({err!r}).'
                        ) from err
        elif path.suffix == ".tsv":
            for n, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
                if len(row) != 2:
                    raise ValueError(f"`{path}` line {n}: expected 2 tab-separated columns, got {len(row)}.")
                pairs.append((row[0], row[1]))
        else:
            raise ValueError(f"`{path}`: parallel files are .jsonl (source/target) or .tsv (two columns).")
    return pairs[:limit]


@dataclass
class TranslationFormat:
    """How a (source, target) pair of a direction becomes model inputs.

    Args:
        style (`str`): `"codes"` (NLLB/M2M100 tokenizers), `"tag"` (a `<2xx>` tag token starts the
            source) or `"prompt"` (decoder LLMs).
        codes (`dict`, *optional*): language -> tokenizer code for `"codes"` (e.g. `{"de": "deu_Latn"}`).
            By default M2M100 tokenizers take the ISO code itself (`"de"`) and others NLLB's
            (`"deu_Latn"`, `"zho_Hans"`); a code the tokenizer does not know is an error.
        max_length (`int`, *optional*, defaults to 128): truncation length of each side.
    """

    style: Literal["codes", "tag", "prompt"]
    codes: dict[str, str] = field(default_factory=dict)
    max_length: int = 128

    def __post_init__(self) -> None:
        if self.style not in ("codes", "tag", "prompt"):
            raise ValueError(f"`style` must be 'codes', 'tag' or 'prompt', got {self.style!r}.")
        self.codes = dict(self.codes)

    def language_code(self, tokenizer, lang: str) -> str:
        """The tokenizer's code for `lang` (`"codes"` style), checked against its vocabulary."""
        return self._code_and_id(tokenizer, lang)[0]

    def _code_and_id(self, tokenizer, lang: str) -> tuple[str, int]:
        """(`src_lang`/`tgt_lang` value, id of its token): NLLB's token is the code itself, M2M100's wraps it."""
        m2m100 = hasattr(tokenizer, "get_lang_token")  # M2M100: src_lang="de", token "__de__"
        code = self.codes.get(lang) or (lang if m2m100 else NLLB_CODES.get(lang))
        if code is None:
            raise ValueError(f"No language code for `{lang}`; pass `codes={{'{lang}': ...}}` to TranslationFormat.")
        token = tokenizer.get_lang_token(code) if m2m100 else code
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id in (None, tokenizer.unk_token_id):
            raise ValueError(
                f"{type(tokenizer).__name__} has no language code `{token}` for `{lang}`; pass the right one "
                f"with `codes={{'{lang}': ...}}` to TranslationFormat."
            )
        return code, token_id

    @staticmethod
    def tag(lang: str) -> str:
        return f"<2{lang}>"

    def prompt(self, direction: str, source: str) -> str:
        src, tgt = parse_direction(direction)
        src_name, tgt_name = LANGUAGE_NAMES.get(src, src), LANGUAGE_NAMES.get(tgt, tgt)
        return f"Translate from {src_name} to {tgt_name}.\n{src_name}: {source}\n{tgt_name}:"

    def encode(self, tokenizer, direction: str, pairs: Sequence[Pair]) -> list[dict[str, list[int]]]:
        """Teacher-forcing features (`input_ids`, `attention_mask`, `labels`) for each pair."""
        src, tgt = parse_direction(direction)
        sources, targets = [p[0] for p in pairs], [p[1] for p in pairs]
        if self.style == "prompt":
            features = []
            for source, target in zip(sources, targets, strict=True):
                prompt = tokenizer(self.prompt(direction, source), truncation=True, max_length=self.max_length)[
                    "input_ids"
                ]
                answer = tokenizer(" " + target, add_special_tokens=False, truncation=True, max_length=self.max_length)[
                    "input_ids"
                ] + [tokenizer.eos_token_id]
                ids = prompt + answer
                features.append(
                    {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [-100] * len(prompt) + answer}
                )
            return features
        if self.style == "codes":
            tokenizer.src_lang = self.language_code(tokenizer, src)
            tokenizer.tgt_lang = self.language_code(tokenizer, tgt)
            enc = tokenizer(sources, text_target=targets, truncation=True, max_length=self.max_length)
        else:
            enc = tokenizer(
                [f"{self.tag(tgt)} {s}" for s in sources],
                text_target=targets,
                truncation=True,
                max_length=self.max_length,
            )
        return [
            {"input_ids": i, "attention_mask": m, "labels": lab}
            for i, m, lab in zip(enc["input_ids"], enc["attention_mask"], enc["labels"], strict=True)
        ]

    def generation_inputs(
        self, tokenizer, direction: str, sources: Sequence[str]
    ) -> tuple[dict[str, torch.Tensor], dict]:
        """Padded inputs and extra `generate` kwargs for translating `sources`."""
        src, tgt = parse_direction(direction)
        if self.style == "prompt":
            side, tokenizer.padding_side = tokenizer.padding_side, "left"
            try:
                enc = tokenizer(
                    [self.prompt(direction, s) for s in sources],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                )
            finally:
                tokenizer.padding_side = side
            return dict(enc), {}
        if self.style == "codes":
            tokenizer.src_lang = self.language_code(tokenizer, src)
            enc = tokenizer(
                list(sources), return_tensors="pt", padding=True, truncation=True, max_length=self.max_length
            )
            return dict(enc), {"forced_bos_token_id": self._code_and_id(tokenizer, tgt)[1]}
        enc = tokenizer(
            [f"{self.tag(tgt)} {s}" for s in sources],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.max_length,
        )
        return dict(enc), {}

    def decode(self, tokenizer, generated: torch.Tensor, inputs: dict[str, torch.Tensor]) -> list[str]:
        """Detokenised hypotheses (decoder LLMs: the new tokens up to the first line break)."""
        if self.style == "prompt":
            generated = generated[:, inputs["input_ids"].shape[1] :]
            texts = tokenizer.batch_decode(generated, skip_special_tokens=True)
            return [t.strip().split("\n")[0].strip() for t in texts]
        rows = generated.tolist()
        if self.style == "codes" and hasattr(tokenizer, "lang_token_to_id"):  # M2M100's codes are not special tokens
            codes = set(tokenizer.lang_token_to_id.values())
            rows = [[t for t in row if t not in codes] for row in rows]
        return [t.strip() for t in tokenizer.batch_decode(rows, skip_special_tokens=True)]


class TaskCollator:
    """Pads like `DataCollatorForSeq2Seq` and carries the batch's single `task_id`."""

    def __init__(self, tokenizer, model=None):
        self.pad = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100, padding=True)

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        tasks = {f.get(TASK_KEY) for f in features}
        batch = self.pad([{k: v for k, v in f.items() if k != TASK_KEY} for f in features])
        if len(tasks) == 1 and None not in tasks:
            batch[TASK_KEY] = torch.full((len(features),), tasks.pop(), dtype=torch.long)
        return batch
