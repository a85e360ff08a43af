"""Mask-as-weights helpers shared by every metric kernel.

The NaN policy itself is documented once, in ``climml/metrics/__init__.py``; these helpers are
how the kernels implement it inside ``jit`` without boolean indexing (which would make shapes
depend on data).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax
from jax.typing import ArrayLike

from climml.errors import DataError, expected

Axis = int | Sequence[int] | None
T = TypeVar("T")


def as_float(*arrays: ArrayLike) -> tuple[Array, ...]:
    """Convert inputs to jnp arrays of one common floating dtype.

    The widest floating input dtype wins; integer and boolean inputs alone give the default
    float (float32, or float64 under ``jax_enable_x64``). Done explicitly so that kernels also
    run under ``jax_numpy_dtype_promotion="strict"``.
    """
    converted = [jnp.asarray(a) for a in arrays]
    floats = [a.dtype for a in converted if jnp.issubdtype(a.dtype, jnp.floating)]
    dtype = max(floats, key=lambda d: d.itemsize) if floats else jnp.asarray(0.0).dtype
    return tuple(a.astype(dtype) for a in converted)


def check_broadcast(**arrays: ArrayLike | tuple[int, ...] | None) -> tuple[int, ...]:
    """Shape all named arrays (or shape tuples) broadcast to; ``DataError`` naming the first
    one that does not."""
    shape: tuple[int, ...] = ()
    first = None
    for name, array in arrays.items():
        if array is None:
            continue
        array_shape = array if isinstance(array, tuple) else tuple(np.shape(array))
        try:
            shape = np.broadcast_shapes(shape, array_shape)
        except ValueError:
            raise DataError(
                expected(f"{name}.shape", f"broadcastable with {first}.shape {shape}", array_shape)
            ) from None
        first = first or name
    return shape


def check_pair(
    first: str, a: ArrayLike, second: str, b: ArrayLike, weights: ArrayLike | None = None
) -> tuple[int, ...]:
    """Shape of a (forecast, observed)-like pair, which must have the same number of axes.

    Size-1 axes broadcast (numpy rules), but an extra axis does not: a forecast with a
    member axis the observation lacks would otherwise be pooled silently over its members.
    ``weights`` broadcast against the pair with numpy rules (e.g. ``(lat, 1)``).
    """
    shape_a, shape_b = tuple(np.shape(a)), tuple(np.shape(b))
    if len(shape_a) != len(shape_b):
        hint = ""
        if len(shape_a) > len(shape_b):
            hint = " (an ensemble member axis? score the ensemble mean, or use crps_ensemble)"
        want = f"as many axes as {second}.shape {shape_b}"
        raise DataError(expected(f"{first}.shape", want, f"{shape_a}{hint}"))
    return check_broadcast(**{first: a, second: b, "weights": weights})


def is_concrete(*arrays: ArrayLike | None) -> bool:
    """True when every array holds values (not a tracer under ``jit``/``vmap``).

    Value checks (labels in {0, 1}, probabilities in [0, 1]) need the data, so they run on
    concrete inputs only; traced inputs go through unchecked.
    """
    return not any(isinstance(a, jax.core.Tracer) for a in arrays)


def check_labels(name: str, labels: ArrayLike) -> None:
    """``DataError`` unless the (concrete) ``labels`` are boolean or 0/1 (NaN = missing)."""
    if not is_concrete(labels):
        return
    values = np.asarray(labels)
    if values.dtype == np.bool_:
        return
    bad = values[~np.isnan(values) & (values != 0) & (values != 1)]
    if bad.size:
        found = f"{bad.size} other values such as {np.unique(bad)[:3].tolist()}"
        raise DataError(expected(name, "0/1 or boolean outcomes (NaN = missing)", found))


def check_probabilities(name: str, probability: ArrayLike) -> None:
    """``DataError`` unless the (concrete) values lie in [0, 1] (NaN = missing)."""
    if not is_concrete(probability):
        return
    values = np.asarray(probability)
    if values.dtype == np.bool_ or values.size == 0 or np.all(np.isnan(values)):
        return
    low, high = np.nanmin(values), np.nanmax(values)
    if low < 0 or high > 1:
        found = f"values in [{low}, {high}]" + (" (percent?)" if high <= 100 else "")
        raise DataError(expected(name, "probabilities in [0, 1]", found))


def valid_mask(*arrays: Array) -> Array:
    """True where no array is NaN (broadcast over all of them)."""
    valid = jnp.asarray(True)
    for a in arrays:
        valid = valid & ~jnp.isnan(a)
    return valid


def point_weights(valid: Array, weights: ArrayLike | None, dtype) -> Array:
    """Weights with masked points set to 0 (mask-as-weights); weights default to 1.

    Weights must be non-negative and broadcast against the data (numpy rules, so a latitude
    weight for ``(time, lat, lon)`` data has shape ``(lat, 1)``). A NaN weight masks its point.
    """
    if weights is None:
        return valid.astype(dtype)
    w = jnp.asarray(weights).astype(dtype)
    return jnp.where(valid & ~jnp.isnan(w), w, 0)


def zero_where_invalid(x: Array, valid: Array) -> Array:
    """``x`` with invalid entries replaced by 0, so ``0 * NaN`` never poisons a sum."""
    return jnp.where(valid, x, 0)


def ratio(numerator: Array, denominator: Array) -> Array:
    """``numerator / denominator``, NaN where the denominator is 0 (e.g. no valid points)."""
    safe = jnp.where(denominator == 0, 1, denominator)
    return jnp.where(denominator == 0, jnp.nan, numerator / safe)


def weighted_mean(
    values: ArrayLike, /, *, axis: Axis = None, weights: ArrayLike | None = None
) -> Array:
    """Weighted mean over ``axis`` skipping NaN values; NaN where no valid value remains.

    Args:
      values: array of any shape (NaN = missing).
      axis: axes to reduce (None: all).
      weights: non-negative weights broadcastable against ``values`` (None: equal).

    Returns:
      ``values`` reduced over ``axis``.
    """
    check_broadcast(values=values, weights=weights)
    return _weighted_mean(values, weights, static_axis(axis))


@functools.partial(jax.jit, static_argnames="axis")
def _weighted_mean(values: ArrayLike, weights: ArrayLike | None, axis: Axis) -> Array:
    (values,) = as_float(values)
    valid = valid_mask(values)
    w = point_weights(valid, weights, values.dtype)
    total, weight = sum_together([w * zero_where_invalid(values, valid), w], axis)
    return ratio(total, weight)


BLOCK = 128  # terms summed in one go before the partial sums are summed in turn


def sum_together(arrays: Sequence[Array], axis: Axis) -> tuple[Array, ...]:
    """Sums of equally shaped arrays over the same axes, accurate for any number of terms.

    Floating sums are blocked (pairwise): ``BLOCK`` terms are summed, then the block sums
    ``BLOCK`` at a time, and so on. A float32 sum of n terms in one running total loses
    about ``n * 6e-8`` of its value in the worst case (XLA's CPU reduction is a running
    total per vector lane), 10^-2 for 10^6 points; blocking bounds the loss by
    ``BLOCK * log_BLOCK(n) * 6e-8`` and in practice leaves ~10^-7. Each level is one
    variadic XLA reduction of every array at once: on CPU, XLA fuses many separate sums of
    a shared input poorly, and one multi-operand reduction is several times faster
    (benchmarks/RESULTS.md, metrics). Integer sums are exact in any order and are reduced in
    one level.
    """
    # Booleans would reduce with logical or: count them as int32.
    arrays = [a.astype(jnp.int32) if a.dtype == jnp.bool_ else a for a in arrays]
    shape = arrays[0].shape
    dims = reduced_dims(axis, len(shape))
    n = math.prod(shape[d] for d in dims)
    if n <= BLOCK or not any(jnp.issubdtype(a.dtype, jnp.floating) for a in arrays):
        return _reduce(arrays, dims)
    kept = [d for d in range(len(shape)) if d not in dims]
    kept_shape = tuple(shape[d] for d in kept)
    # Lay the reduced axes out as one axis; a reshape when they are leading or trailing
    # (no data moves), a transpose otherwise.
    if dims == tuple(range(len(dims))):
        return _blocked_sum([a.reshape(n, *kept_shape) for a in arrays], 0)
    if dims != tuple(range(len(kept), len(shape))):
        arrays = [jnp.transpose(a, kept + list(dims)) for a in arrays]
    return _blocked_sum([a.reshape(*kept_shape, n) for a in arrays], len(kept))


def _blocked_sum(arrays: list[Array], axis: int) -> tuple[Array, ...]:
    """Sum over one ``axis`` in levels of ``BLOCK`` terms (see ``sum_together``)."""
    while (n := arrays[0].shape[axis]) > BLOCK:
        full, rest = divmod(n, BLOCK)
        blocks = [
            lax.slice_in_dim(a, 0, full * BLOCK, axis=axis).reshape(
                a.shape[:axis] + (full, BLOCK) + a.shape[axis + 1 :]
            )
            for a in arrays
        ]
        sums = _reduce(blocks, (axis + 1,))
        if rest:  # the leftover terms become one more partial sum
            tails = _reduce(
                [lax.slice_in_dim(a, full * BLOCK, n, axis=axis) for a in arrays], (axis,)
            )
            sums = [
                jnp.concatenate([s, jnp.expand_dims(t, axis)], axis=axis)
                for s, t in zip(sums, tails, strict=True)
            ]
        arrays = list(sums)
    return _reduce(arrays, (axis,))


def _reduce(arrays: Sequence[Array], dims: tuple[int, ...]) -> tuple[Array, ...]:
    """One variadic XLA sum of all ``arrays`` over ``dims``."""
    zeros = tuple(jnp.zeros((), a.dtype) for a in arrays)

    def add(xs: tuple[Array, ...], ys: tuple[Array, ...]) -> tuple[Array, ...]:
        return tuple(x + y for x, y in zip(xs, ys, strict=True))

    return tuple(lax.reduce(tuple(arrays), zeros, add, dims))


def static_axis(axis: Axis) -> int | tuple[int, ...] | None:
    """``axis`` in a hashable form, for a ``jit`` static argument (lists become tuples)."""
    if axis is None:
        return None
    if isinstance(axis, int | np.integer):
        return int(axis)
    return tuple(int(a) for a in axis)


def reduced_dims(axis: Axis, ndim: int) -> tuple[int, ...]:
    """``axis`` as sorted non-negative dims (``None``: all of them)."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int | np.integer) else axis
    return tuple(sorted({int(a) % ndim for a in axes}))


def merge(stacked: T) -> T:
    """Merge statistics stacked along a leading axis into one, pairwise, with their ``+``.

    ``stacked`` is any of the statistics NamedTuples (``Comoments``, ``ErrorSums``,
    ``Contingency``, ...) whose fields carry a leading axis of K chunks, as
    ``jax.lax.all_gather(stats, axis_name)`` inside ``shard_map`` or a ``vmap`` over chunks
    returns them; a plain tuple of such statistics is merged item by item. Merging in a
    tree keeps the rounding error ``O(log K)`` instead of ``O(K)``; for ``Comoments``, whose
    ``+`` is not a plain sum, it is also the only correct way to combine them across
    devices (a ``psum`` of means and centred moments is wrong).
    """
    if type(stacked) in (tuple, list):  # several kinds of statistics at once
        return type(stacked)(merge(s) for s in stacked)
    count = jax.tree.leaves(stacked)[0].shape[0]
    while count > 1:
        pairs = count // 2
        evens = jax.tree.map(lambda x, end=2 * pairs: x[0:end:2], stacked)
        odds = jax.tree.map(lambda x, end=2 * pairs: x[1:end:2], stacked)
        merged = evens + odds
        if count % 2:  # the last chunk waits for the next level
            last = jax.tree.map(lambda x: x[-1:], stacked)
            merged = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), merged, last)
        stacked, count = merged, pairs + count % 2
    return jax.tree.map(lambda x: x[0], stacked)


def move_to_end(x: Array, axis: Axis) -> Array:
    """Move the axes in ``axis`` to the end and flatten them into one: ``(*kept, n)``.

    ``axis=None`` flattens everything into one trailing axis of the full size.
    """
    if axis is None:
        return x.reshape(-1)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    axes = tuple(a % x.ndim for a in axes)
    kept = [a for a in range(x.ndim) if a not in axes]
    moved = jnp.transpose(x, kept + list(axes))
    return moved.reshape(*[x.shape[a] for a in kept], -1)
