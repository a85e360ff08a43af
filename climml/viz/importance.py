"""Plots of what a model relies on: permutation rankings and saliency maps.

Both return a ``Figure`` (made as ``climml.viz.style`` describes) and save it given ``path=``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from climml.errors import DataError, expected
from climml.viz import maps, style


def plot_importance(
    result: xr.Dataset,
    *,
    score_name: str = "score",
    max_features: int | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Single-pass and multi-pass rankings side by side (McGovern et al. 2019, Fig. 3 style).

    Each panel lists the features from most important (top) down; a bar is the score with that
    feature permuted (multi-pass: with it and all above it permuted), the whiskers its bootstrap
    interval when present, else ± one std over the repeats; the dashed line is the unpermuted
    score. ``result`` is what ``climml.explain.permutation_importance`` returns. The legend
    sits below the panels, where it cannot hide a bar.
    """
    if "singlepass_rank" not in result:
        raise DataError(expected("result", "a permutation_importance Dataset", list(result)))
    panels = [("Single-pass", "singlepass")]
    if "multipass_rank" in result:
        panels.append(("Multi-pass", "multipass"))
    n_shown = result.sizes["feature"] if max_features is None else max_features
    fig = style.new_figure((5.0 * len(panels), 1.6 + 0.35 * n_shown))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, prefix) in zip(axes, panels, strict=True):
        _ranking_panel(ax, result, prefix, n_shown)
        ax.set_title(title)
        ax.set_xlabel(f"{score_name} with feature(s) permuted")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize="small")
    return style.finish(fig, path)


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
    whiskers = "bootstrap interval" if f"{prefix}_score_ci" in result else "± 1 std over repeats"
    bars = f"permuted (whiskers: {whiskers})"
    ax.barh(positions, score, xerr=err, color="tab:blue", alpha=0.8, capsize=3, label=bars)
    ax.set_yticks(positions, [str(result.feature.values[i]) for i in order])
    ax.axvline(float(result.original_score), color="k", ls="--", label="unpermuted")


def plot_saliency(
    saliency: np.ndarray,
    *,
    lat: Sequence[float] | None = None,
    lon: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
    lead: str,
    units: str = "",
    title: str = "Saliency",
    path: str | Path | None = None,
) -> Figure:
    """One map per channel of a gridded saliency map ``(lat, lon)`` or ``(lat, lon, C)``.

    Typically the mean of ``climml.explain.saliency`` over samples. ``lead`` says which
    forecast lead the gradients are of (``"3 months"``, ``"mean over leads 1, 3, 6 months"``),
    shown in the title; ``units`` go on the colour bars. Colours are symmetric about zero per
    panel (red: increasing the input raises the output). With ``lat`` and ``lon`` the panels
    are maps with coastlines, else plain grids.
    """
    values = np.asarray(saliency)
    if values.ndim == 2:
        values = values[..., None]
    if values.ndim != 3:
        raise DataError(expected("maps", "(lat, lon) or (lat, lon, channels)", values.shape))
    n_lat, n_lon, n_chan = values.shape
    names = [f"channel {c}" for c in range(n_chan)] if names is None else list(names)
    lat_shape = (n_lat,) if lat is None else np.shape(lat)
    lon_shape = (n_lon,) if lon is None else np.shape(lon)
    if len(names) != n_chan or lat_shape != (n_lat,) or lon_shape != (n_lon,):
        want = f"{n_chan} names, {n_lat} lats, {n_lon} lons for maps of shape {values.shape}"
        raise DataError(expected("plot_saliency", want, (len(names), lat_shape, lon_shape)))
    panels = [
        maps.Panel(name, values[..., c], "diverging", units=units, label=f"saliency of {name}")
        for c, name in enumerate(names)
    ]
    return maps.plot_panels(panels, lat, lon, title=f"{title}, lead: {lead}", path=path)
