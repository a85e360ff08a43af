"""Figures written by runs: the loss curve (train vs validation) and skill by lead."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # batch jobs have no display
import matplotlib.pyplot as plt  # noqa: E402


def plot_loss_curve(history: list[dict], path: str | Path) -> None:
    """Train and validation loss per epoch, best epoch marked (the overfitting picture)."""
    epochs = [h["epoch"] for h in history]
    train = [h["train_loss"] for h in history]
    val = [h["val_loss"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, train, "o-", label="train")
    ax.plot(epochs, val, "s-", label="validation")
    if val:
        best = min(range(len(val)), key=val.__getitem__)
        ax.axvline(epochs[best], color="grey", ls=":", label=f"best epoch ({epochs[best]})")
    ax.set(xlabel="epoch", ylabel="loss (normalized units)", title="Training history")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_skill_by_lead(scores: dict[str, dict[str, dict[str, float]]], path: str | Path) -> None:
    """One panel per metric, one line per predictor, lead on the x axis."""
    metric_names = list(next(iter(scores.values())))
    fig, axes = plt.subplots(
        1, len(metric_names), figsize=(4 * len(metric_names), 3.5), squeeze=False
    )
    for ax, metric in zip(axes[0], metric_names, strict=True):
        for predictor, by_metric in scores.items():
            leads = list(by_metric[metric])
            ax.plot(
                [int(k) for k in leads],
                [by_metric[metric][k] for k in leads],
                "o-",
                label=predictor,
            )
        ax.set(xlabel="lead (time steps)", title=metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
