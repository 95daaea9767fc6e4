"""Pretrain the demo's tiny Llama on the synthetic world's seven languages, and load it.

`python -m lsn.demo.pretrain --output src/lsn/demo/model` reproduces the checkpoint shipped in
the package (about 4 minutes on 2 CPU cores): a byte-level BPE tokenizer and a 4-layer Llama
trained from scratch with AdamW and a cosine schedule on `monolingual_corpus(lang, n, seed=0)`
of every language. Everything is seeded and the step count is fixed, so a rerun on the same
software gives the same weights. Held-out text for evaluation comes from another seed
(`heldout_texts`), so it is never seen in pretraining.

`load_demo_model()` loads the shipped checkpoint; where the package lacks it, it trains one
into the user cache (`~/.cache/lsn/demo-model`, or `$LSN_CACHE/demo-model`) once.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import shutil
import time
from pathlib import Path

import torch
import transformers
from tqdm.auto import tqdm

from ..corpora import iter_batches, open_corpus
from .tokenizer import train_tokenizer
from .world import LANGUAGES, monolingual_corpus

__all__ = [
    "DEMO_MODEL_DIR",
    "DEMO_TOP_RATE",
    "SETTINGS",
    "cache_dir",
    "demo_lape_neurons",
    "heldout_texts",
    "load_demo_model",
    "pretrain",
    "pretraining_texts",
]

logger = logging.getLogger("lsn.demo.pretrain")

DEMO_MODEL_DIR = Path(__file__).resolve().parent / "model"
PRETRAIN_SEED, HELDOUT_SEED = 0, 1
DEMO_TOP_RATE = 0.2  # LAPE top rate for this model (see the model card and tests/test_demo_model.py)

# Every knob of the shipped checkpoint; the model card records them.
SETTINGS: dict = {
    "docs_per_language": 5000,  # 64-170 tokens per document; capped to ~2.3M tokens in all (one epoch)
    "vocab_size": 2048,
    "seq_len": 128,
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "batch_size": 16,
    "steps": 1100,
    "warmup_steps": 50,
    "lr": 3e-3,
    "min_lr_ratio": 0.1,
    "weight_decay": 0.1,
    "grad_clip": 1.0,
    "seed": 0,
    "threads": 2,
}


def pretraining_texts(n_docs: int = SETTINGS["docs_per_language"]) -> dict[str, list[str]]:
    """The pretraining distribution: `monolingual_corpus(lang, n_docs, seed=0)` per language."""
    return {lang: monolingual_corpus(lang, n_docs, seed=PRETRAIN_SEED) for lang in LANGUAGES}


def heldout_texts(n_docs: int = 50) -> dict[str, list[str]]:
    """Held-out text of the same distribution (seed 1), never seen in pretraining."""
    return {lang: monolingual_corpus(lang, n_docs, seed=HELDOUT_SEED) for lang in LANGUAGES}


def demo_config(vocab_size: int, settings: dict = SETTINGS) -> transformers.LlamaConfig:
    return transformers.LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=settings["hidden_size"],
        intermediate_size=settings["intermediate_size"],
        num_hidden_layers=settings["num_hidden_layers"],
        num_attention_heads=settings["num_attention_heads"],
        num_key_value_heads=settings["num_key_value_heads"],
        max_position_embeddings=settings["seq_len"],
        tie_word_embeddings=True,
    )


def _windows(texts: list[str], tokenizer, seq_len: int) -> torch.Tensor:
    """Full `seq_len` windows of the packed texts, packed exactly as lsn packs text for recording."""
    batches = iter_batches(open_corpus("pretrain", texts), tokenizer=tokenizer, seq_len=seq_len, batch_size=1024)
    ids = torch.cat([b.inputs["input_ids"][b.inputs["attention_mask"].all(-1)] for b in batches])
    return ids


def _lr_factor(step: int, settings: dict) -> float:
    warmup, total, floor = settings["warmup_steps"], settings["steps"], settings["min_lr_ratio"]
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def pretrain(output: str | os.PathLike, settings: dict | None = None, progress: bool = True) -> dict:
    """Train tokenizer and model from scratch and save both (and a model card) into `output`.

    `settings` default to `SETTINGS`, the shipped checkpoint's; returns the run's figures.
    """
    settings = SETTINGS if settings is None else settings
    threads = torch.get_num_threads()
    torch.set_num_threads(settings["threads"])  # results depend on the thread count: fix it
    try:
        return _pretrain(Path(output), settings, progress)
    finally:
        torch.set_num_threads(threads)


def _pretrain(output: Path, settings: dict, progress: bool) -> dict:
    start = time.time()
    random.seed(settings["seed"])
    torch.manual_seed(settings["seed"])

    # ------------------------------------------------ data: tokenizer, then packed windows
    texts = pretraining_texts(settings["docs_per_language"])
    tokenizer = train_tokenizer([t for lang in LANGUAGES for t in texts[lang]], vocab_size=settings["vocab_size"])
    per_lang = {lang: _windows(texts[lang], tokenizer, settings["seq_len"]) for lang in LANGUAGES}
    cap = min(len(w) for w in per_lang.values())  # the same number of windows (tokens) per language
    data = torch.cat([w[:cap] for w in per_lang.values()])
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(settings["seed"]))
    logger.info(
        "data: %d languages x %d windows of %d tokens (%.2fM tokens); tokenizer %d tokens (%.0f s)",
        len(LANGUAGES),
        cap,
        settings["seq_len"],
        data.numel() / 1e6,
        len(tokenizer),
        time.time() - start,
    )

    # ------------------------------------------------ model and optimiser
    model = transformers.LlamaForCausalLM(demo_config(len(tokenizer), settings))
    model.config.bos_token_id, model.config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    decay = [p for p in model.parameters() if p.ndim >= 2]  # matrices decay; norms do not
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings["lr"],
        betas=(0.9, 0.95),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, settings))
    params = sum(p.numel() for p in model.parameters())
    logger.info(
        "model: %.2fM parameters; %d steps of %d x %d tokens",
        params / 1e6,
        settings["steps"],
        settings["batch_size"],
        settings["seq_len"],
    )

    # ------------------------------------------------ train
    model.train()
    losses: list[float] = []
    bar = tqdm(range(settings["steps"]), desc="pretrain", disable=not progress)
    train_start = time.time()
    for step in bar:
        idx = order[(torch.arange(settings["batch_size"]) + step * settings["batch_size"]) % len(order)]
        batch = data[idx]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings["grad_clip"])
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}")
    train_seconds = time.time() - train_start
    model.eval()

    # ------------------------------------------------ save
    final_loss = sum(losses[-50:]) / len(losses[-50:])
    info = {
        "parameters": params,
        "train_tokens": settings["steps"] * settings["batch_size"] * settings["seq_len"],
        "epochs": settings["steps"] * settings["batch_size"] / len(data),
        "final_loss": round(final_loss, 4),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.time() - start, 1),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output, safe_serialization=True)
    tokenizer.save_pretrained(output)
    _portable_tokenizer_config(output)
    for path in output.iterdir():
        path.chmod(0o644)  # safetensors writes 0600; shipped package files should be world-readable
    (output / "README.md").write_text(_model_card(settings, info), encoding="utf-8")
    logger.info(
        "saved to %s: final loss %.3f (mean of the last 50 steps), %.0f s training, %.0f s in all",
        output,
        final_loss,
        train_seconds,
        info["total_seconds"],
    )
    return info


def _portable_tokenizer_config(directory: Path) -> None:
    """Name the tokenizer class `PreTrainedTokenizerFast`, which transformers 4.x and 5.x both load."""
    path = directory / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _model_card(settings: dict, info: dict) -> str:
    s = settings
    return f"""---
library_name: transformers
license: apache-2.0
tags: [lsn, demo, tiny, synthetic]
language: [{", ".join(LANGUAGES)}]
---

# lsn demo model: a tiny multilingual Llama

A {info["parameters"] / 1e6:.2f}M-parameter Llama ({s["num_hidden_layers"]} layers, hidden size {s["hidden_size"]},
{s["intermediate_size"]} MLP neurons per layer, {s["num_attention_heads"]} heads / {s["num_key_value_heads"]} KV heads, tied embeddings,
vocabulary {s["vocab_size"]}, context {s["seq_len"]}) pretrained from scratch on the synthetic text of
`lsn.demo.world` in seven languages ({", ".join(LANGUAGES)}). It exists so that lsn's demo and
tests have a model with learned language-specific neurons, offline. It knows nothing outside
that small world; do not use it for anything else.

Language neurons: LAPE needs a larger `top_rate` on a model this small than the paper's 0.01;
with `top_rate={DEMO_TOP_RATE}` (each language then gets roughly 1-8% of the neurons), deactivating a
language's neurons raises that language's held-out NLL more than any other language's, and
more than deactivating as many random neurons (`tests/test_demo_model.py`; the full matrix is
in the `report.md` that `python -m lsn.demo` writes).

## How it was made

    python -m lsn.demo.pretrain --output src/lsn/demo/model

- Data: `monolingual_corpus(lang, {s["docs_per_language"]}, seed=0)` per language; a byte-level BPE tokenizer
  trained on that text (`lsn.demo.tokenizer.train_tokenizer`); each language packed into
  {s["seq_len"]}-token windows as lsn packs text for recording, and capped at the same number of windows.
  Held-out text (`lsn.demo.pretrain.heldout_texts`) uses seed 1.
- Training: {s["steps"]} steps of {s["batch_size"]} windows ({info["train_tokens"] / 1e6:.2f}M tokens, {info["epochs"]:.2f} epochs);
  AdamW (betas 0.9/0.95, weight decay {s["weight_decay"]} on matrices), peak lr {s["lr"]}, {s["warmup_steps"]} warmup
  steps, cosine decay to {s["min_lr_ratio"]} x peak, gradient clipping {s["grad_clip"]}; fp32, seed {s["seed"]},
  `torch.set_num_threads({s["threads"]})`. Deterministic: a rerun gives the same weights on the same software.
- Final training loss (mean of the last 50 steps): {info["final_loss"]:.3f} nats/token (ln {s["vocab_size"]} = {math.log(s["vocab_size"]):.2f}).
- Time: {info["train_seconds"]:.0f} s of training, {info["total_seconds"]:.0f} s in all, on 2 CPU cores
  (torch {info["torch"]}, transformers {info["transformers"]}).

Full settings:

```json
{json.dumps(settings, indent=2)}
```
"""


def _is_complete(path: Path) -> bool:
    return all((path / name).is_file() for name in ("config.json", "model.safetensors", "tokenizer.json"))


def cache_dir() -> Path:
    """Where lsn caches what it builds on first use: `$LSN_CACHE`, else `$XDG_CACHE_HOME/lsn` or `~/.cache/lsn`."""
    return Path(os.environ.get("LSN_CACHE", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lsn"))


def demo_lape_neurons() -> Path:
    """The demo model's LAPE neurons (`top_rate=DEMO_TOP_RATE`, 20k tokens per language), selected once and
    cached; what `neurons: lsn:demo-lape` in a recipe means."""
    from .. import record_activations, select_lape

    path = cache_dir() / f"demo-lape-{DEMO_TOP_RATE}"
    if not (path / "neurons.json").is_file():
        model, tokenizer = load_demo_model()
        stats = record_activations(
            model,
            pretraining_texts(400),
            tokenizer=tokenizer,
            seq_len=128,
            batch_size=16,
            max_tokens=20_000,
            progress=False,
        )
        select_lape(stats, top_rate=DEMO_TOP_RATE).save_pretrained(path)
    return path


def demo_model_path() -> Path:
    """The shipped checkpoint, or the cached one (trained on first use where the package lacks it)."""
    if _is_complete(DEMO_MODEL_DIR):
        return DEMO_MODEL_DIR
    cached = cache_dir() / "demo-model"
    if not _is_complete(cached):
        logger.warning("The demo model is not in the package; training it into %s (about 4 minutes).", cached)
        partial = cached.with_name(f"demo-model.partial-{os.getpid()}")
        pretrain(partial)
        shutil.rmtree(cached, ignore_errors=True)
        partial.rename(cached)  # complete or absent: an interrupted run leaves no half-written model
    return cached


def load_demo_model() -> tuple[transformers.PreTrainedModel, transformers.PreTrainedTokenizerBase]:
    """(model, tokenizer) of the demo's pretrained tiny Llama, in eval mode."""
    path = demo_model_path()
    model = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    return model, tokenizer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lsn.demo.pretrain", description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(DEMO_MODEL_DIR), help=f"where to save (default: {DEMO_MODEL_DIR})")
    parser.add_argument("--steps", type=int, default=SETTINGS["steps"], help="training steps (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    pretrain(args.output, {**SETTINGS, "steps": args.steps})


if __name__ == "__main__":
    main()
