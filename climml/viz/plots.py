"""Line and matrix figures: loss curve, skill by lead, ROC curve, reliability diagram,
confusion matrix, rank histogram and power spectrum.

Every function returns a ``matplotlib.figure.Figure`` (see ``climml.viz.style`` for how it
behaves in notebooks and batch jobs) and saves it when given ``path=``. The numbers come from
``climml.metrics``; these functions only draw them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import cycle
from pathlib import Path

import numpy as np
from jax.typing import ArrayLike
from matplotlib.figure import Figure

from climml import metrics
from climml.errors import DataError, expected
from climml.viz import style

# metrics whose values are in the units of the forecast variable (the others are unitless)
# in the variable's units; spread (members' std) and skill (RMSE of their mean) too, not their ratio
UNIT_METRICS = ("rmse", "mae", "bias", "mse", "crps", "spread", "skill")


def plot_loss_curve(history: Sequence[Mapping], *, path: str | Path | None = None) -> Figure:
    """Train and validation loss per epoch, best epoch marked (the overfitting picture).

    ``history``: one dict per epoch with ``epoch``, ``train_loss`` and ``val_loss``.
    """
    epochs = [int(h["epoch"]) for h in history]
    train = [h["train_loss"] for h in history]
    val = [h["val_loss"] for h in history]
    fig = style.new_figure((6.0, 4.0))
    ax = fig.subplots()
    ax.plot(epochs, train, "o-", label="train")
    ax.plot(epochs, val, "s-", label="validation")
    if val:
        best = min(range(len(val)), key=val.__getitem__)
        ax.axvline(epochs[best], color="grey", ls=":", label=f"best epoch ({epochs[best]})")
    ax.set(xlabel="epoch", ylabel="loss (normalized units)", title="Training history")
    style.integer_ticks(ax.xaxis)
    ax.grid(alpha=0.3)
    ax.legend()
    return style.finish(fig, path)


def plot_skill_by_lead(
    scores: Mapping[str, Mapping[str, Mapping[str, float]]],
    *,
    lead_unit: str = "time steps",
    units: str | None = None,
    path: str | Path | None = None,
) -> Figure:
    """One panel per metric, one line per predictor, lead on the x axis (integer ticks).

    ``scores``: ``{predictor: {metric: {lead: value}}}`` as ``metrics.json`` holds them.
    ``lead_unit`` names one lead step (``style.time_step_unit`` of the time axis, e.g.
    ``"months"``); ``units`` are those of the forecast variable, put on the axes of the
    metrics measured in them (RMSE, MAE, bias, CRPS).
    """
    if not scores:
        raise DataError(expected("scores", "at least one predictor", "{}"))
    metric_names = list(next(iter(scores.values())))
    fig = style.new_figure((4.0 * len(metric_names), 3.6))
    axes = fig.subplots(1, len(metric_names), squeeze=False)[0]
    for ax, metric in zip(axes, metric_names, strict=True):
        all_leads = set()
        series = zip(scores.items(), cycle(style.LINE_STYLES), strict=False)
        for (predictor, by_metric), fmt in series:
            leads = sorted(by_metric[metric], key=float)
            all_leads.update(int(k) for k in leads)
            values = [by_metric[metric][k] for k in leads]
            ax.plot([int(k) for k in leads], values, fmt, label=predictor)
        in_units = metric.split("@")[0] in UNIT_METRICS
        ax.set(xlabel=style.lead_label(lead_unit), title=metric)
        ax.set_ylabel(style.label(metric, units if in_units else None))
        style.integer_ticks(ax.xaxis, sorted(all_leads))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return style.finish(fig, path)


def plot_roc(
    scores: ArrayLike | Mapping[str, ArrayLike],
    labels: ArrayLike,
    *,
    event: str = "",
    weights: ArrayLike | None = None,
    path: str | Path | None = None,
) -> Figure:
    """ROC curve (POD against POFD over all thresholds) with the AUC in the legend.

    ``scores``: one array of forecast scores (probabilities or any ranking value) or a mapping
    ``{name: scores}`` to compare forecasts; ``labels``: 0/1 outcomes of the same shape. NaN
    scores or labels are left out. ``event`` names the event in the title (``"rain >= 1 mm/h"``).
    """
    fig = style.new_figure((4.8, 4.6))
    ax = fig.subplots()
    named = _named(scores, "forecast")
    for (name, s), fmt in zip(named.items(), cycle(style.DASHES), strict=False):
        fpr, tpr, _ = metrics.roc_curve(s, labels, weights=weights)
        auc = float(metrics.roc_auc(s, labels, weights=weights))
        ax.plot(np.asarray(fpr), np.asarray(tpr), fmt, label=f"{name} (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", ls=":", label="no skill (AUC = 0.5)")
    ax.set(
        xlabel="false positive rate (POFD)",
        ylabel="true positive rate (POD)",
        title=f"ROC curve: {event}" if event else "ROC curve",
        xlim=(0, 1),
        ylim=(0, 1.01),
        aspect="equal",
    )
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(alpha=0.3)
    return style.finish(fig, path)


def reliability(
    probability: ArrayLike, labels: ArrayLike, *, bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points of a reliability diagram: per probability bin, the mean forecast probability,
    the observed event frequency and the number of forecasts (NaN where a bin is empty).

    Computed with ``metrics.roc_histogram``: its counts of positives and negatives per bin give
    the frequency, and the same histogram weighted by the probabilities gives their bin sums.
    """
    counts = metrics.roc_histogram(probability, labels, bins=bins)
    sums = metrics.roc_histogram(probability, labels, bins=bins, weights=probability)
    n = np.asarray(counts.positives + counts.negatives, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):  # empty bins: NaN, not plotted
        mean_forecast = np.asarray(sums.positives + sums.negatives, np.float64) / n
        frequency = np.asarray(counts.positives, np.float64) / n
    return mean_forecast, frequency, n


def plot_reliability(
    probability: ArrayLike | Mapping[str, ArrayLike],
    labels: ArrayLike,
    *,
    bins: int = 10,
    event: str = "",
    path: str | Path | None = None,
) -> Figure:
    """Reliability diagram (observed frequency against forecast probability, with the Brier
    score in the legend) above the sharpness histogram (forecasts per probability bin).

    ``probability``: event probabilities in [0, 1] (or ``{name: probabilities}``); ``labels``:
    0/1 outcomes of the same shape. Points on the diagonal are perfectly calibrated; below it
    the forecast is over-confident in the event.
    """
    fig = style.new_figure((4.8, 6.0))
    ax, hist = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    centres = (np.arange(bins) + 0.5) / bins
    named = _named(probability, "forecast")
    for (name, p), fmt in zip(named.items(), cycle(style.LINE_STYLES), strict=False):
        mean_forecast, frequency, n = reliability(p, labels, bins=bins)
        brier = float(metrics.brier_score(p, labels))
        ax.plot(mean_forecast, frequency, fmt, label=f"{name} (Brier = {brier:.3f})")
        hist.step(centres, n, where="mid", label=name)
    ax.plot([0, 1], [0, 1], color="grey", ls=":", label="perfectly reliable")
    climate = float(np.nanmean(np.asarray(labels, np.float64)))
    ax.axhline(climate, color="grey", lw=0.8, ls="--", label=f"climatology ({climate:.2f})")
    ax.set(
        ylabel="observed frequency",
        title=f"Reliability diagram: {event}" if event else "Reliability diagram",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(alpha=0.3)
    hist.set(xlabel="forecast probability", ylabel="forecasts per bin")
    hist.grid(alpha=0.3)
    return style.finish(fig, path)


def plot_confusion_matrix(
    matrix: ArrayLike,
    *,
    class_names: Sequence[str] | None = None,
    normalize: bool = True,
    title: str = "Confusion matrix",
    path: str | Path | None = None,
) -> Figure:
    """Heat map of a ``(K, K)`` confusion matrix (rows: true class, columns: predicted), as
    ``metrics.confusion_matrix`` returns it, every cell annotated.

    ``normalize``: show each row as fractions of its true class (the diagonal is then the
    recall of each class), else the counts.
    """
    counts = np.asarray(matrix, np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise DataError(expected("matrix", "a (K, K) confusion matrix", counts.shape))
    k = counts.shape[0]
    names = [str(c) for c in range(k)] if class_names is None else list(class_names)
    if len(names) != k:
        raise DataError(expected("class_names", f"{k} names", len(names)))
    if normalize:
        with np.errstate(invalid="ignore"):  # a class absent from the truth: a NaN row
            values = counts / counts.sum(axis=1, keepdims=True)
        bar_label, fmt, vmax = "fraction of the true class", "{:.2f}", 1.0
    else:
        values, bar_label, fmt, vmax = counts, "count", "{:.0f}", None
    fig = style.new_figure((1.6 + 1.1 * k, 1.2 + 1.0 * k))
    ax = fig.subplots()
    image = ax.imshow(values, cmap=style.SEQUENTIAL_CMAP, vmin=0, vmax=vmax)
    fig.colorbar(image, ax=ax, shrink=0.8).set_label(bar_label)
    top = vmax if vmax is not None else np.nanmax(values, initial=0)
    threshold = top / 2  # white text on the darker half of the colour scale
    for (i, j), v in np.ndenumerate(values):
        color = "white" if v > threshold else "black"
        ax.text(j, i, fmt.format(v), ha="center", va="center", color=color, fontsize="small")
    ax.set_xticks(range(k), names, rotation=30, ha="right")
    ax.set_yticks(range(k), names)
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    return style.finish(fig, path)


def plot_rank_histogram(
    ensemble: ArrayLike,
    observed: ArrayLike,
    *,
    ensemble_axis: int = -1,
    min_value: float | None = None,
    name: str = "ensemble",
    path: str | Path | None = None,
) -> Figure:
    """Rank (Talagrand) histogram: flat for a calibrated ensemble, U-shaped when it is
    under-dispersive, domed when over-dispersive, sloped when biased.

    ``ensemble``: members along ``ensemble_axis`` (the convention of ``metrics.crps_ensemble``);
    ``observed``: the same shape without that axis. Counts are ``metrics.rank_histogram``'s
    over all points (ties shared evenly among the tied ranks; ``min_value``, e.g. 0.1 mm/h,
    makes values below it equal and leaves out points dry in every member and observation).
    """
    histogram = metrics.rank_histogram(
        ensemble, observed, ensemble_axis=ensemble_axis, min_value=min_value
    )
    return plot_rank_counts(histogram.counts, name=name, path=path)


def plot_rank_counts(
    counts: ArrayLike, *, name: str = "ensemble", path: str | Path | None = None
) -> Figure:
    """``plot_rank_histogram`` from the ``(M + 1,)`` counts of a ``metrics.RankHistogram``
    (e.g. sums over chunks of a store too large to rank at once)."""
    counts = np.asarray(counts, np.float64)
    if counts.sum() == 0:
        raise DataError(expected("observed", "at least one point without NaN", "none"))
    frequency = counts / counts.sum()
    members = counts.size - 1
    fig = style.new_figure((5.0, 3.6))
    ax = fig.subplots()
    ax.bar(np.arange(members + 1), frequency, color="tab:blue", alpha=0.8, label=name)
    ax.axhline(1 / (members + 1), color="k", ls="--", label="calibrated (flat)")
    ax.set(
        xlabel=f"rank of the observation among {members} members",
        ylabel="relative frequency",
        title=f"Rank histogram: {name}",
    )
    style.integer_ticks(ax.xaxis, range(members + 1) if members < 12 else None)
    fig.legend(loc="outside lower center", ncols=2, fontsize="small")  # never over a bar
    return style.finish(fig, path)


def plot_power_spectrum(
    fields: Mapping[str, ArrayLike],
    *,
    spacing_km: float,
    units: str | None = None,
    title: str = "Radially averaged power spectrum",
    path: str | Path | None = None,
) -> Figure:
    """Radially averaged power spectra (``metrics.radial_psd``) of named fields, log-log
    against wavelength in km (large scales on the left). A forecast whose curve drops below
    the observations' at short wavelengths is too smooth (blurred).

    ``fields``: ``{name: (..., H, W)}``; spectra are averaged over the leading axes.
    ``spacing_km``: grid spacing; ``units``: those of the fields (power is in units²).
    """
    fig = style.new_figure((5.6, 4.2))
    ax = fig.subplots()
    for (name, field), fmt in zip(fields.items(), cycle(style.DASHES), strict=False):
        wavenumber, psd = metrics.radial_psd(field, spacing=spacing_km)
        wavenumber = np.asarray(wavenumber)
        psd = np.asarray(psd).reshape(-1, wavenumber.size).mean(axis=0)
        ax.loglog(1.0 / wavenumber[1:], psd[1:], fmt, label=name)  # ring 0: the mean, no scale
    ax.invert_xaxis()
    ax.set(
        xlabel="wavelength (km)",
        ylabel=style.label("power", f"({units})²" if units else None),
        title=title,
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return style.finish(fig, path)


def _named(values, default: str) -> dict:
    """``{name: array}`` from a mapping or a single array (named ``default``)."""
    return dict(values) if isinstance(values, Mapping) else {default: values}
