"""Reference forecasts that every model must beat: persistence, climatology and AR(p).

They share one predict interface with trained models (``climml.experiment.Predictor``):
``fit(loader) -> self`` on the training split, then ``predict(batch) -> (B, L, *target_spatial)``
in the loader's normalized units. The climatology is the training mean for the forecast's day
of year (daily data) or calendar month (monthly data), not one constant: a baseline that ignores
the seasonal cycle would flatter any model that has learnt it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from climml.errors import ConfigError, DataError, expected
from climml.types import Batch, IOSpec


class Persistence:
    """The last observed target value carried forward to every lead."""

    name = "persistence"

    def __init__(self, spec: IOSpec, leads: Sequence[int]):
        self.num_leads = len(leads)

    def fit(self, batches: Iterable[Batch]) -> Persistence:
        return self  # nothing to learn

    def predict(self, batch: Batch) -> np.ndarray:
        last = np.asarray(batch.target_history)[:, -1]
        return np.repeat(last[:, None], self.num_leads, axis=1)


class Climatology:
    """The training-period mean of the target at the forecast's valid time of year.

    The season is chosen from the time step of ``time`` (the time coordinate that the batches'
    ``anchor`` indexes): sub-monthly data (daily, hourly) by day of year, averaged over a
    ``window``-day circular window (weighted by the samples in each day, so 29 February, seen
    once in four years, borrows from its neighbours; ``window=1`` is no smoothing); monthly data
    by calendar month; coarser data, or a ``time`` that is not datetime64, one mean. Means are
    in normalized units, over the valid training targets of every lead; a season or point
    without training data forecasts 0, the normalizer's mean.
    """

    name = "climatology"

    def __init__(
        self,
        spec: IOSpec,
        leads: Sequence[int],
        *,
        time: np.ndarray | None = None,
        window: int = 31,
    ):
        if not isinstance(window, int) or window < 1 or window % 2 == 0:
            raise ConfigError(expected("Climatology.window", "an odd number of days >= 1", window))
        self.leads = np.asarray(leads, np.int64)
        self.output_shape = spec.output_shape
        self.season, self.slots = season_index(time)
        self.window = window if self.season == "dayofyear" else 1
        self.mean: np.ndarray | None = None  # (slots, S): climatology per season and point

    def _slot(self, batch: Batch) -> np.ndarray:
        """``(B, L)`` season slot of each forecast's valid time (padding rows: any slot)."""
        valid = np.asarray(batch.anchor)[:, None] + self.leads[None, :]
        return self.slots[np.clip(valid, 0, self.slots.shape[0] - 1)]

    def fit(self, batches: Iterable[Batch]) -> Climatology:
        n_slots = int(self.slots.max()) + 1
        sums = counts = None
        for batch in batches:
            y = np.asarray(batch.y, np.float64).reshape(len(batch.anchor), len(self.leads), -1)
            w = np.asarray(batch.y_valid, np.float64).reshape(y.shape)
            w = w * np.asarray(batch.weight, np.float64)[:, None, None]
            if sums is None:
                sums, counts = np.zeros((n_slots, y.shape[-1])), np.zeros((n_slots, y.shape[-1]))
            slot = self._slot(batch)
            np.add.at(sums, slot, w * y)
            np.add.at(counts, slot, w)
        if sums is None:
            raise DataError(expected("climatology training batches", "at least one batch", "none"))
        return self._ratio(sums, counts)

    def fit_dataset(self, target: xr.DataArray, anchors: np.ndarray) -> Climatology:
        """The means ``fit`` finds over the batches of ``anchors``, as one reduction of the
        data instead of a pass over windows: out of core, and where dask computes (a
        ``climml.data.cluster.compute_on`` block sends it to a cluster).

        target: the normalized target ``(time, *target_spatial)`` (dask-backed or not) on the
            ``time`` of the constructor. anchors: ``(N,)`` time indices of the training samples.

        Each time step weighs as many times as it is a forecast's valid time (the number of
        (anchor, lead) pairs that reach it); per season the weighted sums of the valid values
        and their weights are summed chunk by chunk, the ratio taken last.
        """
        anchors = np.asarray(anchors, np.int64)
        if anchors.size == 0:
            raise DataError(expected("climatology training anchors", "at least one", "none"))
        n_times = target.sizes["time"]
        # each step weighs as often as the loader's batches would repeat it, one per lead
        hits = np.bincount((anchors[:, None] + self.leads[None, :]).ravel(), minlength=n_times)
        season = self.slots[np.clip(np.arange(n_times), 0, self.slots.shape[0] - 1)]
        along = {"dims": "time", "coords": {"time": target["time"]}}
        weight = xr.DataArray(hits.astype(np.float64), **along)
        y = target.transpose("time", ...).astype(np.float32)  # the loader's precision
        valid = np.isfinite(y)
        stats = xr.Dataset(
            {"sums": y.where(valid, 0).astype(np.float64) * weight, "counts": valid * weight}
        )
        n_slots = int(self.slots.max()) + 1
        per_season = (
            stats.groupby(xr.DataArray(season, name="season", **along))
            .sum("time")
            .reindex(season=np.arange(n_slots), fill_value=0.0)
            .compute()
        )
        sums = per_season["sums"].values.reshape(n_slots, -1)
        return self._ratio(sums, per_season["counts"].values.reshape(n_slots, -1))

    def _ratio(self, sums: np.ndarray, counts: np.ndarray) -> Climatology:
        """Set ``mean`` from per-season ``(slots, S)`` weighted sums and weights."""
        sums, counts = _circular_sum(sums, self.window), _circular_sum(counts, self.window)
        self.mean = np.where(counts > 0, sums / np.maximum(counts, 1e-300), 0.0)
        return self

    def predict(self, batch: Batch) -> np.ndarray:
        if self.mean is None:
            raise RuntimeError("Climatology.predict: call fit() on training batches first")
        forecast = self.mean[self._slot(batch)]  # (B, L, S)
        return forecast.reshape(len(batch.anchor), *self.output_shape).astype(np.float32)


def season_index(time: np.ndarray | None) -> tuple[str, np.ndarray]:
    """The season each time step belongs to: ``("dayofyear", slots in 0..365)`` for
    sub-monthly steps (the day in a leap-year calendar, so 1 March is slot 60 in every year and
    29 February slot 59), ``("month", 0..11)`` for monthly steps, else ``("none", zeros)``."""
    if time is None or not np.issubdtype(np.asarray(time).dtype, np.datetime64) or len(time) < 2:
        return "none", np.zeros(1 if time is None else len(time), np.int64)
    index = pd.DatetimeIndex(time)
    step_days = float(np.median(np.diff(index.values) / np.timedelta64(1, "D")))
    if step_days < 27:
        after_feb = (~index.is_leap_year) & (index.month > 2)
        return "dayofyear", np.asarray(index.day_of_year - 1 + after_feb, np.int64)
    if step_days <= 32:
        return "month", np.asarray(index.month - 1, np.int64)
    return "none", np.zeros(len(index), np.int64)


def _circular_sum(values: np.ndarray, window: int) -> np.ndarray:
    """Sum over a centred ``window`` along axis 0, wrapping around the end of the year."""
    if window == 1:
        return values
    half = window // 2
    padded = np.concatenate([values[-half:], values, values[:half]])
    cumulative = np.concatenate([np.zeros_like(values[:1]), np.cumsum(padded, axis=0)])
    return cumulative[window:] - cumulative[:-window]


class AutoRegressive:
    """AR(p) per target point, fitted in closed form by least squares on the training split.

    Direct multi-lead: lead ``l`` has its own coefficients, regressing ``y[t + l]`` on an
    intercept and the last ``p`` values ``y[t], ..., y[t - p + 1]`` of the target history (no
    iterating a one-step model, so errors do not compound). ``p`` defaults to the input window
    (``spec.input_shape[0]``). Fitting accumulates the normal equations over batches (padding
    rows and invalid targets weigh nothing) and solves them once with a pseudo-inverse, so a
    point without training data (e.g. land) forecasts 0, the climatology. A missing value in the
    history enters as 0 too (the loader fills NaN with 0, the climatological mean in normalized
    units).
    """

    def __init__(self, spec: IOSpec, leads: Sequence[int], order: int | None = None):
        steps = spec.input_shape[0]
        self.order = steps if order is None else order
        if not isinstance(self.order, int) or not 1 <= self.order <= steps:
            raise ConfigError(expected("AutoRegressive.order", f"an int in [1, {steps}]", order))
        self.name = "ar" if order is None else f"ar{order}"  # the key of its scores
        self.num_leads = len(leads)
        self.coef: np.ndarray | None = None  # (S, L, p + 1): intercept, then lags 0..p-1

    def _features(self, batch: Batch) -> np.ndarray:
        """``(B, S, p + 1)``: a 1, then the last ``p`` target values, most recent first."""
        history = np.asarray(batch.target_history, np.float64)
        history = history.reshape(history.shape[0], history.shape[1], -1)  # (B, T, S)
        lags = history[:, ::-1][:, : self.order]  # (B, p, S)
        ones = np.ones_like(lags[:, :1])
        return np.concatenate([ones, lags], axis=1).transpose(0, 2, 1)

    def fit(self, batches: Iterable[Batch]) -> AutoRegressive:
        gram = rhs = None
        for batch in batches:
            x = self._features(batch)  # (B, S, P)
            y = np.asarray(batch.y, np.float64).reshape(x.shape[0], self.num_leads, -1)
            w = np.asarray(batch.y_valid, np.float64).reshape(y.shape)
            w = w * np.asarray(batch.weight, np.float64)[:, None, None]  # (B, L, S)
            g = np.einsum("bls,bsp,bsq->slpq", w, x, x)
            r = np.einsum("bls,bsp,bls->slp", w, x, y)
            gram, rhs = (g, r) if gram is None else (gram + g, rhs + r)
        if gram is None:
            raise DataError(expected("ar training batches", "at least one batch", "none"))
        self.coef = np.einsum("slpq,slq->slp", np.linalg.pinv(gram), rhs)
        return self

    def predict(self, batch: Batch) -> np.ndarray:
        if self.coef is None:
            raise RuntimeError("AutoRegressive.predict: call fit() on training batches first")
        x = self._features(batch)
        forecast = np.einsum("bsp,slp->bls", x, self.coef)
        shape = np.shape(batch.y)
        return forecast.reshape(shape).astype(np.float32)


BASELINES: dict[str, Callable[[IOSpec, Sequence[int]], object]] = {
    "persistence": Persistence,
    "climatology": Climatology,
    "ar": AutoRegressive,
}
"""Baselines by config name. ``ar`` uses the whole input window; ``ar<p>`` (e.g. ``ar3``) sets
the order ``p`` explicitly (``1 <= p <= data.input_steps``)."""

_AR_ORDER = re.compile(r"ar(\d+)")


def check_baseline(name: str, input_steps: int) -> None:
    """ConfigError naming ``eval.baselines`` unless ``name`` builds for ``input_steps`` steps."""
    match = _AR_ORDER.fullmatch(name)
    if match and 1 <= int(match[1]) <= input_steps:
        return
    if name not in BASELINES:
        allowed = f"names from {sorted(BASELINES)} or ar<p> with 1 <= p <= {input_steps}"
        raise ConfigError(expected("eval.baselines", allowed, repr(name)))


def make_baseline(name: str, spec: IOSpec, leads: Sequence[int], *, time: np.ndarray | None = None):
    """Instantiate the baseline called ``name`` (ConfigError naming ``eval.baselines``).

    ``time``: the time coordinate the batches' anchors index, from which the climatology takes
    each forecast's season (without it, the climatology is one training mean).
    """
    check_baseline(name, spec.input_shape[0])
    match = _AR_ORDER.fullmatch(name)
    if match:
        return AutoRegressive(spec, leads, order=int(match[1]))
    if name == "climatology":
        return Climatology(spec, leads, time=time)
    return BASELINES[name](spec, leads)
