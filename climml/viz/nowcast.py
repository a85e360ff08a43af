"""Figures of a nowcast evaluation (``climml.tasks.nowcast``): skill by lead per predictor,
power spectra against the observed, and one example forecast tiled by lead."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import cycle
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

from climml.errors import DataError, expected
from climml.viz import style

# Rain-rate classes (mm/h) of the example maps: white below the first, as radar maps show them.
RAIN_LEVELS = (0.1, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
RAIN_COLORS = (
    "#c6dbef",
    "#6baed6",
    "#2171b5",
    "#41ab5d",
    "#ffe600",
    "#fe9929",
    "#e31a1c",
    "#88419d",
)


def plot_skill_by_lead(
    metrics: Mapping[str, Mapping[str, Mapping[str, float]]],
    *,
    path: str | Path | None = None,
) -> Figure:
    """Up to three panels, one line per predictor against lead (minutes), of the scores that
    ``metrics`` hold: unpooled CSI at its lowest threshold, FSS at its lowest threshold and
    largest scale, and the pixel CRPS (mm/h). ``metrics``: ``{predictor: {metric:
    {lead_minutes: value}}}``."""
    keys = {key for scores in metrics.values() for key in scores}
    csi = [k for k in keys if k.startswith("csi@") and "/" not in k]
    fss = [k.removeprefix("fss@").split("/") for k in keys if k.startswith("fss@")]
    panels = [min(csi, key=lambda k: float(k[4:]))] if csi else []
    if fss:
        t = min(float(t) for t, _ in fss)
        scale = max(int(s) for u, s in fss if float(u) == t)
        panels.append(f"fss@{t:g}/{scale}")
    panels += ["crps"] if "crps" in keys else []
    if not metrics or not panels:
        raise DataError(expected("metrics", "csi, fss or crps scores by lead", list(metrics)))
    fig = style.new_figure((4.0 * len(panels), 3.5))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels, strict=True):
        for (name, scores), fmt in zip(metrics.items(), cycle(style.LINE_STYLES), strict=False):
            if panel not in scores:
                continue
            leads = sorted(scores[panel], key=float)
            values = [np.nan if scores[panel][k] is None else scores[panel][k] for k in leads]
            ax.plot([float(k) for k in leads], values, fmt, label=name)
        units = "mm/h" if panel == "crps" else None
        ax.set(xlabel=style.lead_label("minutes"), ylabel=style.label(panel, units), title=panel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return style.finish(fig, path)


def plot_spectra(spectra: xr.Dataset, *, lead: int = -1, path: str | Path | None = None) -> Figure:
    """Power spectra of every predictor and the observations at one lead (default: the last)
    against wavelength (in the units of ``1 / wavenumber``), log-log. Power missing at short
    wavelengths is blur."""
    at = spectra.isel(lead=lead)
    k = np.asarray(spectra["wavenumber"])[1:]  # ring 0 is the mean, no scale
    fig = style.new_figure((5.6, 4.2))
    ax = fig.subplots()
    names = ["observed"] + [n for n in spectra.data_vars if n != "observed"]
    for name, dash in zip(names, cycle(style.DASHES), strict=False):
        width = 2.5 if name == "observed" else 1.5
        ax.loglog(1.0 / k, np.asarray(at[name])[1:], linestyle=dash, lw=width, label=name)
    ax.invert_xaxis()
    minutes = float(at["lead_minutes"])
    units = str(spectra["wavenumber"].attrs.get("units", "1/grid spacing")).removeprefix("1/")
    ax.set(
        xlabel=style.label("wavelength", units),
        ylabel="power",
        title=f"Radially averaged power spectrum, lead {minutes:g} min",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return style.finish(fig, path)


def plot_example(
    example: Mapping[str, np.ndarray],
    minutes: Sequence[str],
    *,
    units: str = "mm/h",
    members: int = 3,
    path: str | Path | None = None,
) -> Figure:
    """One forecast window tiled: a row per field (observed, each predictor; for an ensemble
    its first ``members`` members), a column per lead. ``example``: ``{name: (L, H, W)}`` or
    ``(M, L, H, W)`` for ensembles, with ``"observed"`` among them."""
    if "observed" not in example:
        raise DataError(expected("example", "an 'observed' field", list(example)))
    rows = []
    for name, field in example.items():
        field = np.asarray(field)
        if field.ndim == 4:
            rows += [(f"{name} #{m + 1}", field[m]) for m in range(min(members, len(field)))]
        else:
            rows.append((name, field))
    n_leads = len(minutes)
    fig = style.new_figure((2.0 * n_leads + 0.8, 2.0 * len(rows)))
    axes = fig.subplots(len(rows), n_leads, squeeze=False)
    cmap = ListedColormap(RAIN_COLORS).with_extremes(under="white", over="black")
    norm = BoundaryNorm(RAIN_LEVELS, cmap.N)
    image = None
    for r, (name, field) in enumerate(rows):
        for c in range(n_leads):
            ax = axes[r, c]
            image = ax.imshow(field[c], cmap=cmap, norm=norm, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"+{minutes[c]} min")
            if c == 0:
                ax.set_ylabel(name)
    fig.colorbar(image, ax=axes, extend="both", label=style.label("rain rate", units), shrink=0.6)
    return style.finish(fig, path)
