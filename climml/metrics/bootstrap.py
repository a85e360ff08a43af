"""Bootstrap confidence intervals for any metric, vectorised over resamples.

Resampling is along the leading (sample, usually time) axis of every array at once, with the
same indices for all of them so forecast/observation pairs stay together. ``block > 1`` gives
the moving-block bootstrap (Kuensch 1989): blocks of consecutive samples are drawn, which
keeps the autocorrelation of a time series inside each block and so avoids intervals that
are too narrow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from climml.errors import ConfigError, DataError, expected


def resample_indices(key: Array, length: int, /, *, block: int = 1) -> Array:
    """Indices ``(length,)`` of one (moving-block) bootstrap resample of ``range(length)``.

    ``ceil(length / block)`` block starts are drawn uniformly from ``[0, length - block]``;
    the blocks are concatenated and cut to ``length``.
    """
    n_blocks = -(-length // block)
    starts = jax.random.randint(key, (n_blocks,), 0, length - block + 1)
    return (starts[:, None] + jnp.arange(block)).reshape(-1)[:length]


def bootstrap(
    metric_fn: Callable[..., ArrayLike],
    /,
    *arrays: ArrayLike,
    n: int = 1000,
    key: Array,
    block: int = 1,
    percentiles: Sequence[float] = (2.5, 50.0, 97.5),
    batch_size: int | None = None,
) -> Array:
    """Percentiles of ``metric_fn(*arrays)`` over ``n`` bootstrap resamples.

    Args:
      metric_fn: pure function of the arrays returning an array of any fixed shape S.
      arrays: arrays sharing their leading (sample) axis of length T.
      n: number of resamples.
      key: ``jax.random`` key; the same key gives the same intervals.
      block: block length for the moving-block bootstrap (1: ordinary bootstrap).
      percentiles: percentiles in [0, 100] to return.
      batch_size: resamples evaluated at once (vmap); None vmaps all ``n``, a smaller value
        bounds memory to ``batch_size`` copies of the data.

    Returns:
      ``(len(percentiles), *S)`` array; resamples with a NaN metric are skipped.
    """
    if not arrays:
        raise DataError(expected("arrays", "at least one array to resample", "none"))
    arrays = tuple(jnp.asarray(a) for a in arrays)
    lengths = {a.shape[0] if a.ndim else 0 for a in arrays}
    if len(lengths) != 1 or 0 in lengths:
        raise DataError(expected("arrays", "one shared non-empty leading axis", sorted(lengths)))
    (length,) = lengths
    if not isinstance(n, int) or n < 1:
        raise ConfigError(expected("n", "a positive int", n))
    if not isinstance(block, int) or not 1 <= block <= length:
        raise ConfigError(expected("block", f"an int in [1, {length}]", block))

    def one_resample(k: Array) -> Array:
        index = resample_indices(k, length, block=block)
        return jnp.asarray(metric_fn(*(a[index] for a in arrays)))

    keys = jax.random.split(key, n)
    samples = jax.lax.map(one_resample, keys, batch_size=batch_size or n)
    # Resamples where the metric is undefined (e.g. AUC with one class) are left out.
    return jnp.nanpercentile(samples, jnp.asarray(percentiles), axis=0)
