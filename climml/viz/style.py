"""One look for every climml figure: how figures are made and saved, axis labels with units,
lead-time labels, integer lead ticks, colour maps.

Figures are created through ``pyplot`` (so that whatever backend the session uses, e.g.
Jupyter's inline one, is loaded and knows how to display them) and then detached from it at
once: a returned figure is shown in a notebook when it is a cell's value or passed to
``display``, never twice, and batch jobs that make hundreds of figures accumulate none. No
backend is ever selected here; without a display matplotlib itself falls back to Agg.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DPI = 110  # saved figures: sharp enough to read tick labels, ~100 kB per map
FIELD_CMAP = "viridis"  # continuous fields
ERROR_CMAP = "magma"  # non-negative errors
DIVERGING_CMAP = "RdBu_r"  # signed quantities, symmetric about zero (anomalies, saliency)
SEQUENTIAL_CMAP = "Blues"  # counts and fractions (confusion matrix)
CLASS_COLORS = ("#f2f2f2", "#d7301f", "#2b8cbe", "#41ab5d", "#807dba", "#fdae6b")
LINE_STYLES = ("o-", "s--", "^-.", "d:", "v-", "x--")  # cycled over predictors (few points)
DASHES = ("-", "--", "-.", ":")  # cycled over curves (many points: no markers)


def new_figure(figsize: tuple[float, float], **kwargs) -> Figure:
    """A constrained-layout figure of ``figsize`` inches, not registered with ``pyplot``."""
    fig = plt.figure(figsize=figsize, layout="constrained", **kwargs)
    plt.close(fig)  # detach: the caller owns it (see the module docstring)
    return fig


def finish(fig: Figure, path: str | Path | None) -> Figure:
    """Save ``fig`` to ``path`` (format from the suffix) when one is given; return ``fig``."""
    if path is not None:
        fig.savefig(path, dpi=DPI)
    return fig


def label(name: str, units: str | None = None) -> str:
    """``"name (units)"``, or ``name`` alone when the units are unknown or empty."""
    return f"{name} ({units})" if units else name


def lead_label(unit: str = "time steps") -> str:
    """The x label of every by-lead axis, e.g. ``"lead (months)"``."""
    return f"lead ({unit})"


def integer_ticks(axis: Axis, values: Sequence[float] | None = None) -> None:
    """Ticks at whole numbers only: at ``values`` themselves when there are a few, else at
    integers chosen by matplotlib (leads are counted in steps; a tick at 1.5 means nothing)."""
    if values is not None and 0 < len(values) <= 12:
        axis.set_ticks(sorted({int(v) for v in values}))
    else:
        axis.set_major_locator(MaxNLocator(integer=True))


def time_step_unit(time: Sequence[np.datetime64] | np.ndarray) -> str:
    """The unit of one step of a regular ``time`` axis, for lead labels.

    ``"months"``, ``"years"``, ``"days"``, ``"hours"`` or ``"minutes"`` for a one-unit step,
    ``"6-hour steps"`` and the like for multiples, ``"time steps"`` when it cannot be told
    (fewer than two times, or not datetimes).
    """
    time = np.asarray(time)
    if time.size < 2 or not np.issubdtype(time.dtype, np.datetime64):
        return "time steps"
    step = float(np.median(np.diff(time).astype("timedelta64[s]").astype(np.int64)))
    day = 86_400.0
    if 28 * day <= step <= 31 * day:
        return "months"
    if 365 * day <= step <= 366 * day:
        return "years"
    for name, seconds in (("day", day), ("hour", 3600.0), ("minute", 60.0)):
        n = step / seconds
        if n >= 1 and np.isclose(n, round(n)):
            return f"{name}s" if round(n) == 1 else f"{round(n)}-{name} steps"
    return "time steps"
