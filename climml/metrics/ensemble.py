"""Ensemble calibration: rank histograms and spread/skill, as sums that merge.

Rank histogram (Talagrand diagram)
    The rank of the observation among the M members (0: below all, M: above all); over many
    points an ensemble drawn from the observation's distribution gives every one of the M + 1
    ranks the same frequency. An observation tied with E members could take any of the
    E + 1 ranks from ``#{x < y}`` to ``#{x <= y}``: pysteps draws one at random; here each of
    those ranks gets ``1 / (E + 1)`` of the point, the expectation of that draw, so the
    histogram is deterministic and jit-friendly (ties matter for rain: dry observations and
    dry members all equal 0). ``min_value`` is pysteps' ``X_min``: values below it count as
    equal (all "dry"), and points where the observation and every member are below it are
    left out.

Spread/skill (Fortin et al. 2014, J. Hydrometeor.)
    For a calibrated ensemble of M members the squared error of the ensemble mean is, on
    average, ``(M + 1) / M`` times the ensemble variance (the mean of M draws still misses the
    observation by its own spread). So ``spread = sqrt(mean((M + 1) / M * s²))``, with ``s²``
    the unbiased member variance, matches ``skill = RMSE(ensemble mean)`` and their ratio is
    ~1; below 1 the ensemble is under-dispersive (overconfident).

NaN: unlike CRPS, both need every member at a point (a rank among fewer members falls in
another bin, and M sets the correction), so a NaN member or observation masks the point.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from climml.errors import DataError, expected
from climml.metrics._masking import (
    Axis,
    as_float,
    check_broadcast,
    point_weights,
    ratio,
    reduced_dims,
    static_axis,
    sum_together,
    zero_where_invalid,
)


class RankHistogram(NamedTuple):
    """Summed weight of the points at each rank ``(..., M + 1)``; ``a + b`` merges."""

    counts: Array

    def __add__(self, other: RankHistogram) -> RankHistogram:
        return RankHistogram(self.counts + other.counts)

    def frequencies(self) -> Array:
        """Relative frequency of each rank ``(..., M + 1)``; NaN without points."""
        return ratio(self.counts, jnp.sum(self.counts, axis=-1, keepdims=True))


class SpreadSkill(NamedTuple):
    """Additive spread/skill statistics; ``a + b`` merges, the scores are methods."""

    weight: Array  # Σ w over valid points
    variance: Array  # Σ w (M + 1) / M s², s² the unbiased variance of the members
    squared_error: Array  # Σ w (ensemble mean - observation)²

    def __add__(self, other: SpreadSkill) -> SpreadSkill:
        return SpreadSkill(*(a + b for a, b in zip(self, other, strict=True)))

    def spread(self) -> Array:
        """Ensemble spread with the finite-ensemble correction, in the data's units."""
        return jnp.sqrt(ratio(self.variance, self.weight))

    def skill(self) -> Array:
        """RMSE of the ensemble mean, in the data's units."""
        return jnp.sqrt(ratio(self.squared_error, self.weight))

    def ratio(self) -> Array:
        """Spread over skill: ~1 when calibrated, < 1 under-dispersive, > 1 over-dispersive."""
        return ratio(self.spread(), self.skill())


def _ensemble(forecast: Array, observed: Array, ensemble_axis: int) -> tuple[Array, Array, int]:
    """Members and observations broadcast to the points' shape, the member axis left in
    place (moving it would copy the whole ensemble); returns the axis as a non-negative int."""
    if not -forecast.ndim <= ensemble_axis < forecast.ndim:
        want = f"an axis of forecast (ndim {forecast.ndim})"
        raise DataError(expected("ensemble_axis", want, ensemble_axis))
    axis = ensemble_axis % forecast.ndim
    points = forecast.shape[:axis] + forecast.shape[axis + 1 :]
    shape = check_broadcast(**{"forecast without members": points, "observed": observed})
    if len(shape) != len(points):
        want = f"at most {len(points)} axes (forecast without its member axis)"
        raise DataError(expected("observed.shape", want, observed.shape))
    members = jnp.broadcast_to(forecast, shape[:axis] + (forecast.shape[axis],) + shape[axis:])
    return members, jnp.broadcast_to(observed, shape), axis


def rank_histogram(
    forecast: ArrayLike,
    observed: ArrayLike,
    /,
    *,
    ensemble_axis: int = -1,
    axis: Axis = None,
    weights: ArrayLike | None = None,
    min_value: float | None = None,
) -> RankHistogram:
    """Rank histogram of the observations among the ensemble members.

    Args:
      forecast: ensemble, members along ``ensemble_axis``, e.g. ``(..., M)``.
      observed: observations shaped like ``forecast`` without its member axis.
      ensemble_axis: the member axis of ``forecast``.
      axis: axes of the points (``observed``'s axes) summed (None: all).
      weights: non-negative point weights broadcastable against ``observed``.
      min_value: pysteps' ``X_min`` (e.g. 0.1 mm/h): values below it are equal, and points
        where the observation and all members are below it are left out (None: off).

    Returns:
      ``RankHistogram`` with counts ``(*kept, M + 1)``: summed point weights (point counts
      by default, fractional where ties are shared).
    """
    forecast, observed = as_float(forecast, observed)
    members, observed, member_axis = _ensemble(forecast, observed, ensemble_axis)
    check_broadcast(observed=observed, weights=weights)
    dims = static_axis(reduced_dims(axis, observed.ndim))
    return _rank_histogram(members, observed, weights, member_axis, dims, min_value)


@functools.partial(jax.jit, static_argnames=("member_axis", "axis", "min_value"))
def _rank_histogram(members, observed, weights, member_axis, axis, min_value) -> RankHistogram:
    valid = ~jnp.any(jnp.isnan(members), axis=member_axis) & ~jnp.isnan(observed)
    if min_value is not None:
        wet = jnp.any(members >= min_value, axis=member_axis)
        valid = valid & ((observed >= min_value) | wet)
        # Every value below min_value becomes -inf: all "dry" values tie with each other.
        members = jnp.where(members < min_value, -jnp.inf, members)
        observed = jnp.where(observed < min_value, -jnp.inf, observed)
    w = point_weights(valid, weights, members.dtype)
    y = jnp.expand_dims(observed, member_axis)
    below = jnp.sum(members < y, axis=member_axis)
    ties = jnp.sum(members == y, axis=member_axis)
    share = w / (ties + 1).astype(w.dtype)  # spread over ranks below .. below + ties

    def count(rank: Array) -> Array:
        (total,) = sum_together(
            [jnp.where((below <= rank) & (rank <= below + ties), share, 0)], axis
        )
        return total

    # One rank at a time (lax.map, not vmap): M + 1 passes over the points, but no
    # (M + 1) x points intermediate.
    counts = jax.lax.map(count, jnp.arange(members.shape[member_axis] + 1))
    return RankHistogram(jnp.moveaxis(counts, 0, -1))


def spread_skill(
    forecast: ArrayLike,
    observed: ArrayLike,
    /,
    *,
    ensemble_axis: int = -1,
    axis: Axis = None,
    weights: ArrayLike | None = None,
) -> SpreadSkill:
    """Spread/skill statistics of an ensemble (see the module docstring).

    Args:
      forecast: ensemble with M >= 2 members along ``ensemble_axis``.
      observed: observations shaped like ``forecast`` without its member axis.
      ensemble_axis: the member axis of ``forecast``.
      axis: axes of the points summed (None: all).
      weights: non-negative point weights broadcastable against ``observed``.

    Returns:
      ``SpreadSkill`` shaped like the kept axes; ``.spread()``, ``.skill()``, ``.ratio()``.
    """
    forecast, observed = as_float(forecast, observed)
    members, observed, member_axis = _ensemble(forecast, observed, ensemble_axis)
    m = members.shape[member_axis]
    if m < 2:
        raise DataError(expected("forecast members", ">= 2 for a spread", m))
    check_broadcast(observed=observed, weights=weights)
    dims = static_axis(reduced_dims(axis, observed.ndim))
    return _spread_skill(members, observed, weights, member_axis, dims)


@functools.partial(jax.jit, static_argnames=("member_axis", "axis"))
def _spread_skill(members, observed, weights, member_axis, axis) -> SpreadSkill:
    valid = ~jnp.any(jnp.isnan(members), axis=member_axis) & ~jnp.isnan(observed)
    w = point_weights(valid, weights, members.dtype)
    m = members.shape[member_axis]
    # Two passes over the members (mean, then deviations) keep s² accurate for data far from
    # zero (280 K); errors are taken against the observation for the same reason.
    mean = jnp.mean(members, axis=member_axis, keepdims=True)
    variance = jnp.sum((members - mean) ** 2, axis=member_axis) / (m - 1)
    mean = jnp.squeeze(mean, member_axis)
    error = zero_where_invalid(mean - observed, valid)
    variance = zero_where_invalid(variance * ((m + 1) / m), valid)
    return SpreadSkill(*sum_together([w, w * variance, w * error**2], axis))
