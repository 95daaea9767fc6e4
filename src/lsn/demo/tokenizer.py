"""A byte-level BPE tokenizer trained from texts, wrapped as a transformers fast tokenizer.

Byte-level, so any script round-trips; a BOS token starts every text, as Llama's does.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

__all__ = ["SPECIAL_TOKENS", "train_tokenizer"]

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 2048,
    min_frequency: int = 2,
    *,
    add_bos: bool = True,
    add_eos: bool = False,
    extra_special_tokens: Iterable[str] = (),
) -> PreTrainedTokenizerFast:
    """Train on `texts`; deterministic for the same texts and settings.

    Decoder LMs want a BOS first (the default); seq2seq models want an EOS last
    (`add_bos=False, add_eos=True`). `extra_special_tokens` (e.g. `<2de>` language tags) are
    never split.
    """
    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS.values()) + list(extra_special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    bos, eos = SPECIAL_TOKENS["bos_token"], SPECIAL_TOKENS["eos_token"]
    single = " ".join([bos] * add_bos + ["$A"] + [eos] * add_eos)
    pair = " ".join([bos] * add_bos + ["$A"] + [eos] * add_eos + [bos] * add_bos + ["$B"] + [eos] * add_eos)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(t, tokenizer.token_to_id(t)) for t in (bos, eos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, **SPECIAL_TOKENS, additional_special_tokens=list(extra_special_tokens)
    )
