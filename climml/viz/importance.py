"""Plots of what a model relies on: permutation rankings and saliency maps.

Figures are built on ``matplotlib.figure.Figure`` (Agg canvas), never through ``pyplot``, so they
work in batch jobs without a display and leave no global state behind.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from climml.errors import DataError, expected


def plot_importance(
    result: xr.Dataset, *, score_name: str = "score", max_features: int | None = None
) -> Figure:
    """Single-pass and multi-pass rankings side by side (McGovern et al. 2019, Fig. 3 style).

    Each panel lists the features from most important (top) down; a bar is the score with that
    feature permuted (multi-pass: with it and all above it permuted), the whiskers its bootstrap
    interval when present, else ± one std over the repeats; the dashed line is the unpermuted
    score. ``result`` is what ``climml.explain.permutation_importance`` returns.
    """
    if "singlepass_rank" not in result:
        raise DataError(expected("result", "a permutation_importance Dataset", list(result)))
    panels = [("Single-pass", "singlepass")]
    if "multipass_rank" in result:
        panels.append(("Multi-pass", "multipass"))
    n_shown = result.sizes["feature"] if max_features is None else max_features
    fig = Figure(figsize=(5.0 * len(panels), 1.0 + 0.35 * n_shown), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, prefix) in zip(axes, panels, strict=True):
        _ranking_panel(ax, result, prefix, n_shown)
        ax.set_title(title)
        ax.set_xlabel(f"{score_name} with feature(s) permuted")
    axes[0].legend(loc="lower right", fontsize="small")
    return fig


def _ranking_panel(ax, result: xr.Dataset, prefix: str, n_shown: int) -> None:
    """Horizontal bars of ``{prefix}_score`` ordered by ``{prefix}_rank`` (rank 1 on top)."""
    rank = result[f"{prefix}_rank"].values.astype(float)
    order = [i for i in np.argsort(rank, kind="stable") if np.isfinite(rank[i])][:n_shown]
    score = result[f"{prefix}_score"].values[order]
    if f"{prefix}_score_ci" in result:
        ci = result[f"{prefix}_score_ci"].values[order]
        err = np.stack([score - ci[:, 0], ci[:, 1] - score])
    else:
        err = result[f"{prefix}_score_std"].values[order]
    positions = np.arange(len(order))[::-1]  # rank 1 at the top
    ax.barh(positions, score, xerr=err, color="tab:blue", alpha=0.8, capsize=3)
    ax.set_yticks(positions, [str(result.feature.values[i]) for i in order])
    ax.axvline(float(result.original_score), color="k", ls="--", label="unpermuted")


def plot_saliency(
    maps: np.ndarray,
    *,
    lat: Sequence[float] | None = None,
    lon: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
    title: str = "saliency",
) -> Figure:
    """One panel per channel of a gridded saliency map ``(lat, lon)`` or ``(lat, lon, C)``.

    Typically the mean of ``climml.explain.saliency`` over samples. Colours are symmetric about
    zero per panel (red: increasing the input raises the output).
    """
    maps = np.asarray(maps)
    if maps.ndim == 2:
        maps = maps[..., None]
    if maps.ndim != 3:
        raise DataError(expected("maps", "(lat, lon) or (lat, lon, channels)", maps.shape))
    n_lat, n_lon, n_chan = maps.shape
    lat = np.arange(n_lat) if lat is None else np.asarray(lat)
    lon = np.arange(n_lon) if lon is None else np.asarray(lon)
    names = [f"channel {c}" for c in range(n_chan)] if names is None else list(names)
    if len(names) != n_chan or lat.shape != (n_lat,) or lon.shape != (n_lon,):
        want = f"{n_chan} names, {n_lat} lats, {n_lon} lons for maps of shape {maps.shape}"
        raise DataError(expected("plot_saliency", want, (len(names), lat.shape, lon.shape)))
    fig = Figure(figsize=(4.0 * n_chan, 3.2), layout="constrained")
    axes = fig.subplots(1, n_chan, squeeze=False)[0]
    for c, ax in enumerate(axes):
        limit = float(np.nanmax(np.abs(maps[..., c]))) or 1.0
        mesh = ax.pcolormesh(lon, lat, maps[..., c], cmap="RdBu_r", vmin=-limit, vmax=limit)
        fig.colorbar(mesh, ax=ax, shrink=0.8)
        ax.set_title(names[c])
        ax.set_xlabel("longitude")
    axes[0].set_ylabel("latitude")
    fig.suptitle(title)
    return fig
