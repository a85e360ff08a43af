"""Categorical (yes/no event) verification from a 2x2 contingency table.

``contingency`` reduces forecast/observation pairs to the four counts; the scores are methods
of the table, so tables from several batches can be added first and scored last. The
module-level functions (``csi(forecast, observed, threshold=t)``, ...) do both in one call.

Definitions follow the WWRP/WGNE Joint Working Group on Forecast Verification ("CAWCR" pages):
with hits a, false alarms b, misses c and correct negatives d, n = a + b + c + d,

* CSI = a / (a + b + c)                       * POD (recall) = a / (a + c)
* FAR = b / (a + b)  (false alarm *ratio*)    * POFD = b / (b + d)
* frequency bias = (a + b) / (a + c)          * accuracy = (a + d) / n
* ETS = (a - r) / (a + b + c - r), r = (a + c)(a + b) / n
* HSS = 2(ad - bc) / [(a + c)(c + d) + (a + b)(b + d)]
* precision = a / (a + b)                     * F1 = 2a / (2a + b + c)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from climml.errors import ConfigError, DataError, expected
from climml.metrics._masking import (
    Axis,
    as_float,
    check_pair,
    point_weights,
    ratio,
    sum_together,
    valid_mask,
)

COMPARISONS: dict[str, Callable[[Array, Array], Array]] = {
    ">=": jnp.greater_equal,
    ">": jnp.greater,
    "<=": jnp.less_equal,
    "<": jnp.less,
}


class Contingency(NamedTuple):
    """2x2 contingency table; counts (int32) or summed weights (float). ``a + b`` adds tables."""

    hits: Array
    misses: Array
    false_alarms: Array
    correct_negatives: Array

    def __add__(self, other: Contingency) -> Contingency:
        return Contingency(*(x + y for x, y in zip(self, other, strict=True)))

    def _float(self) -> tuple[Array, Array, Array, Array]:
        # Products such as a*d overflow int32 beyond ~46k events: score in floating point.
        return as_float(*self)

    def csi(self) -> Array:
        """Critical success index (threat score), in [0, 1]."""
        a, c, b, _ = self._float()
        return ratio(a, a + b + c)

    def pod(self) -> Array:
        """Probability of detection (hit rate), in [0, 1]."""
        a, c, _, _ = self._float()
        return ratio(a, a + c)

    def far(self) -> Array:
        """False alarm ratio: fraction of forecast events that did not occur, in [0, 1]."""
        a, _, b, _ = self._float()
        return ratio(b, a + b)

    def pofd(self) -> Array:
        """Probability of false detection (false alarm rate), in [0, 1]."""
        _, _, b, d = self._float()
        return ratio(b, b + d)

    def frequency_bias(self) -> Array:
        """Forecast event frequency over observed event frequency, in [0, inf)."""
        a, c, b, _ = self._float()
        return ratio(a + b, a + c)

    def ets(self) -> Array:
        """Equitable threat score (Gilbert skill score), in [-1/3, 1]."""
        a, c, b, d = self._float()
        random_hits = ratio((a + c) * (a + b), a + b + c + d)
        return ratio(a - random_hits, a + b + c - random_hits)

    def hss(self) -> Array:
        """Heidke skill score, in [-1, 1]."""
        a, c, b, d = self._float()
        return ratio(2 * (a * d - b * c), (a + c) * (c + d) + (a + b) * (b + d))

    def accuracy(self) -> Array:
        """Fraction correct, in [0, 1]."""
        a, c, b, d = self._float()
        return ratio(a + d, a + b + c + d)

    def precision(self) -> Array:
        """Fraction of forecast events that occurred (1 - FAR), in [0, 1]."""
        a, _, b, _ = self._float()
        return ratio(a, a + b)

    def recall(self) -> Array:
        """Same as POD, in [0, 1]."""
        return self.pod()

    def f1_score(self) -> Array:
        """Harmonic mean of precision and recall, in [0, 1]."""
        a, c, b, _ = self._float()
        return ratio(2 * a, 2 * a + b + c)


def contingency(
    forecast: ArrayLike,
    observed: ArrayLike,
    /,
    *,
    threshold: ArrayLike,
    op: str = ">=",
    axis: Axis = None,
    weights: ArrayLike | None = None,
) -> Contingency:
    """Count hits, misses, false alarms and correct negatives of the event ``x op threshold``.

    Args:
      forecast, observed: arrays of the same quantity (e.g. mm/h) with the same number of
        axes (size-1 axes broadcast); NaN masks.
      threshold: scalar, or 1-D array of K thresholds evaluated at once (vmap).
      op: ``">="`` (default), ``">"``, ``"<="`` or ``"<"``.
      axis: axes to reduce (None: all).
      weights: non-negative weights broadcastable against the data (None: counts, int32,
        exact up to 2**31 points per cell).

    Returns:
      ``Contingency`` of arrays shaped like the data with ``axis`` removed, with a leading
      axis of size K when ``threshold`` is 1-D.
    """
    if op not in COMPARISONS:
        raise ConfigError(expected("op", f"one of {sorted(COMPARISONS)}", repr(op)))
    check_pair("forecast", forecast, "observed", observed, weights)
    forecast, observed, threshold = as_float(forecast, observed, threshold)
    if threshold.ndim > 1:
        raise DataError(expected("threshold", "a scalar or 1-D array", f"shape {threshold.shape}"))
    valid = valid_mask(forecast, observed)
    w = point_weights(valid, weights, jnp.int32 if weights is None else forecast.dtype)
    (total,) = sum_together([w], axis)
    compare = COMPARISONS[op]

    def table(t: Array) -> Contingency:
        f_event, o_event = compare(forecast, t), compare(observed, t)
        # Three sums in one pass; the other cells follow from the margins.
        hits, f_events, o_events = sum_together(
            [
                jnp.where(f_event & o_event, w, 0),
                jnp.where(f_event, w, 0),
                jnp.where(o_event, w, 0),
            ],
            axis,
        )
        return Contingency(
            hits=hits,
            misses=o_events - hits,
            false_alarms=f_events - hits,
            correct_negatives=total - f_events - o_events + hits,
        )

    return jax.vmap(table)(threshold) if threshold.ndim == 1 else table(threshold)


def _table(forecast, observed, threshold, op, axis, weights) -> Contingency:
    return contingency(forecast, observed, threshold=threshold, op=op, axis=axis, weights=weights)


def csi(forecast, observed, /, *, threshold, op=">=", axis: Axis = None, weights=None) -> Array:
    """Critical success index of the event ``x op threshold`` (arguments as ``contingency``)."""
    return _table(forecast, observed, threshold, op, axis, weights).csi()


def pod(forecast, observed, /, *, threshold, op=">=", axis: Axis = None, weights=None) -> Array:
    """Probability of detection (arguments as ``contingency``)."""
    return _table(forecast, observed, threshold, op, axis, weights).pod()


def far(forecast, observed, /, *, threshold, op=">=", axis: Axis = None, weights=None) -> Array:
    """False alarm ratio (arguments as ``contingency``)."""
    return _table(forecast, observed, threshold, op, axis, weights).far()


def pofd(forecast, observed, /, *, threshold, op=">=", axis: Axis = None, weights=None) -> Array:
    """Probability of false detection (arguments as ``contingency``)."""
    return _table(forecast, observed, threshold, op, axis, weights).pofd()


def frequency_bias(forecast, observed, /, *, threshold, op=">=", axis: Axis = None, weights=None):
    """Frequency bias (arguments as ``contingency``)."""
    return _table(forecast, observed, threshold, op, axis, weights).frequency_bias()


def ets(forecast, observed, /, *, threshold, op=">=", axis: Axis = None, weights=None) -> Array:
    """Equitable threat score (arguments as ``contingency``)."""
    return _table(forecast, observed, threshold, op, axis, weights).ets()


def hss(forecast, observed, /, *, threshold, op=">=", axis: Axis = None, weights=None) -> Array:
    """Heidke skill score (arguments as ``contingency``)."""
    return _table(forecast, observed, threshold, op, axis, weights).hss()


# Binary classification scores: the threshold defaults to 0.5 so that 0/1 labels and
# probabilities both work as in scikit-learn (``pred >= 0.5`` is the positive class).


def accuracy(forecast, observed, /, *, threshold=0.5, op=">=", axis: Axis = None, weights=None):
    """Fraction correct of binary predictions (arguments as ``contingency``)."""
    return _table(forecast, observed, threshold, op, axis, weights).accuracy()


def precision(forecast, observed, /, *, threshold=0.5, op=">=", axis: Axis = None, weights=None):
    """Precision of binary predictions (arguments as ``contingency``)."""
    return _table(forecast, observed, threshold, op, axis, weights).precision()


def recall(forecast, observed, /, *, threshold=0.5, op=">=", axis: Axis = None, weights=None):
    """Recall of binary predictions (arguments as ``contingency``)."""
    return _table(forecast, observed, threshold, op, axis, weights).recall()


def f1_score(forecast, observed, /, *, threshold=0.5, op=">=", axis: Axis = None, weights=None):
    """F1 score of binary predictions (arguments as ``contingency``)."""
    return _table(forecast, observed, threshold, op, axis, weights).f1_score()
