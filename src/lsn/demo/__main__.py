"""`python -m lsn.demo` (`make demo`): the main job on the embedded default, offline.

Writes the synthetic multilingual world's text, trains a tokenizer on it, records the
activation statistics of a tiny Llama on every language, selects LAPE neurons, and writes the
summary, the neuron set (with its model card) and the plots into `--output`.

The tiny model here has random weights, so its "language neurons" reflect token statistics,
not learned language skill; the pretrained demo model replaces it when it lands.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
import transformers

from .. import record_activations, select_lape
from ..plotting import plot_neuron_set
from .tokenizer import train_tokenizer
from .world import LANGUAGES, monolingual_corpus

logger = logging.getLogger("lsn.demo")


def tiny_llama(vocab_size: int, seed: int = 0) -> transformers.LlamaForCausalLM:
    config = transformers.LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=256, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    )
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(config).eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lsn.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="demo-output", help="directory for every result (default: demo-output)")
    parser.add_argument("--docs", type=int, default=300, help="documents per language (default: 300)")
    parser.add_argument("--top-rate", type=float, default=0.05,
                        help="LAPE top rate; a tiny model needs more than the paper's 0.01 (default: 0.05)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- data
    texts = {lang: monolingual_corpus(lang, args.docs, seed=0) for lang in LANGUAGES}
    tokenizer = train_tokenizer([t for group in texts.values() for t in group], vocab_size=1024)
    logger.info("world: %d languages x %d documents; tokenizer of %d tokens", len(texts), args.docs, len(tokenizer))

    # ---------------------------------------------------------------- record
    model = tiny_llama(len(tokenizer))
    stats = record_activations(model, texts, tokenizer=tokenizer, seq_len=128, batch_size=8, record_sums=True)
    stats.save(out / "activation_stats.safetensors")
    print(stats.summary())

    # ---------------------------------------------------------------- select
    neurons = select_lape(stats, top_rate=args.top_rate)
    neurons.save_pretrained(out / "lape-neurons")
    print(neurons.summary())
    for path in plot_neuron_set(neurons, out):
        logger.info("wrote %s", path)


if __name__ == "__main__":
    main()
