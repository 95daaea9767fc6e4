"""Language identification: which language a text is in, as the user's group codes.

Steering is judged by the share of generations a language identifier assigns to the target
(DESIGN.md §8). Backends name languages in their own way: `langid` (offline, from PyPI) uses
ISO 639-1 (`de`); fastText's lid.176 `__label__de`; GlotLID and NLLB's lid218e
`__label__deu_Latn`. `LanguageIdentifier` maps every backend label to the codes the user's
groups use (ISO 639-1 <-> 639-3, with the script where the user's code has one; `label_map=`
overrides), and restricts predictions to `languages`, so a 7-language experiment is a
7-way decision. Problems (an unknown language, a missing model file) raise at construction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

__all__ = ["Backend", "LanguageFilter", "LanguageIdentifier", "filter_by_language", "normalize_language_code"]

Backend = Literal["langid", "fasttext"]

# ISO 639-3 (and the individual languages fastText / NLLB / GlotLID name for a macrolanguage) -> ISO 639-1.
_ISO3_TO_ISO1: dict[str, str] = {
    "afr": "af", "amh": "am", "arg": "an", "ara": "ar", "arb": "ar", "asm": "as", "aze": "az", "azj": "az",
    "bel": "be", "bul": "bg", "ben": "bn", "bre": "br", "bos": "bs", "cat": "ca", "ces": "cs", "cym": "cy",
    "dan": "da", "deu": "de", "dzo": "dz", "ell": "el", "eng": "en", "epo": "eo", "spa": "es", "est": "et",
    "ekk": "et", "eus": "eu", "fas": "fa", "pes": "fa", "fin": "fi", "fao": "fo", "fra": "fr", "fry": "fy",
    "gle": "ga", "gla": "gd", "glg": "gl", "guj": "gu", "hau": "ha", "heb": "he", "hin": "hi", "hrv": "hr",
    "hat": "ht", "hun": "hu", "hye": "hy", "ind": "id", "ibo": "ig", "isl": "is", "ita": "it", "jpn": "ja",
    "jav": "jv", "kat": "ka", "kaz": "kk", "khm": "km", "kan": "kn", "kor": "ko", "kur": "ku", "kmr": "ku",
    "kir": "ky", "lat": "la", "ltz": "lb", "lao": "lo", "lit": "lt", "lav": "lv", "lvs": "lv", "mlg": "mg",
    "plt": "mg", "mkd": "mk", "mal": "ml", "mon": "mn", "khk": "mn", "mar": "mr", "msa": "ms", "zsm": "ms",
    "mlt": "mt", "mya": "my", "nob": "nb", "nep": "ne", "npi": "ne", "nld": "nl", "nno": "nn", "nor": "no",
    "oci": "oc", "ori": "or", "ory": "or", "pan": "pa", "pol": "pl", "pus": "ps", "pbt": "ps", "por": "pt",
    "que": "qu", "quy": "qu", "ron": "ro", "rus": "ru", "kin": "rw", "san": "sa", "sme": "se", "sin": "si",
    "slk": "sk", "slv": "sl", "som": "so", "sqi": "sq", "als": "sq", "srp": "sr", "swe": "sv", "swa": "sw",
    "swh": "sw", "tam": "ta", "tel": "te", "tgk": "tg", "tha": "th", "tuk": "tk", "tgl": "tl", "tur": "tr",
    "tat": "tt", "uig": "ug", "ukr": "uk", "urd": "ur", "uzb": "uz", "uzn": "uz", "vie": "vi", "vol": "vo",
    "wln": "wa", "xho": "xh", "yid": "yi", "ydd": "yi", "yor": "yo", "zho": "zh", "cmn": "zh", "zul": "zu",
}  # fmt: skip


def normalize_language_code(label: str) -> tuple[str, str | None]:
    """`(language, script)` of a label: `__label__deu_Latn` -> `("de", "Latn")`, `de` -> `("de", None)`.

    Three-letter codes with an ISO 639-1 equivalent become that code, so labels of every backend
    and the user's codes meet on one key; others stay as given (lower case).
    """
    code = label.removeprefix("__label__").strip().replace("-", "_")
    language, _, script = code.partition("_")
    language = language.lower()
    language = _ISO3_TO_ISO1.get(language, language)
    return language, (script.title() if script else None)


def _match(label: str, codes: Sequence[str]) -> str | None:
    """The user's code a backend label stands for: same language, and the same script where the
    user's code names one (a script-exact code wins over a bare one)."""
    language, script = normalize_language_code(label)
    best = None
    for code in codes:
        lang, scr = normalize_language_code(code)
        if lang != language:
            continue
        if scr is not None and scr == script:
            return code
        if scr is None and best is None:
            best = code
    return best


def _load_fasttext(path: Path):
    try:
        import fasttext
    except ImportError as err:
        raise ImportError(
            "The fastText backend needs the `fasttext` package: `pip install 'lsn[fasttext]'` (fasttext-wheel)."
        ) from err
    return fasttext.load_model(str(path))


class LanguageIdentifier:
    """Identify the language of texts, answering in the user's codes.

    Args:
        backend (`"langid"` | `"fasttext"`, *optional*, defaults to `"langid"`): `langid` is offline and
            needs no download (97 languages, ISO 639-1); `fasttext` loads a user-supplied model file
            (lid.176, GlotLID, NLLB's lid218e).
        languages (`Sequence[str]`, *optional*): the only answers allowed (the user's group codes,
            e.g. `["en", "de"]` or `["deu_Latn"]`); every one must be known to the backend.
            Without it, answers are the backend's labels without `__label__`.
        model_path (`str`, *optional*): the fastText model file (`.bin` / `.ftz`).
        label_map (`Mapping[str, str]`, *optional*): backend label -> user code, overriding the
            built-in mapping (e.g. `{"__label__yue_Hani": "zh"}`).
    """

    def __init__(
        self,
        backend: Backend = "langid",
        languages: Sequence[str] | None = None,
        model_path: str | Path | None = None,
        label_map: Mapping[str, str] | None = None,
    ):
        if backend not in ("langid", "fasttext"):
            raise ValueError(f"Unknown `backend={backend!r}`; choose 'langid' or 'fasttext'.")
        if backend == "langid" and model_path is not None:
            raise ValueError("`model_path` is for the fastText backend; `langid` ships its own model.")
        self.backend = backend
        self.languages = list(languages) if languages is not None else None
        overrides = {k.removeprefix("__label__"): v for k, v in (label_map or {}).items()}
        if backend == "fasttext":
            if model_path is None:
                raise ValueError(
                    "The fastText backend needs `model_path=`, e.g. lid.176.bin from "
                    "https://fasttext.cc/docs/en/language-identification.html, GlotLID or NLLB's lid218e."
                )
            path = Path(model_path)
            if not path.is_file():
                raise FileNotFoundError(f"No fastText model at `{path}`; download one, or use `backend='langid'`.")
            self._model = _load_fasttext(path)
            labels = [label.removeprefix("__label__") for label in self._model.get_labels()]
        else:
            from langid.langid import LanguageIdentifier as _Langid
            from langid.langid import model

            self._model = _Langid.from_modelstring(model, norm_probs=False)
            labels = list(self._model.nb_classes)
        self.labels = labels  # the backend's labels, without `__label__`
        if self.languages is None:
            self.mapping = {label: overrides.get(label, label) for label in labels}
            return
        self.mapping = {}
        for label in labels:
            code = overrides[label] if label in overrides else _match(label, self.languages)
            if code in self.languages:
                self.mapping[label] = code
        unknown = [code for code in self.languages if code not in self.mapping.values()]
        if unknown:
            raise ValueError(
                f"The {backend} backend knows no language matching {unknown} (its labels look like "
                f"{labels[:5]}); use ISO 639-1 or 639-3 codes, or map its labels with `label_map=`."
            )
        if backend == "langid":
            self._model.set_languages(sorted(self.mapping))

    def predict(self, texts: str | Iterable[str]) -> list[str]:
        """One code per text (`""` for a blank text, which no language should be credited with)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = [""] * len(texts)
        todo = [i for i, t in enumerate(texts) if t.strip()]
        if self.backend == "langid":
            for i in todo:
                out[i] = self.mapping[self._model.classify(texts[i])[0]]
            return out
        lines = [" ".join(texts[i].split()) for i in todo]  # fastText reads one line per text
        k = 1 if self.languages is None else -1  # restricted: the best label among the allowed ones
        ranked, _ = self._model.predict(lines, k=k) if lines else ([], [])
        for i, labels in zip(todo, ranked, strict=True):
            allowed = (self.mapping.get(label.removeprefix("__label__")) for label in labels)
            out[i] = next((code for code in allowed if code is not None), "")
        return out

    def __repr__(self) -> str:
        return f"LanguageIdentifier({self.backend!r}, languages={self.languages})"


class LanguageFilter:
    """A corpus of texts with those not identified as `language` left out, read lazily in chunks.

    Re-iterable when `texts` is (a file or hub corpus from `lsn.corpora.load_corpus`), so recording can stream,
    resume and fingerprint it; `kept` / `seen` count the last pass. Users of the LAPE reference found Wikipedia
    dumps mixed with English: this keeps a group's recording corpus to its own language.
    """

    def __init__(self, texts: Iterable[str], language: str, identifier: LanguageIdentifier, chunk: int = 256):
        self.texts, self.language, self.identifier, self.chunk = texts, language, identifier, chunk
        self.kept = self.seen = 0

    def __iter__(self) -> Iterator[str]:
        self.kept = self.seen = 0
        batch: list[str] = []
        for text in self.texts:
            batch.append(text)
            if len(batch) == self.chunk:
                yield from self._keep(batch)
                batch = []
        yield from self._keep(batch)
        logger.info("`%s`: kept %d of %d texts identified as `%s`.", self.language, self.kept, self.seen, self.language)

    def _keep(self, batch: list[str]) -> list[str]:
        kept = [t for t, code in zip(batch, self.identifier.predict(batch), strict=True) if code == self.language]
        self.seen += len(batch)
        self.kept += len(kept)
        return kept

    @property
    def description(self) -> str:
        from .corpora import describe_corpus

        return f"{describe_corpus(self.texts)} (identified as {self.language} by {self.identifier.backend})"

    def fingerprint(self) -> str:
        from .corpora import corpus_fingerprint

        return f"{corpus_fingerprint(self.texts)}|lid:{self.identifier.backend}:{self.language}"


def filter_by_language(texts: Iterable[str], language: str, identifier: LanguageIdentifier) -> list[str]:
    """The texts identified as `language`, as a list (`LanguageFilter` streams them)."""
    return list(LanguageFilter(texts, language, identifier))
