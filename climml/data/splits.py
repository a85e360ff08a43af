"""Chronological train/val/test splits as sample anchors that never cross a split boundary.

A sample anchored at time index ``t`` reads inputs ``t-input_steps+1 .. t`` and targets up to
``t+max_lead``. Keeping that whole span inside one split (and optionally skipping ``gap`` steps
at the start of each later split) means no target of one split is an input of another.

Nor does a window span a break in the time axis: a step longer than ``BREAK_FACTOR`` times the
median step (the gap between two radar events, a missing day) separates windows, so a sample
never pairs inputs of one event with targets of the next. Calendar months (28 to 31 days) are
regular steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from climml.errors import ConfigError, expected

BREAK_FACTOR = 1.5  # a step this many times the median step breaks the time axis


def split_anchors(
    time: Any,
    splits: Mapping[str, tuple[Any, Any]],
    *,
    input_steps: int,
    max_lead: int,
    gap: int = 0,
) -> dict[str, np.ndarray]:
    """Anchor time indices of every split.

    time: the dataset's time index (``ds.indexes["time"]``, ``ds["time"]`` or datetimes).
    splits: ``{name: (start, end)}`` in chronological order; inclusive labels such as
        ``("1870-01", "1939-12")`` (partial dates cover the whole month/year) or datetimes.
    input_steps: time steps of input per sample (>= 1).
    max_lead: largest lead in steps (>= 0).
    gap: steps skipped at the start of every split but the first.

    Returns ``{name: int64 array}`` of anchors ``t`` with ``[t-input_steps+1, t+max_lead]``
    inside the split's range and free of time breaks (see module doc). ``ConfigError`` (field
    ``data.splits.<name>``) if a range is empty, overlaps or precedes the previous one, or
    leaves no sample.
    """
    _check_sizes(input_steps, max_lead, gap)
    index = _as_index(time)
    if not isinstance(splits, Mapping) or not splits:
        raise ConfigError(expected("data.splits", "a mapping {name: [start, end]}", splits))
    breaks = np.concatenate([[0], np.cumsum(time_breaks(index))])  # breaks before each step
    anchors, previous = {}, None
    for position, (name, bounds) in enumerate(splits.items()):
        field = f"data.splits.{name}"
        lo, hi = _positions(index, bounds, field)
        if previous is not None and lo <= previous[2]:
            prev_name, prev_lo, prev_hi = previous
            relation = "starts before" if lo < prev_lo else "overlaps"
            want = f"a range after split '{prev_name}' (which ends {_label(index[prev_hi])})"
            raise ConfigError(expected(field, want, f"{_span(index, lo, hi)}, which {relation} it"))
        first = lo + (gap if position else 0) + input_steps - 1
        last = hi - max_lead
        if first > last:
            need = input_steps + max_lead + (gap if position else 0)
            found = f"{_span(index, lo, hi)}: {hi - lo + 1} steps"
            raise ConfigError(expected(field, f"a range of at least {need} steps", found))
        candidates = np.arange(first, last + 1, dtype=np.int64)
        # Unbroken: no break between the window's first input and its last target.
        unbroken = breaks[candidates + max_lead] == breaks[candidates - input_steps + 1]
        if not unbroken.any():
            need = f"{input_steps + max_lead} consecutive steps without a time break"
            raise ConfigError(expected(field, f"a range with {need}", _span(index, lo, hi)))
        anchors[name] = candidates[unbroken]
        previous = (name, lo, hi)
    return anchors


def time_breaks(time: Any) -> np.ndarray:
    """(len(time) - 1,) bool: True where the step to the next time is a break, i.e. longer
    than ``BREAK_FACTOR`` times the median step."""
    index = _as_index(time)
    if len(index) < 3:
        return np.zeros(max(len(index) - 1, 0), bool)
    steps = np.asarray((index[1:] - index[:-1]).total_seconds())
    return steps > BREAK_FACTOR * np.median(steps)


def _check_sizes(input_steps: int, max_lead: int, gap: int) -> None:
    for field, value, least in (
        ("data.input_steps", input_steps, 1),
        ("max(data.leads)", max_lead, 0),
        ("data.gap", gap, 0),
    ):
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < least:
            raise ConfigError(expected(field, f"an integer >= {least}", repr(value)))


def _as_index(time: Any) -> pd.Index:
    if isinstance(time, xr.DataArray):
        return time.to_index()
    if isinstance(time, pd.Index):
        return time
    return pd.DatetimeIndex(np.asarray(time))


def _positions(index: pd.Index, bounds: Any, field: str) -> tuple[int, int]:
    """First and last integer positions (inclusive) of the labels ``bounds = (start, end)``."""
    if isinstance(bounds, str) or not hasattr(bounds, "__len__") or len(bounds) != 2:
        raise ConfigError(expected(field, "[start, end]", repr(bounds)))
    start, end = (str(b) if isinstance(b, int) else b for b in bounds)  # YAML reads 1950 as int
    try:
        where = index.slice_indexer(start, end)
    except (KeyError, ValueError, TypeError) as err:
        raise ConfigError(expected(field, "[start, end] as dates", f"{bounds!r} ({err})")) from err
    lo, hi, _ = where.indices(len(index))
    if hi <= lo:
        found = f"{bounds!r} with data from {_span(index, 0, len(index) - 1)}"
        raise ConfigError(expected(field, "a range containing time steps", found))
    return lo, hi - 1


def _span(index: pd.Index, lo: int, hi: int) -> str:
    return f"{_label(index[lo])} to {_label(index[hi])}"


def _label(stamp: Any) -> str:
    return stamp.strftime("%Y-%m-%d")
