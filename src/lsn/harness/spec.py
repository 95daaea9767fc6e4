"""lsn's own `model_args` keys for the `lsn` lm-eval model: parsed and checked before anything loads.

`parse_lsn_args` splits a `model_args` dict into lsn's keys (checked: unknown keys, groups not in
the neuron set, a missing neuron directory, a mode without its value, conflicting steering keys)
and the rest, which go to lm-eval's `hf` model unchanged. `attach` is the one place the harness
touches `lsn.apply_intervention`.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torch import nn

from ..intervention import EFFECTS, Effect, Intervention, apply_intervention, neuron_values
from ..neuron_set import NeuronSet
from ..stats import ActivationStats
from ..steering import steering_interventions

__all__ = ["LSN_KEYS", "LsnArgs", "attach", "check_known_keys", "parse_lsn_args"]

logger = logging.getLogger("lsn.harness")

LSN_KEYS: dict[str, str] = {
    "neurons": "a NeuronSet directory, neurons.json file or hub id (`lsn:demo-lape` for the demo model's)",
    "groups": "the set's groups to intervene on, joined by `+` (e.g. `groups=hi+ur`); default: all, as their union",
    "mode": f"the intervention effect, one of {', '.join(EFFECTS)} (default: zero)",
    "value": "the number `set` / `scale` / `add` use",
    "stats": "ActivationStats (.safetensors, with sums): per-neuron values for `mode=set` / `add`, or steering",
    "target": "the group of `stats` whose statistic `mode=set` sets (or `mode=add` adds)",
    "statistic": "`mean` (default) or `quantile`: which recorded statistic `stats` supplies",
    "steer_source": "steering: the group whose neurons are deactivated",
    "steer_target": "steering: the group whose neurons get `strength * (mean_target - mean_others)` added",
    "strength": "steering strength (default 1.0)",
}

# `from_pretrained` keywords lm-eval's `hf` model forwards through its **kwargs, besides its named parameters.
FROM_PRETRAINED_KEYS = (
    "attn_implementation",
    "device_map",
    "low_cpu_mem_usage",
    "load_in_4bit",
    "load_in_8bit",
    "bnb_4bit_compute_dtype",
    "bnb_4bit_quant_type",
    "bnb_4bit_use_double_quant",
    "cache_dir",
    "local_files_only",
    "token",
    "use_safetensors",
    "variant",
    "max_memory",
    "offload_state_dict",
    "force_download",
    "key_mapping",
    "use_kernels",
)


@dataclass
class LsnArgs:
    """lsn's part of `model_args`, resolved: what `attach` applies to the loaded model."""

    neurons: NeuronSet | None = None
    groups: list[str] | None = None
    mode: Effect | None = None
    value: float | None = None
    stats: ActivationStats | None = None
    target: str | None = None
    statistic: Literal["mean", "quantile"] = "mean"
    steer_source: str | None = None
    steer_target: str | None = None
    strength: float = 1.0

    @property
    def active(self) -> bool:
        return self.neurons is not None


def check_known_keys(keys: Iterable[str], hf_keys: Iterable[str]) -> None:
    """Refuse keys that neither lsn nor lm-eval's `hf` model (nor `from_pretrained`) takes."""
    known = set(LSN_KEYS) | set(hf_keys) | set(FROM_PRETRAINED_KEYS)
    unknown = sorted(set(keys) - known)
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hints.append(f"`{key}`" + (f" (did you mean `{close[0]}`?)" if close else ""))
        raise ValueError(
            f"Unknown `model_args` key(s) for model `lsn`: {', '.join(hints)}. lsn's keys: {', '.join(LSN_KEYS)}; "
            "every other key is one of lm-eval's `hf` model arguments or a `from_pretrained` keyword."
        )


def _load_neurons(source: str) -> NeuronSet:
    if source == "lsn:demo-lape":
        from ..demo.pretrain import demo_lape_neurons

        source = str(demo_lape_neurons())
    path = Path(source).expanduser()
    looks_local = path.is_absolute() or source.startswith((".", "~")) or source.count("/") != 1
    if not path.exists() and looks_local:
        raise ValueError(
            f"`neurons={source}`: no such directory or file. Pass a directory written by `lsn select --output` "
            "(it holds neurons.json), a neurons.json file, or a hub id `owner/name`."
        )
    try:
        return NeuronSet.from_pretrained(path if path.exists() else source)
    except (OSError, ValueError) as err:
        raise ValueError(f"`neurons={source}`: {err}") from err


def _groups(value, neuron_set: NeuronSet, key: str = "groups") -> list[str]:
    names = value if isinstance(value, (list, tuple)) else str(value).replace(";", "+").split("+")
    names = [str(n).strip() for n in names if str(n).strip()]
    missing = [n for n in names if n not in neuron_set]
    if missing or not names:
        raise ValueError(
            f"`{key}={value}`: group(s) {missing or names} not in the neuron set, whose groups are "
            f"{'+'.join(neuron_set.groups)}. Join several with `+`, e.g. `{key}={'+'.join(neuron_set.groups[:2])}`."
        )
    return names


def _number(args: Mapping, key: str) -> float | None:
    if args.get(key) is None:
        return None
    try:
        return float(args[key])
    except (TypeError, ValueError):
        raise ValueError(f"`{key}={args[key]}` must be a number.") from None


def _load_stats(source, neuron_set: NeuronSet, needs: str) -> ActivationStats:
    if source is None:
        raise ValueError(f"{needs} needs `stats=` (ActivationStats saved by `lsn record --sums`, a .safetensors file).")
    if not Path(str(source)).expanduser().is_file():
        raise ValueError(f"`stats={source}`: no such file; pass the .safetensors file `lsn record --output` wrote.")
    stats = ActivationStats.load(Path(str(source)).expanduser())
    if (stats.num_layers, stats.num_neurons) != (neuron_set.num_layers, neuron_set.num_neurons):
        raise ValueError(
            f"`stats={source}` covers {stats.num_layers} x {stats.num_neurons} neurons, the neuron set "
            f"{neuron_set.num_layers} x {neuron_set.num_neurons}: record statistics on the same model."
        )
    return stats


def _stats_group(stats: ActivationStats, value, key: str) -> str:
    if value is None or str(value) not in stats.groups:
        raise ValueError(f"`{key}={value}`: choose a group of the statistics ({'+'.join(stats.groups)}).")
    return str(value)


def parse_lsn_args(model_args: Mapping) -> tuple[LsnArgs, dict]:
    """(lsn's keys resolved and checked, the remaining keys for lm-eval's `hf` model).

    Loads only the small files named (neuron set, statistics); raises `ValueError` naming the
    key and the fix for anything inconsistent, so no model or task loads first.
    """
    args = {k: v for k, v in model_args.items() if k in LSN_KEYS and v is not None}
    rest = {k: v for k, v in model_args.items() if k not in LSN_KEYS}
    if not args:
        return LsnArgs(), rest
    if "neurons" not in args:
        raise ValueError(f"`model_args` keys {sorted(args)} act on neurons: add `neurons=` ({LSN_KEYS['neurons']}).")
    neuron_set = _load_neurons(str(args["neurons"]))
    statistic = args.get("statistic", "mean")
    if statistic not in ("mean", "quantile"):
        raise ValueError(f"`statistic={statistic}`: choose `mean` or `quantile`.")
    value = _number(args, "value")

    steering = [k for k in ("steer_source", "steer_target", "strength") if k in args]
    if steering:
        clash = [k for k in ("groups", "mode", "value", "target") if k in args]
        if clash:
            raise ValueError(
                f"Steering keys {steering} choose their own neurons and effect; drop {clash} "
                "(or drop the steering keys and use `groups`/`mode`)."
            )
        if "steer_source" not in args or "steer_target" not in args:
            raise ValueError("Steering needs both `steer_source=` (deactivated) and `steer_target=` (steered to).")
        source = _groups([args["steer_source"]], neuron_set, "steer_source")[0]
        target = _groups([args["steer_target"]], neuron_set, "steer_target")[0]
        stats = _load_stats(args.get("stats"), neuron_set, "Steering")
        _stats_group(stats, target, "steer_target")
        if len(stats.groups) < 2:
            raise ValueError(f"`stats={args['stats']}` holds one group; steering subtracts the other groups' mean.")
        if statistic == "mean" and stats.sums is None:
            raise ValueError(f"`stats={args['stats']}` holds no activation sums; record with `lsn record --sums`.")
        strength = _number(args, "strength")
        return LsnArgs(
            neurons=neuron_set,
            stats=stats,
            statistic=statistic,
            steer_source=source,
            steer_target=target,
            strength=1.0 if strength is None else strength,
        ), rest

    mode = args.get("mode", "zero")
    if mode not in EFFECTS:
        raise ValueError(f"`mode={mode}`: choose one of {', '.join(EFFECTS)}.")
    groups = _groups(args["groups"], neuron_set) if "groups" in args else None
    stats, target = None, None
    if mode == "zero" and value is not None:
        raise ValueError("`mode=zero` takes no `value`; use `mode=set` to set a constant.")
    if mode in ("set", "add") and "stats" in args:
        stats = _load_stats(args.get("stats"), neuron_set, f"`mode={mode}`")
        target = _stats_group(stats, args.get("target"), "target")
        if statistic == "mean" and stats.sums is None:
            raise ValueError(f"`stats={args['stats']}` holds no activation sums; record with `lsn record --sums`.")
        if value is not None:
            raise ValueError(f"`mode={mode}` with `stats=` takes its values from the statistics; drop `value`.")
    elif mode in ("set", "scale", "add") and value is None:
        raise ValueError(f"`mode={mode}` needs `value=` (a number), e.g. `mode={mode},value=2`.")
    elif "stats" in args or "target" in args:
        raise ValueError(f"`mode={mode}` uses no statistics; drop `stats`/`target` (they serve `mode=set`/`add`).")
    return LsnArgs(
        neurons=neuron_set, groups=groups, mode=mode, value=value, stats=stats, target=target, statistic=statistic
    ), rest


def attach(model: nn.Module, spec: LsnArgs) -> list[Intervention]:
    """Attach `spec`'s intervention to `model` until each returned `Intervention.remove()`.

    Steering is two interventions: deactivate `steer_source`'s neurons, then add
    `strength * (mean_target - mean_others)` on `steer_target`'s neurons.
    """
    if not spec.active:
        return []
    if spec.steer_target is not None:  # Language Arithmetics, as `lsn.steer`
        return steering_interventions(
            model,
            spec.neurons,
            source=spec.steer_source,
            target=spec.steer_target,
            stats=spec.stats,
            strength=spec.strength,
            statistic=spec.statistic,
        )
    value = spec.value
    if spec.stats is not None:
        value = neuron_values(spec.stats, spec.target, statistic=spec.statistic)
    return [apply_intervention(model, spec.neurons, spec.mode or "zero", value, groups=spec.groups)]


def describe(spec: LsnArgs) -> str:
    """One line for logs: what the `lsn` model does to the neurons."""
    if not spec.active:
        return "no intervention"
    if spec.steer_target is not None:
        return f"steer {spec.steer_source} -> {spec.steer_target} (strength {spec.strength})"
    groups = "+".join(spec.groups) if spec.groups else "all groups"
    return f"{spec.mode} on {groups}" + (f" (value {spec.value})" if spec.value is not None else "")


def is_local_path(value: str | os.PathLike) -> bool:
    """Whether `value` names a local path rather than a hub id `owner/name`."""
    text = str(value)
    return Path(text).expanduser().exists() or Path(text).is_absolute() or text.startswith((".", "~"))
