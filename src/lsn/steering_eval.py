"""How well a method forces the output language: a CLaS-Bench-style steering evaluation.

For each (source, target) pair, the source's prompts are continued under each method and
strength, and a language identifier decides whether each continuation is in the target
language (Gurgurov et al. 2025; CLaS-Bench 2026). Methods:

- `"neurons"`: Language Arithmetics with the given neurons (`lsn.steer`);
- `"random"`: the same on random neurons, as many per layer and group (seeded);
- `"diffmean"`: `alpha * unit(mean_target - mean_others)` added to the residual stream, with
  `alpha = strength * |mean_target - mean_others|` at `diffmean_layers` (needs `residual_means=`);
- `"prompt"`: an instruction naming the target language before the prompt (no intervention);
- `"none"`: always, once per pair (strength 0), the unmodified model.

Per row: `success` (share identified as the target), `fluency` (mean token NLL of the
continuations under the unmodified model), `distinct2` (distinct token bigrams / bigrams),
`n`; with `judge=`, `relevance` (0-2) and `score`, the harmonic mean of success and relevance / 2.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from tqdm.auto import tqdm

from .diffmean import ResidualMeans, add_direction, decoder_layers, diffmean_directions
from .language_id import LanguageIdentifier
from .models import first_device
from .neuron_set import NeuronSet
from .selection import random_neurons
from .stats import ActivationStats
from .steering import check_steering_pair, steer

logger = logging.getLogger(__name__)

__all__ = ["Method", "SteeringReport", "steering_eval"]

Method = Literal["neurons", "random", "diffmean", "prompt"]
METHODS = ("neurons", "random", "diffmean", "prompt")

LANGUAGE_NAMES = {
    "en": "English", "de": "German", "es": "Spanish", "fr": "French", "ru": "Russian", "zh": "Chinese",
    "hi": "Hindi", "ar": "Arabic", "ja": "Japanese", "ko": "Korean", "it": "Italian", "pt": "Portuguese",
    "nl": "Dutch", "tr": "Turkish", "vi": "Vietnamese", "id": "Indonesian", "pl": "Polish", "uk": "Ukrainian",
}  # fmt: skip
PROMPT_TEMPLATE = "Answer in {language}. {prompt}"


@dataclass
class SteeringReport:
    """One row per (method, strength, source, target); `generations` holds the continuations per row."""

    rows: list[dict]
    generations: list[list[str]] = field(default_factory=list, repr=False)
    config: dict = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(r["method"] for r in self.rows))

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return list(dict.fromkeys((r["source"], r["target"]) for r in self.rows))

    def best(self, method: str, metric: str = "success") -> dict[tuple[str, str], dict]:
        """Per pair, the row of `method` with the highest `metric` (ties: the lower strength)."""
        out = {}
        for r in self.rows:
            if r["method"] != method:
                continue
            key = (r["source"], r["target"])
            if key not in out or r[metric] > out[key][metric]:
                out[key] = r
        return out

    def summary(self, metric: str = "success") -> dict[str, float]:
        """Per method, the best-strength `metric` averaged over pairs."""
        return {m: sum(r[metric] for r in self.best(m, metric).values()) / len(self.pairs) for m in self.methods}

    def to_markdown(self, metric: str = "success") -> str:
        pairs = self.pairs
        head = "| method | " + " | ".join(f"{s}->{t}" for s, t in pairs) + " | mean | fluency (NLL) |"
        lines = [head, "|---" * (len(pairs) + 3) + "|"]
        summary = self.summary(metric)
        for m in self.methods:
            best = self.best(m, metric)
            cells = [
                f"{best[p][metric]:.2f}" + ("" if m in ("none", "prompt") else f" (x{best[p]['strength']:g})")
                for p in pairs
            ]
            fluency = [best[p]["fluency"] for p in pairs if not math.isnan(best[p]["fluency"])]
            mean_fluency = sum(fluency) / len(fluency) if fluency else float("nan")
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {summary[m]:.2f} | {mean_fluency:.2f} |")
        return "\n".join(lines)

    def save(self, directory: str | os.PathLike) -> list[Path]:
        """`steering.json` (rows, config, continuations), `steering.csv`, and two plots."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        payload = {"config": self.config, "rows": self.rows, "generations": self.generations}
        (out / "steering.json").write_text(json.dumps(payload, indent=1, ensure_ascii=False), encoding="utf-8")
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        with (out / "steering.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)
        return [out / "steering.json", out / "steering.csv", self._heatmap(out), self._strength_plot(out)]

    def _heatmap(self, out: Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        sources = list(dict.fromkeys(s for s, _ in self.pairs))
        targets = list(dict.fromkeys(t for _, t in self.pairs))
        methods = self.methods
        fig, axes = plt.subplots(1, len(methods), figsize=(2.2 + 1.0 * len(targets) * len(methods), 1.2 + len(sources)))
        axes = [axes] if len(methods) == 1 else list(axes)
        for ax, m in zip(axes, methods, strict=True):
            grid = torch.full((len(sources), len(targets)), float("nan"))
            for (s, t), r in self.best(m).items():
                grid[sources.index(s), targets.index(t)] = r["success"]
            ax.imshow(grid.numpy(), vmin=0, vmax=1, cmap="viridis")
            for i in range(len(sources)):
                for j in range(len(targets)):
                    if not math.isnan(grid[i, j]):
                        ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", color="w", fontsize=8)
            ax.set_xticks(range(len(targets)), targets)
            ax.set_yticks(range(len(sources)), sources)
            ax.set_title(m)
            ax.set_xlabel("target")
        axes[0].set_ylabel("source")
        fig.suptitle("language-forcing success (best strength)")
        fig.tight_layout()
        path = out / "steering_heatmap.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    def _strength_plot(self, out: Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
        for m in self.methods:
            strengths = sorted({r["strength"] for r in self.rows if r["method"] == m})
            rows = [[r for r in self.rows if r["method"] == m and r["strength"] == s] for s in strengths]
            success = [sum(r["success"] for r in rs) / len(rs) for rs in rows]
            fluency = [_nanmean([r["fluency"] for r in rs]) for rs in rows]
            style = "o--" if m == "none" else "o-"
            left.plot(strengths, success, style, label=m)
            right.plot(strengths, fluency, style, label=m)
        left.set(xlabel="strength", ylabel="success (mean over pairs)", ylim=(-0.02, 1.02))
        right.set(xlabel="strength", ylabel="continuation NLL (unmodified model)")
        left.legend()
        fig.tight_layout()
        path = out / "steering_strength.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def _nanmean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")


def _generate(model, tokenizer, prompts, batch_size, max_new_tokens, seed, generate_kwargs):
    """Left-padded batched generation; returns (full ids, prompt mask, new-token mask) per batch."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    device = first_device(model)
    kwargs = {"max_new_tokens": max_new_tokens, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    kwargs |= generate_kwargs
    out = []
    try:
        for start in range(0, len(prompts), batch_size):
            inputs = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True).to(device)
            torch.manual_seed(seed + start)
            with torch.inference_mode():
                ids = model.generate(**inputs, **kwargs)
            new = ids[:, inputs["input_ids"].shape[1] :]
            stop = {t for t in (tokenizer.eos_token_id, tokenizer.pad_token_id) if t is not None}
            ended = torch.zeros_like(new, dtype=torch.bool)
            for t in stop:
                ended |= new == t
            keep = ended.long().cumsum(-1) == 0  # up to the first EOS / pad
            out.append((ids, inputs["attention_mask"], keep))
    finally:
        tokenizer.padding_side = padding_side
    return out


def _fluency_and_texts(model, tokenizer, batches) -> tuple[float, float, list[str]]:
    """Continuation NLL under the (unmodified) model, distinct-2, and the decoded continuations."""
    total, count, bigrams, distinct, texts = 0.0, 0, 0, set(), []
    for ids, prompt_mask, keep in batches:
        mask = torch.cat([prompt_mask, keep.long()], 1)
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False).logits
        width = prompt_mask.shape[1]
        targets = ids[:, width:].masked_fill(~keep, -100)
        predicted = logits[:, width - 1 : -1].float()
        total += torch.nn.functional.cross_entropy(
            predicted.reshape(-1, predicted.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum"
        ).item()
        count += int(keep.sum())
        for row, k in zip(ids[:, width:], keep, strict=True):
            tokens = row[k].tolist()
            pairs = list(zip(tokens, tokens[1:], strict=False))
            bigrams += len(pairs)
            distinct.update(pairs)
            texts.append(tokenizer.decode(tokens, skip_special_tokens=True))
    fluency = total / count if count else float("nan")
    return fluency, (len(distinct) / bigrams if bigrams else 0.0), texts


def steering_eval(
    model: nn.Module,
    tokenizer,
    prompts: Mapping[str, Sequence[str]],
    *,
    neurons: NeuronSet,
    stats: ActivationStats,
    pairs: Sequence[tuple[str, str]] | None = None,
    strengths: Sequence[float] = (2.0, 4.0, 8.0),
    methods: Sequence[Method] = ("neurons", "random"),
    identifier: LanguageIdentifier | None = None,
    max_new_tokens: int = 32,
    batch_size: int = 32,
    residual_means: ResidualMeans | None = None,
    diffmean_layers: Sequence[int] | None = None,
    prompt_template: str = PROMPT_TEMPLATE,
    judge: Callable[[str, str], float] | None = None,
    seed: int = 0,
    progress: bool = True,
    **generate_kwargs,
) -> SteeringReport:
    """Steer each source's `prompts` to each target by each method and strength; see the module docstring.

    `pairs` defaults to every (source with prompts, other group of `neurons`). `identifier`
    defaults to `LanguageIdentifier("langid", languages=<every language of the pairs>)`.
    Every check (pairs, neurons, statistics, identifier, residual means) runs before any generation.
    """
    # ---------------------------------------------------------------- check everything first
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown methods {unknown}; choose from {METHODS} ('none' is always included).")
    if pairs is None:
        pairs = [(s, t) for s in prompts for t in neurons.groups if t != s]
    pairs = [tuple(p) for p in pairs]
    for source, target in pairs:
        if not prompts.get(source):
            raise ValueError(f"Pair {source}->{target}: no prompts for `{source}` (prompts for {list(prompts)}).")
        if "neurons" in methods or "random" in methods:
            check_steering_pair(neurons, source, target, stats)
    languages = list(dict.fromkeys(lang for pair in pairs for lang in pair))
    if identifier is None:
        identifier = LanguageIdentifier("langid", languages=languages)
    elif identifier.languages is not None:
        missing = [lang for lang in languages if lang not in identifier.languages]
        if missing:
            raise ValueError(
                f"The identifier cannot answer {missing} (it is restricted to {identifier.languages}); "
                "add them to its `languages`."
            )
    if "diffmean" in methods:
        if residual_means is None:
            raise ValueError("`methods` has 'diffmean': pass `residual_means=lsn.record_residual_means(...)`.")
        missing = [t for _, t in pairs if t not in residual_means.groups]
        if missing:
            raise ValueError(f"The residual means have no groups {sorted(set(missing))}.")
        num_layers = len(decoder_layers(model))
        diffmean_layers = list(diffmean_layers) if diffmean_layers is not None else [num_layers // 2]
    if "prompt" in methods:
        missing = [t for _, t in pairs if t not in LANGUAGE_NAMES and "{language}" in prompt_template]
        if missing:
            logger.warning("No language names for %s; the prompt names their codes.", sorted(set(missing)))
    control = random_neurons(neurons, seed=seed) if "random" in methods else None

    # ---------------------------------------------------------------- the conditions
    def steered(method, strength, source, target):
        if method == "neurons":
            return steer(model, neurons, source=source, target=target, stats=stats, strength=strength)
        if method == "random":
            return steer(model, control, source=source, target=target, stats=stats, strength=strength)
        if method == "diffmean":
            raw = diffmean_directions(residual_means, target, diffmean_layers, normalize=False)
            units = {layer: d / d.norm().clamp_min(1e-12) for layer, d in raw.items()}
            scaled = {layer: units[layer] * float(raw[layer].norm()) for layer in units}  # alpha = s * |diff|
            return add_direction(model, scaled, strength)
        return contextlib.nullcontext()

    conditions = [("none", 0.0, s, t) for s, t in pairs]
    conditions += [("prompt", 0.0, s, t) for s, t in pairs if "prompt" in methods]
    conditions += [(m, float(x), s, t) for m in methods if m != "prompt" for x in strengths for s, t in pairs]
    rows, generations, cache = [], [], {}
    was_training = model.training
    model.eval()
    try:
        for method, strength, source, target in tqdm(conditions, desc="steering", disable=not progress):
            texts = list(prompts[source])
            if method == "prompt":
                name = LANGUAGE_NAMES.get(target, target)
                texts = [prompt_template.format(language=name, prompt=p) for p in texts]
            key = ("none", source) if method == "none" else None  # "none" does not depend on the target
            if key in cache:
                fluency, distinct2, continuations = cache[key]
            else:
                with steered(method, strength, source, target):
                    batches = _generate(model, tokenizer, texts, batch_size, max_new_tokens, seed, generate_kwargs)
                fluency, distinct2, continuations = _fluency_and_texts(model, tokenizer, batches)
                if key is not None:
                    cache[key] = (fluency, distinct2, continuations)
            predicted = identifier.predict(continuations)
            row = {
                "method": method,
                "strength": strength,
                "source": source,
                "target": target,
                "success": sum(p == target for p in predicted) / len(predicted),
                "source_kept": sum(p == source for p in predicted) / len(predicted),
                "fluency": fluency,
                "distinct2": distinct2,
                "n": len(predicted),
            }
            if judge is not None:
                relevance = sum(judge(p, c) for p, c in zip(prompts[source], continuations, strict=True))
                row["relevance"] = relevance / len(continuations)
                a, b = row["success"], row["relevance"] / 2
                row["score"] = 2 * a * b / (a + b) if a + b > 0 else 0.0
            rows.append(row)
            generations.append(continuations)
    finally:
        model.train(was_training)
    config = {
        "pairs": [list(p) for p in pairs],
        "strengths": list(strengths),
        "methods": ["none", *methods],
        "identifier": repr(identifier),
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        "diffmean_layers": diffmean_layers if "diffmean" in methods else None,
        "neurons_method": neurons.method,
        "generate_kwargs": {k: v for k, v in generate_kwargs.items() if isinstance(v, (int, float, str, bool))},
    }
    return SteeringReport(rows, generations, config)
