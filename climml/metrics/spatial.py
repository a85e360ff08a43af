"""Fractions skill score (FSS; Roberts & Lean 2008), a neighbourhood score for fields.

Both fields are turned into event indicators ``x op threshold``; the fraction of event cells
in a ``window x window`` neighbourhood is computed at every cell, and

    FSS = 1 - Σ (P_f - P_o)² / (Σ P_f² + Σ P_o²)

summed over cells (and over every field that is pooled into the score). Edge treatment, as
``scipy.ndimage.uniform_filter(mode="constant")`` and pysteps: cells beyond the domain count
as non-events (zero padding), and the window is centred, reaching ``window // 2`` cells
before and ``(window - 1) // 2`` after the centre (so an even window leans backwards). NaN
cells count as non-events inside windows and are left out of the sums (mask-as-weights).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array, lax
from jax.typing import ArrayLike

from climml.errors import ConfigError, DataError, expected
from climml.metrics._masking import (
    Axis,
    as_float,
    check_pair,
    ratio,
    sum_together,
)
from climml.metrics.categorical import COMPARISONS


class FssSums(NamedTuple):
    """Additive FSS statistics; ``a + b`` pools fields, ``.fss()`` forms the score."""

    squared_difference: Array  # Σ (P_f - P_o)²
    forecast_squares: Array  # Σ P_f²
    observed_squares: Array  # Σ P_o²

    def __add__(self, other: FssSums) -> FssSums:
        return FssSums(*(a + b for a, b in zip(self, other, strict=True)))

    def fss(self) -> Array:
        """FSS in [0, 1]; NaN when neither field has an event anywhere."""
        reference = self.forecast_squares + self.observed_squares
        return 1 - ratio(self.squared_difference, reference)


def neighbourhood_fraction(events: Array, window: int, dtype=jnp.float32) -> Array:
    """Fraction of event cells in the centred ``window x window`` box around each cell.

    Args:
      events: ``(..., H, W)`` 0/1 integer indicators.
      window: box size in cells.
      dtype: floating dtype of the result.

    Returns:
      ``(..., H, W)`` fractions; zero padding outside the domain (see module docstring).
    """
    before, after = window // 2, (window - 1) // 2
    # Separable box sums (rows, then columns) with zero padding; int32 keeps the counts exact.
    # Two 1-D window sums compile and run several times faster on CPU than a summed-area
    # table, whose cumulative sums XLA lowers to a scan of many steps.
    keep = events.ndim - 2
    ones, pad = (1,) * events.ndim, [(0, 0)] * keep
    zero = jnp.zeros((), events.dtype)
    rows = lax.reduce_window(
        events, zero, lax.add, (1,) * keep + (window, 1), ones, [*pad, (before, after), (0, 0)]
    )
    boxes = lax.reduce_window(
        rows, zero, lax.add, (1,) * keep + (1, window), ones, [*pad, (0, 0), (before, after)]
    )
    return boxes.astype(dtype) / (window * window)


def fss_sums(
    forecast: ArrayLike,
    observed: ArrayLike,
    /,
    *,
    threshold: ArrayLike,
    window: int,
    op: str = ">=",
    axis: Axis = None,
) -> FssSums:
    """FSS statistics of the event ``x op threshold`` at neighbourhood size ``window``.

    Args:
      forecast, observed: fields ``(..., H, W)`` (spatial axes last) with the same number
        of axes (size-1 axes broadcast).
      threshold: scalar, or 1-D array of K thresholds (adds a leading axis, vmap).
      window: neighbourhood size in cells (1: grid-point scale).
      op: ``">="`` (default), ``">"``, ``"<="`` or ``"<"``.
      axis: leading axes pooled into the score (None: all of them; ``()``: one score per
        field). The spatial axes are always summed.

    Returns:
      ``FssSums`` shaped like the kept leading axes (with the threshold axis first).
    """
    if op not in COMPARISONS:
        raise ConfigError(expected("op", f"one of {sorted(COMPARISONS)}", repr(op)))
    if not isinstance(window, int) or window < 1:
        raise ConfigError(expected("window", "a positive int", window))
    shape = check_pair("forecast", forecast, "observed", observed)
    if len(shape) < 2:
        raise DataError(expected("forecast.shape", "(..., H, W)", shape))
    forecast, observed, threshold = as_float(forecast, observed, threshold)
    forecast, observed = jnp.broadcast_to(forecast, shape), jnp.broadcast_to(observed, shape)
    lead = len(shape) - 2
    pooled = tuple(range(lead)) if axis is None else axis
    pooled = (pooled,) if isinstance(pooled, int) else tuple(pooled)
    pooled = tuple(sorted(a % lead for a in pooled)) + (lead, lead + 1)
    return _fss_statistics(forecast, observed, threshold, window, op, pooled)


@functools.partial(jax.jit, static_argnames=("window", "op", "pooled"))
def _fss_statistics(forecast, observed, threshold, window: int, op: str, pooled) -> FssSums:
    """``FssSums`` summed over the ``pooled`` axes, vmapped over 1-D thresholds."""
    valid = ~jnp.isnan(forecast) & ~jnp.isnan(observed)
    compare = COMPARISONS[op]

    def sums(t: Array) -> FssSums:
        def fraction(field: Array) -> Array:
            events = (compare(field, t) & valid).astype(jnp.int32)
            return jnp.where(valid, neighbourhood_fraction(events, window, field.dtype), 0)

        p_f, p_o = fraction(forecast), fraction(observed)
        return FssSums(*sum_together([(p_f - p_o) ** 2, p_f**2, p_o**2], pooled))

    return jax.vmap(sums)(threshold) if threshold.ndim == 1 else sums(threshold)


def fss(forecast, observed, /, *, threshold, window: int, op: str = ">=", axis: Axis = None):
    """Fractions skill score in [0, 1] (arguments as ``fss_sums``)."""
    stats = fss_sums(forecast, observed, threshold=threshold, window=window, op=op, axis=axis)
    return stats.fss()
