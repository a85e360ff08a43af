"""Continuous scores: RMSE, MAE, bias, correlation and anomaly correlation (ACC).

Each score is the ratio of additive statistics: ``error_sums`` (for RMSE/MAE/bias) and
``comoments`` (for correlation/ACC) reduce over ``axis`` and return a NamedTuple whose ``+``
merges two chunks, so that scores accumulated over batches, dask chunks or devices equal the
one-shot score. ``weights`` broadcast against the data (numpy rules); ``latitude_weights``
builds the usual cell-area weights.

Accuracy: float32 inputs give float32 statistics that match a float64 computation to ~1e-6
relative for any offset of the data (kelvin temperatures, geopotential) and up to ~1e8
points: every sum is blocked (``sum_together``), and second moments are taken about the
chunk mean (``comoments``), never as raw sums of x² that cancel. float64 inputs (under
``jax_enable_x64``) stay float64.

Shapes: ``forecast`` and ``observed`` must have the same number of axes; size-1 axes
broadcast. An extra axis (ensemble members) is an error rather than silently pooled: score
the ensemble mean, or use ``crps_ensemble``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from climml.errors import DataError, expected
from climml.metrics._masking import (
    Axis,
    as_float,
    check_broadcast,
    check_pair,
    point_weights,
    ratio,
    reduced_dims,
    static_axis,
    sum_together,
    valid_mask,
    zero_where_invalid,
)


class ErrorSums(NamedTuple):
    """Weighted sums of the error ``e = forecast - observed`` over the reduced axes.

    ``a + b`` adds the sums of two chunks (so ``psum`` merges them across devices too); the
    scores are formed last, by the methods. Plain sums are accurate here: ``e`` is small
    next to the data (``f - o`` is exact in float32 when f and o are within a factor 2) and
    |e|, e² have no sign to cancel; ``sum_together`` keeps the rounding of the sums small.
    """

    weight: Array  # Σ w over valid points
    error: Array  # Σ w e
    abs_error: Array  # Σ w |e|
    squared_error: Array  # Σ w e²

    def __add__(self, other: ErrorSums) -> ErrorSums:
        return ErrorSums(*(a + b for a, b in zip(self, other, strict=True)))

    def bias(self) -> Array:
        """Mean error (forecast minus observed), in data units."""
        return ratio(self.error, self.weight)

    def mae(self) -> Array:
        """Mean absolute error, in data units."""
        return ratio(self.abs_error, self.weight)

    def mse(self) -> Array:
        """Mean squared error, in squared data units."""
        return ratio(self.squared_error, self.weight)

    def rmse(self) -> Array:
        """Root mean squared error, in data units."""
        return jnp.sqrt(self.mse())


def error_sums(
    forecast: ArrayLike,
    observed: ArrayLike,
    /,
    *,
    axis: Axis = None,
    weights: ArrayLike | None = None,
) -> ErrorSums:
    """Reduce ``forecast - observed`` to its additive statistics over ``axis``.

    Args:
      forecast, observed: arrays with the same number of axes (size-1 axes broadcast);
        NaN in either masks the point.
      axis: axes to reduce (None: all).
      weights: non-negative weights broadcastable against the data (None: equal).

    Returns:
      ``ErrorSums`` with the reduced axes removed.
    """
    check_pair("forecast", forecast, "observed", observed, weights)
    return _error_sums(forecast, observed, weights, static_axis(axis))


# Jitted so that eager calls run as one fused program instead of one pass over the data
# per primitive (the masking alone is several).
@functools.partial(jax.jit, static_argnames="axis")
def _error_sums(forecast, observed, weights, axis) -> ErrorSums:
    forecast, observed = as_float(forecast, observed)
    valid = valid_mask(forecast, observed)
    w = point_weights(valid, weights, forecast.dtype)
    e = zero_where_invalid(forecast - observed, valid)
    return ErrorSums(*sum_together([w, w * e, w * jnp.abs(e), w * e * e], axis))


def rmse(forecast: ArrayLike, observed: ArrayLike, /, *, axis: Axis = None, weights=None) -> Array:
    """Root mean squared error over ``axis`` (see ``error_sums`` for arguments)."""
    return error_sums(forecast, observed, axis=axis, weights=weights).rmse()


def mae(forecast: ArrayLike, observed: ArrayLike, /, *, axis: Axis = None, weights=None) -> Array:
    """Mean absolute error over ``axis`` (see ``error_sums`` for arguments)."""
    return error_sums(forecast, observed, axis=axis, weights=weights).mae()


def bias(forecast: ArrayLike, observed: ArrayLike, /, *, axis: Axis = None, weights=None) -> Array:
    """Mean error ``forecast - observed`` over ``axis`` (see ``error_sums`` for arguments)."""
    return error_sums(forecast, observed, axis=axis, weights=weights).bias()


def mse(forecast: ArrayLike, observed: ArrayLike, /, *, axis: Axis = None, weights=None) -> Array:
    """Mean squared error over ``axis`` (see ``error_sums`` for arguments)."""
    return error_sums(forecast, observed, axis=axis, weights=weights).mse()


class Comoments(NamedTuple):
    """Weighted means and centred second moments of a pair ``(x, y)`` over the reduced axes.

    Kept centred (not raw sums of squares) so that correlations of large-mean fields such as
    temperature in kelvin do not cancel catastrophically in float32. ``a + b`` merges two
    chunks with the pairwise update of Chan, Golub & LeVeque (1979).
    """

    weight: Array  # W = Σ w
    mean_x: Array  # Σ w x / W
    mean_y: Array
    m2_x: Array  # Σ w (x - mean_x)²
    m2_y: Array
    c_xy: Array  # Σ w (x - mean_x)(y - mean_y)

    def __add__(self, other: Comoments) -> Comoments:
        total = self.weight + other.weight
        # Fraction of the merged weight that comes from `other`; 0 when both chunks are empty.
        share = ratio(other.weight, total)
        share = jnp.where(total == 0, 0, share)
        cross = jnp.where(total == 0, 0, self.weight * share)  # w_a w_b / (w_a + w_b)
        dx = other.mean_x - self.mean_x
        dy = other.mean_y - self.mean_y
        return Comoments(
            weight=total,
            mean_x=self.mean_x + dx * share,
            mean_y=self.mean_y + dy * share,
            m2_x=self.m2_x + other.m2_x + dx * dx * cross,
            m2_y=self.m2_y + other.m2_y + dy * dy * cross,
            c_xy=self.c_xy + other.c_xy + dx * dy * cross,
        )

    def correlation(self, centered: bool = True) -> Array:
        """Pearson correlation (``centered=True``) or uncentred cosine similarity of x and y.

        NaN when no point is valid or when x or y has no variation (zero denominator).
        """
        # sqrt of each factor: their product can overflow float32 (W ~ 1e8, x ~ 5e4).
        if centered:
            r = ratio(self.c_xy, jnp.sqrt(self.m2_x) * jnp.sqrt(self.m2_y))
        else:
            sxy = self.c_xy + self.weight * self.mean_x * self.mean_y
            sxx = self.m2_x + self.weight * self.mean_x**2
            syy = self.m2_y + self.weight * self.mean_y**2
            r = ratio(sxy, jnp.sqrt(sxx) * jnp.sqrt(syy))
        return jnp.clip(r, -1, 1)  # rounding can step a perfect correlation past 1


def comoments(
    x: ArrayLike, y: ArrayLike, /, *, axis: Axis = None, weights: ArrayLike | None = None
) -> Comoments:
    """Reduce a pair of arrays to ``Comoments`` over ``axis`` (two passes within the chunk).

    The first pass estimates the means; the second sums deviations from them and corrects
    for the estimate's own rounding (the "corrected two-pass" algorithm of Chan, Golub &
    LeVeque 1983): ``M2 = Σ w d² - (Σ w d)² / W`` with ``d = x - mean``. The deviations are
    of the size of the spread, not of the data, so nothing cancels whatever the offset.

    Args:
      x, y: arrays with the same number of axes (size-1 axes broadcast); NaN in either
        masks the point.
      axis: axes to reduce (None: all).
      weights: non-negative weights broadcastable against the data (None: equal).
    """
    check_pair("x", x, "y", y, weights)
    return _comoments(x, y, weights, static_axis(axis))


@functools.partial(jax.jit, static_argnames="axis")
def _comoments(x, y, weights, axis) -> Comoments:
    x, y = as_float(x, y)
    valid = valid_mask(x, y)
    w = point_weights(valid, weights, x.dtype)
    x, y = zero_where_invalid(x, valid), zero_where_invalid(y, valid)
    weight, sum_x, sum_y = sum_together([w, w * x, w * y], axis)
    guess_x = jnp.where(weight == 0, 0, ratio(sum_x, weight))
    guess_y = jnp.where(weight == 0, 0, ratio(sum_y, weight))
    # Second pass about the first-pass means, re-expanded over the reduced axes.
    dx = x - _keep_reduced(guess_x, w.ndim, axis)
    dy = y - _keep_reduced(guess_y, w.ndim, axis)
    sdx, sdy, sdxx, sdyy, sdxy = sum_together(
        [w * dx, w * dy, w * dx * dx, w * dy * dy, w * dx * dy], axis
    )
    shift_x = jnp.where(weight == 0, 0, ratio(sdx, weight))  # what the first pass missed
    shift_y = jnp.where(weight == 0, 0, ratio(sdy, weight))
    return Comoments(
        weight=weight,
        mean_x=guess_x + shift_x,
        mean_y=guess_y + shift_y,
        m2_x=jnp.maximum(sdxx - sdx * shift_x, 0),
        m2_y=jnp.maximum(sdyy - sdy * shift_y, 0),
        c_xy=sdxy - sdx * shift_y,
    )


def _keep_reduced(reduced: Array, ndim: int, axis: Axis) -> Array:
    """Re-insert the reduced axes as size-1 axes (what ``keepdims=True`` would give)."""
    return jnp.expand_dims(reduced, reduced_dims(axis, ndim))


def correlation(
    forecast: ArrayLike, observed: ArrayLike, /, *, axis: Axis = None, weights=None
) -> Array:
    """Weighted Pearson correlation over ``axis`` (see ``comoments`` for arguments)."""
    check_pair("forecast", forecast, "observed", observed, weights)
    return comoments(forecast, observed, axis=axis, weights=weights).correlation()


def acc(
    forecast: ArrayLike,
    observed: ArrayLike,
    climatology: ArrayLike | None = None,
    /,
    *,
    axis: Axis = None,
    weights=None,
    centered: bool = False,
) -> Array:
    """Anomaly correlation coefficient over ``axis``.

    Anomalies are ``forecast - climatology`` and ``observed - climatology``; with
    ``climatology=None`` the inputs are taken to be anomalies already (e.g. normalised data).
    ``centered=False`` (default, as in WeatherBench 2) correlates the anomalies about zero:
    ``Σ w f'o' / sqrt(Σ w f'² Σ w o'²)``; ``centered=True`` subtracts their weighted means first
    (the Pearson correlation of the anomalies, the WMO "centred ACC").

    Args:
      forecast, observed: arrays with the same number of axes (size-1 axes broadcast); NaN
        masks the point.
      climatology: array broadcastable against them (numpy rules, e.g. ``(lat, lon)``), or
        None.
      axis: axes to reduce (None: all).
      weights: non-negative weights broadcastable against the data, e.g. latitude weights.
      centered: subtract the mean anomaly before correlating.
    """
    check_pair("forecast", forecast, "observed", observed, weights)
    check_broadcast(forecast=forecast, observed=observed, climatology=climatology)
    stats = _anomaly_comoments(forecast, observed, climatology, weights, static_axis(axis))
    return stats.correlation(centered=centered)


@functools.partial(jax.jit, static_argnames="axis")
def _anomaly_comoments(forecast, observed, climatology, weights, axis) -> Comoments:
    if climatology is not None:
        # Anomalies are exact in float32 where data and climatology are within a factor 2.
        forecast, observed, climatology = as_float(forecast, observed, climatology)
        forecast, observed = forecast - climatology, observed - climatology
    return _comoments(forecast, observed, weights, axis)


def latitude_weights(lat: ArrayLike, /) -> Array:
    """Cell-area weights for a regular latitude axis, normalised to mean 1.

    Each latitude owns the band between the midpoints to its neighbours (clipped to ±90° at the
    ends), whose area is proportional to ``sin(upper) - sin(lower)``; on an equally spaced grid
    this is proportional to ``cos(lat)``, and a point on a pole keeps its small polar cap
    instead of a zero weight.

    Args:
      lat: 1-D strictly monotonic latitudes in degrees within [-90, 90], shape (n,).

    Returns:
      weights of shape (n,), mean 1.
    """
    lat = np.asarray(lat, dtype=np.float64)
    if lat.ndim != 1 or lat.size == 0:
        raise DataError(expected("lat", "a non-empty 1-D array", f"shape {lat.shape}"))
    if np.any(np.isnan(lat)) or np.any(np.abs(lat) > 90):
        raise DataError(expected("lat", "values in [-90, 90]", f"[{lat.min()}, {lat.max()}]"))
    steps = np.diff(lat)
    if lat.size > 1 and not (np.all(steps > 0) or np.all(steps < 0)):
        raise DataError(expected("lat", "strictly monotonic values", "repeated or unsorted"))
    if lat.size == 1:
        return jnp.ones(1)
    mid = (lat[1:] + lat[:-1]) / 2
    edges = np.concatenate([[lat[0] - steps[0] / 2], mid, [lat[-1] + steps[-1] / 2]])
    edges = np.deg2rad(np.clip(edges, -90, 90))
    area = np.abs(np.diff(np.sin(edges)))
    return jnp.asarray(area / area.mean())
