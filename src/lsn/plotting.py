"""Pictures of neuron sets: neurons per layer per group, and the overlap between groups."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .neuron_set import NeuronSet  # noqa: E402

__all__ = ["plot_delta_matrix", "plot_layer_counts", "plot_neuron_set", "plot_nll_matrix", "plot_overlap"]


def plot_layer_counts(neuron_set: NeuronSet, path: str | os.PathLike, title: str | None = None) -> Path:
    """Line plot: selected neurons (y) in each layer (x), one line per group."""
    counts = neuron_set.counts_per_layer()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.25 * neuron_set.num_layers + 4), 4))
    layers = range(neuron_set.num_layers)
    if neuron_set.num_layers <= 12:  # few layers: grouped bars read best
        width = 0.8 / max(1, len(neuron_set))
        for k, group in enumerate(neuron_set.groups):
            ax.bar(
                [x + (k - (len(neuron_set) - 1) / 2) * width for x in layers], counts[k].tolist(), width, label=group
            )
    else:
        for k, group in enumerate(neuron_set.groups):
            ax.plot(layers, counts[k].tolist(), marker="o", markersize=3, label=group)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer")
    ax.set_ylabel("selected neurons")
    ax.set_title(title or f"{neuron_set.method or 'selected'} neurons per layer")
    ax.grid(alpha=0.3, axis="y")
    encoder_layers = int(neuron_set.model.get("num_encoder_layers") or 0)
    if encoder_layers:
        ax.axvline(encoder_layers - 0.5, color="grey", linestyle="--", label="encoder | decoder")
    ax.legend(ncol=min(4, len(neuron_set) + 1), fontsize="small")
    return _save(fig, path)


def plot_overlap(neuron_set: NeuronSet, path: str | os.PathLike, title: str | None = None) -> Path:
    """Heatmap of the intersection-over-union between every pair of groups."""
    iou = neuron_set.overlap()
    n = len(neuron_set)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * n, 0.8 + 0.6 * n))
    image = ax.imshow(iou.numpy(), vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(n), neuron_set.groups, rotation=45, ha="right")
    ax.set_yticks(range(n), neuron_set.groups)
    for i in range(n):
        for j in range(n):
            value = float(iou[i, j])
            ax.text(
                j, i, f"{value:.2f}", ha="center", va="center", fontsize=8, color="black" if value > 0.6 else "white"
            )
    ax.set_title(title or "neuron overlap (IoU)")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return _save(fig, path)


def plot_neuron_set(neuron_set: NeuronSet, directory: str | os.PathLike, prefix: str = "") -> list[Path]:
    """Both plots into `directory`; returns their paths."""
    directory = Path(directory)
    return [
        plot_layer_counts(neuron_set, directory / f"{prefix}neurons_per_layer.png"),
        plot_overlap(neuron_set, directory / f"{prefix}overlap.png"),
    ]


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_delta_matrix(
    matrix,
    path: str | os.PathLike,
    *,
    title: str,
    xlabel: str,
    colorbar_label: str,
    cmap: str = "RdBu_r",
    digits: int = 2,
) -> Path:
    """Heatmap of a deactivation matrix's change vs its baseline (`matrix.delta`, `.rows`, `.columns`, `.neurons`):
    rows the deactivated group (with its neuron count), columns what was measured."""
    delta = matrix.delta.numpy()
    limit = max(abs(float(delta.min())), abs(float(delta.max())), 1e-6) if delta.size else 1.0
    rows, cols = len(matrix.rows), len(matrix.columns)
    fig, ax = plt.subplots(figsize=(max(3.5, 1.6 + 0.7 * cols), 1.0 + 0.5 * rows))  # room for the labels
    image = ax.imshow(delta, cmap=cmap, vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(cols), matrix.columns, rotation=45, ha="right")
    ax.set_yticks(range(rows), [f"{r} ({matrix.neurons.get(r, 0)})" for r in matrix.rows])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("deactivated neurons (count)")
    for i in range(rows):
        for j in range(cols):
            color = "white" if abs(delta[i, j]) > 0.6 * limit else "black"
            ax.text(j, i, f"{delta[i, j]:+.{digits}f}", ha="center", va="center", fontsize=7, color=color)
    ax.set_title(title, wrap=True)  # within narrow figures
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=colorbar_label)
    return _save(fig, path)


def plot_nll_matrix(matrix, path: str | os.PathLike, title: str | None = None) -> Path:
    """Heatmap of the NLL change: rows the deactivated group, columns the evaluated group."""
    return plot_delta_matrix(
        matrix,
        path,
        title=title or "NLL change when deactivating each group's neurons",
        xlabel="evaluated language",
        colorbar_label="delta NLL (nats)",
    )
