"""Mask-as-weights helpers shared by every metric kernel.

The NaN policy itself is documented once, in ``climml/metrics/__init__.py``; these helpers are
how the kernels implement it inside ``jit`` without boolean indexing (which would make shapes
depend on data).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from jax import Array, lax
from jax.typing import ArrayLike

from climml.errors import DataError, expected

Axis = int | Sequence[int] | None


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


def weighted_mean(values: ArrayLike, axis: Axis = None, weights: ArrayLike | None = None) -> Array:
    """Weighted mean over ``axis`` skipping NaN values; NaN where no valid value remains.

    Args:
      values: array of any shape (NaN = missing).
      axis: axes to reduce (None: all).
      weights: non-negative weights broadcastable against ``values`` (None: equal).

    Returns:
      ``values`` reduced over ``axis``.
    """
    (values,) = as_float(values)
    check_broadcast(values=values, weights=weights)
    valid = valid_mask(values)
    w = point_weights(valid, weights, values.dtype)
    total, weight = sum_together([w * zero_where_invalid(values, valid), w], axis)
    return ratio(total, weight)


def sum_together(arrays: Sequence[Array], axis: Axis) -> tuple[Array, ...]:
    """Sums of equally shaped arrays over the same axes, in one variadic XLA reduction.

    On CPU, XLA fuses many separate sums of a shared input poorly; one multi-operand
    reduction is ~7x faster (30 counts of a (365, 90, 180) cube: 0.06 s instead of 0.45 s).
    """
    # Booleans would reduce with logical or: count them as int32.
    arrays = [a.astype(jnp.int32) if a.dtype == jnp.bool_ else a for a in arrays]
    ndim = arrays[0].ndim
    if axis is None:
        dims = tuple(range(ndim))
    else:
        dims = tuple(sorted({a % ndim for a in ((axis,) if isinstance(axis, int) else axis)}))
    zeros = tuple(jnp.zeros((), a.dtype) for a in arrays)

    def add(xs: tuple[Array, ...], ys: tuple[Array, ...]) -> tuple[Array, ...]:
        return tuple(x + y for x, y in zip(xs, ys, strict=True))

    return tuple(lax.reduce(tuple(arrays), zeros, add, dims))


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
