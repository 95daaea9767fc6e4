"""Shared fixtures: tiny config-built models of every supported family, tiny multilingual text."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

VOCAB = 128
_ATTN = dict(num_attention_heads=4, num_key_value_heads=2)

# family -> (config class, kwargs, auto class); hidden 32, 64 neurons, 2 layers (per stack).
TINY_CONFIGS = {
    "llama": (
        transformers.LlamaConfig,
        dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, **_ATTN),
        "causal",
    ),
    "mistral": (
        transformers.MistralConfig,
        dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, **_ATTN),
        "causal",
    ),
    "qwen2": (
        transformers.Qwen2Config,
        dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, **_ATTN),
        "causal",
    ),
    "gemma": (
        transformers.GemmaConfig,
        dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, head_dim=8, **_ATTN),
        "causal",
    ),
    "gemma2": (
        transformers.Gemma2Config,
        dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, head_dim=8, **_ATTN),
        "causal",
    ),
    "phi3": (
        transformers.Phi3Config,
        dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, pad_token_id=0, **_ATTN),
        "causal",
    ),
    "gpt2": (
        transformers.GPT2Config,
        dict(n_embd=32, n_inner=64, n_layer=2, n_head=4, n_positions=128, bos_token_id=1, eos_token_id=2),
        "causal",
    ),
    "opt": (
        transformers.OPTConfig,
        dict(
            hidden_size=32,
            ffn_dim=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            word_embed_proj_dim=32,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        ),
        "causal",
    ),
    "bloom": (
        transformers.BloomConfig,
        dict(hidden_size=16, n_layer=2, n_head=4, bos_token_id=1, eos_token_id=2, pad_token_id=0),
        "causal",
    ),
    "gpt_neox": (
        transformers.GPTNeoXConfig,
        dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            bos_token_id=1,
            eos_token_id=2,
        ),
        "causal",
    ),
    "m2m100": (
        transformers.M2M100Config,
        dict(
            d_model=32,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_layerdrop=0.0,
            decoder_layerdrop=0.0,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=2,
        ),
        "seq2seq",
    ),
    "marian": (
        transformers.MarianConfig,
        dict(
            d_model=32,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            pad_token_id=0,
            eos_token_id=2,
            decoder_start_token_id=0,
        ),
        "seq2seq",
    ),
}


def make_tiny_model(family: str, seed: int = 0, **overrides) -> transformers.PreTrainedModel:
    config_class, kwargs, kind = TINY_CONFIGS[family]
    config = config_class(**({"vocab_size": VOCAB} | kwargs | overrides))
    torch.manual_seed(seed)
    auto = transformers.AutoModelForSeq2SeqLM if kind == "seq2seq" else transformers.AutoModelForCausalLM
    return auto.from_config(config).eval()


def make_tiny_classifier(tokenizer, num_labels: int = 3, seed: int = 0) -> transformers.PreTrainedModel:
    """The tiny Llama with a sequence-classification head that pools the last real token (pad = the tokenizer's)."""
    config_class, kwargs, _ = TINY_CONFIGS["llama"]
    config = config_class(
        vocab_size=len(tokenizer), num_labels=num_labels, pad_token_id=tokenizer.pad_token_id, **kwargs
    )
    torch.manual_seed(seed)
    return transformers.AutoModelForSequenceClassification.from_config(config).eval()


def capture_outputs(model: torch.nn.Module, modules: list[torch.nn.Module], batch: dict) -> dict[int, torch.Tensor]:
    """`{i: output of modules[i]}` of one no-grad forward of `model` on `batch`, by hooks of the test's own."""
    seen: dict[int, torch.Tensor] = {}
    handles = [
        m.register_forward_hook(lambda mod, a, out, i=i: seen.__setitem__(i, out)) for i, m in enumerate(modules)
    ]
    try:
        with torch.no_grad():
            model(**batch)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def fixed_threshold(model: torch.nn.Module, seed: int = 0) -> torch.Tensor:
    """A deterministic per-neuron pre-activation threshold of the model's shape (for `threshold=`)."""
    from lsn.models import find_neuron_sites

    sites = find_neuron_sites(model)
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(sites), sites[0].num_neurons, generator=g) * 0.05


@pytest.fixture
def tiny_model():
    return make_tiny_model


def padded_batches(n_batches: int, seed: int, vocab: int = VOCAB, batch: int = 3, seq: int = 9):
    """Random batches with right padding of varied lengths (at least one real token per row)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        ids = torch.randint(3, vocab, (batch, seq), generator=g)
        lengths = torch.randint(1, seq + 1, (batch,), generator=g)
        lengths[0] = seq
        mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
        out.append({"input_ids": ids.masked_fill(mask == 0, 0), "attention_mask": mask})
    return out


def tiny_texts() -> dict[str, list[str]]:
    """Small parallel-world documents in every demo language (the text the tests use)."""
    from lsn.demo.world import LANGUAGES, monolingual_corpus

    return {lang: monolingual_corpus(lang, 12, seed=0, sentences_per_doc=4) for lang in LANGUAGES}


def tiny_tokenizer_for(texts: dict[str, list[str]]):
    from lsn.demo.tokenizer import train_tokenizer

    return train_tokenizer([t for group in texts.values() for t in group], vocab_size=VOCAB * 3)


@pytest.fixture(scope="session")
def multilingual_texts():
    return tiny_texts()


@pytest.fixture(scope="session")
def tiny_tokenizer(multilingual_texts):
    return tiny_tokenizer_for(multilingual_texts)
