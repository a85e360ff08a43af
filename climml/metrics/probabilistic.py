"""Probabilistic scores: Brier score, ensemble and Gaussian CRPS, DGMR-style pooled CRPS.

CRPS values are per point (like scoringrules and properscoring); average them with
``weighted_mean`` or the xarray wrapper, which skip masked (NaN) points.

Ensemble CRPS, for members x_i with weights w_i (sum 1) and observation y:

    CRPS = Σ_i w_i |x_i - y| - ½ Σ_i Σ_j w_i w_j |x_i - x_j|

the energy form of the CRPS of the empirical distribution. After sorting the members the
double sum is ``2 Σ_i w_i x_(i) (W_<i - W_>i)`` (W_<i, W_>i: weight below / above member i),
so the cost is one sort per point, O(M log M) (a sorting network for M <= 64, see
``_sorting``). The fair (ensemble-size-unbiased, Ferro 2014) estimator divides the spread
term by ``1 - Σ w_i²``, i.e. by ``M (M - 1)`` instead of ``M²`` for equal weights.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import Array, lax
from jax.scipy.stats import norm
from jax.typing import ArrayLike

from climml.errors import DataError, expected
from climml.metrics import pooling
from climml.metrics._masking import (
    Axis,
    as_float,
    check_broadcast,
    check_labels,
    check_pair,
    check_probabilities,
    ratio,
)
from climml.metrics._sorting import NETWORK_MAX, sort_members
from climml.metrics.continuous import error_sums
from climml.metrics.pooling import check_pooling


def brier_score(
    probability: ArrayLike, observed: ArrayLike, /, *, axis: Axis = None, weights=None
) -> Array:
    """Mean squared difference between event probability and outcome (0/1), in [0, 1].

    Args:
      probability: forecast probabilities in [0, 1] (not percent); NaN masks the point.
      observed: outcomes, 0/1 or boolean (NaN masks), with as many axes as ``probability``.
      axis, weights: as in ``error_sums``.

    Raises:
      DataError: for concrete inputs (not traced under ``jit``) with a probability outside
        [0, 1] or an outcome other than 0/1, naming the argument.
    """
    check_pair("probability", probability, "observed", observed, weights)
    check_probabilities("probability", probability)
    check_labels("observed", observed)
    probability, observed = as_float(probability, observed)
    return error_sums(probability, observed, axis=axis, weights=weights).mse()


def crps_ensemble(
    forecast: ArrayLike,
    observed: ArrayLike,
    /,
    *,
    ensemble_axis: int = -1,
    fair: bool = False,
    weights: ArrayLike | None = None,
) -> Array:
    """CRPS of an ensemble forecast at every point, in the units of the data.

    Args:
      forecast: ensemble with members along ``ensemble_axis``, e.g. ``(..., M)``. NaN
        members are omitted per point.
      observed: observations broadcastable with ``forecast`` without its member axis.
      ensemble_axis: the member axis of ``forecast``.
      fair: use the fair estimator (needs >= 2 valid members, else NaN).
      weights: non-negative member weights broadcastable against ``forecast`` (None:
        equal), normalised per point over the valid members (as properscoring's
        ``weights``).

    Returns:
      CRPS with the member axis removed; NaN where the observation is NaN or no member is
      valid.
    """
    forecast, observed = as_float(forecast, observed)
    axis = _member_axis(forecast, ensemble_axis)
    points = forecast.shape[:axis] + forecast.shape[axis + 1 :]
    check_broadcast(**{"forecast without members": points, "observed": observed})
    # Small ensembles: a fused sorting network over member slices. Large ones: one array sort
    # (unrolling thousands of member slices would make the compiled program explode).
    large = forecast.shape[axis] > NETWORK_MAX
    if weights is None:
        kernel = _crps_equal_weights_sorted if large else _crps_equal_weights
        return kernel(forecast, observed, axis, fair)
    check_broadcast(forecast=forecast, weights=weights)
    w = jnp.broadcast_to(jnp.asarray(weights).astype(forecast.dtype), forecast.shape)
    return (_crps_weighted_sorted if large else _crps_weighted)(forecast, observed, w, axis, fair)


def _member_axis(forecast: Array, ensemble_axis: int) -> int:
    """The member axis as a non-negative int, with a clear error for a bad axis."""
    if not -forecast.ndim <= ensemble_axis < forecast.ndim:
        want = f"an axis of forecast (ndim {forecast.ndim})"
        raise DataError(expected("ensemble_axis", want, ensemble_axis))
    return ensemble_axis % forecast.ndim


def _anomalies(forecast: Array, observed: Array, axis: int) -> list[Array]:
    """Member slices minus the observation (NaN observations count as 0 here).

    CRPS is shift invariant: working with x - y keeps float32 sums small for data with
    large means (e.g. temperature in kelvin).
    """
    y = jnp.where(jnp.isnan(observed), 0, observed)
    return [
        lax.index_in_dim(forecast, k, axis, keepdims=False) - y for k in range(forecast.shape[axis])
    ]


# The private kernels are jitted so that eager calls compile once per shape instead of once
# per primitive (the sorting network alone is hundreds of them). They work on lists of
# member slices and write every sum as a Python loop over members: XLA then fuses the
# sort and the sums into one pass over the points (see ``_sorting``).
@functools.partial(jax.jit, static_argnames=("axis", "fair"))
def _crps_equal_weights(forecast: Array, observed: Array, axis: int, fair: bool) -> Array:
    """Per-point CRPS with equal weights over the valid members along ``axis``."""
    members = _anomalies(forecast, observed, axis)
    count = sum((~jnp.isnan(x)).astype(forecast.dtype) for x in members)
    # NaN members become +inf so that they sort last; only the first `count` are used.
    ordered, _ = sort_members([jnp.where(jnp.isnan(x), jnp.inf, x) for x in members])
    skill = spread = jnp.zeros((), forecast.dtype)
    for rank, x in enumerate(ordered):
        x = jnp.where(rank < count, x, 0)
        skill = skill + jnp.abs(x)  # Σ |x_i - y|
        spread = spread + x * (2 * rank - count + 1)  # ½ Σ_ij |x_i - x_j|
    return _equal_weight_score(skill, spread, count, observed, fair)


@functools.partial(jax.jit, static_argnames=("axis", "fair"))
def _crps_weighted(forecast: Array, observed: Array, weights: Array, axis: int, fair: bool):
    """Per-point CRPS with member weights along ``axis`` (normalised per point)."""
    members = _anomalies(forecast, observed, axis)
    w = [lax.index_in_dim(weights, k, axis, keepdims=False) for k in range(len(members))]
    w = [jnp.where(jnp.isnan(x) | jnp.isnan(wk), 0, wk) for x, wk in zip(members, w, strict=True)]
    total = sum(w)
    w = [ratio(wk, total) for wk in w]
    ordered, w = sort_members(
        [jnp.where(wk > 0, x, jnp.inf) for x, wk in zip(members, w, strict=True)], w
    )
    skill = spread = squares = below = jnp.zeros((), forecast.dtype)
    for x, wi in zip(ordered, w, strict=True):
        x = jnp.where(wi > 0, x, 0)
        above = 1 - below - wi
        skill = skill + wi * jnp.abs(x)
        spread = spread + wi * x * (below - above)
        squares = squares + wi * wi
        below = below + wi
    if fair:
        spread = ratio(spread, 1 - squares)
    return jnp.where(jnp.isnan(observed), jnp.nan, skill - spread)


def _equal_weight_score(skill, spread, count, observed, fair: bool) -> Array:
    """CRPS = Σ|x-y|/M - Σ_ij|x_i-x_j| / (2·M²), or / (2·M(M-1)) for the fair estimator."""
    pairs = count * (count - 1) if fair else count * count
    score = ratio(skill, count) - ratio(spread, pairs)
    return jnp.where(jnp.isnan(observed), jnp.nan, score)


def _sorted_anomalies(forecast: Array, observed: Array, axis: int) -> Array:
    """Members minus the observation, members moved to the last axis (NaN observation → 0)."""
    y = jnp.where(jnp.isnan(observed), 0, observed)
    return jnp.moveaxis(forecast, axis, -1) - y[..., None]


@functools.partial(jax.jit, static_argnames=("axis", "fair"))
def _crps_equal_weights_sorted(forecast: Array, observed: Array, axis: int, fair: bool) -> Array:
    """``_crps_equal_weights`` for large ensembles: one sort along the member axis."""
    x = _sorted_anomalies(forecast, observed, axis)
    count = jnp.sum(~jnp.isnan(x), axis=-1).astype(x.dtype)
    x = jnp.sort(jnp.where(jnp.isnan(x), jnp.inf, x), axis=-1)  # NaN members sort last
    rank = jnp.arange(x.shape[-1], dtype=x.dtype)
    x = jnp.where(rank < count[..., None], x, 0)
    skill = jnp.sum(jnp.abs(x), axis=-1)
    spread = jnp.sum(x * (2 * rank - count[..., None] + 1), axis=-1)
    return _equal_weight_score(skill, spread, count, observed, fair)


@functools.partial(jax.jit, static_argnames=("axis", "fair"))
def _crps_weighted_sorted(forecast: Array, observed: Array, weights: Array, axis: int, fair: bool):
    """``_crps_weighted`` for large ensembles: one sort along the member axis."""
    x = _sorted_anomalies(forecast, observed, axis)
    w = jnp.moveaxis(weights, axis, -1)
    w = jnp.where(jnp.isnan(x) | jnp.isnan(w), 0, w)
    w = ratio(w, jnp.sum(w, axis=-1, keepdims=True))
    x, w = lax.sort((jnp.where(w > 0, x, jnp.inf), w), dimension=x.ndim - 1, num_keys=1)
    x = jnp.where(w > 0, x, 0)
    below = jnp.cumsum(w, axis=-1) - w  # weight of the members ranked lower
    skill = jnp.sum(w * jnp.abs(x), axis=-1)
    spread = jnp.sum(w * x * (2 * below + w - 1), axis=-1)  # below - above, above = 1 - below - w
    if fair:
        spread = ratio(spread, 1 - jnp.sum(w * w, axis=-1))
    return jnp.where(jnp.isnan(observed), jnp.nan, skill - spread)


def crps_gaussian(mu: ArrayLike, sigma: ArrayLike, observed: ArrayLike, /) -> Array:
    """Closed-form CRPS of a normal forecast N(mu, sigma²) at every point (Gneiting 2005).

    ``CRPS = sigma [z (2 Φ(z) - 1) + 2 φ(z) - 1/√π]`` with ``z = (y - mu) / sigma``. A zero
    sigma gives the deterministic limit ``|y - mu|``; a negative sigma or any NaN gives NaN.
    """
    check_broadcast(mu=mu, sigma=sigma, observed=observed)
    return _crps_gaussian(*as_float(mu, sigma, observed))


@jax.jit
def _crps_gaussian(mu: Array, sigma: Array, observed: Array) -> Array:
    z = ratio(observed - mu, sigma)
    spread = sigma * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi))
    score = jnp.where(sigma == 0, jnp.abs(observed - mu), spread)
    return jnp.where(sigma < 0, jnp.nan, score)


def pooled_crps(
    forecast: ArrayLike,
    observed: ArrayLike,
    /,
    *,
    scale: int,
    pool: str = "avg",
    ensemble_axis: int = -1,
    stride: int | None = None,
    fair: bool = False,
) -> Array:
    """CRPS of spatially pooled fields, as in DGMR (Ravuri et al. 2021, Nature).

    Members and observations are average- or max-pooled over ``scale x scale`` windows of
    the last two (spatial) axes, without padding, then scored with ``crps_ensemble``. Large
    scales reward forecasts with the right precipitation amount (avg) or peak intensity (max)
    nearby instead of at exactly the right pixel. A window containing NaN is NaN.

    Args:
      forecast: ensemble, members along ``ensemble_axis``, spatial axes last: ``(..., H, W, M)``
        for the default ``ensemble_axis=-1``.
      observed: ``(..., H, W)``.
      scale: window size in pixels (1: the plain per-pixel CRPS).
      pool: ``"avg"`` or ``"max"``.
      stride: window step in pixels (None: ``scale``, i.e. non-overlapping windows).
      fair: fair CRPS estimator.

    Returns:
      ``(..., H', W')`` CRPS of the pooled fields, ``H' = (H - scale) // stride + 1``.
    """
    scale, stride = check_pooling(
        size=scale, kind=pool, stride=stride, names=("scale", "pool", "stride")
    )
    forecast, observed = as_float(forecast, observed)
    members = jnp.moveaxis(forecast, _member_axis(forecast, ensemble_axis), 0)
    if observed.ndim < 2 or min(observed.shape[-2:]) < scale:
        want = f"(..., H, W) with H, W >= {scale}"
        raise DataError(expected("observed.shape", want, observed.shape))
    pooled_members = pooling.pool(members, size=scale, kind=pool, stride=stride)
    pooled_observed = pooling.pool(observed, size=scale, kind=pool, stride=stride)
    return crps_ensemble(pooled_members, pooled_observed, ensemble_axis=0, fair=fair)
