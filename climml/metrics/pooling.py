"""Spatial pooling of fields before scoring (Ravuri et al. 2021, Nature, "DGMR").

Nowcasts are judged at several spatial scales by pooling both forecast and observation over
``size x size`` pixel windows before a pixel-wise score: average pooling keeps the rain
amount of a neighbourhood, max pooling its peak intensity, so a forecast that puts the right
rain a few pixels off is no longer penalised twice (the "double penalty"). DGMR scores CRPS
after average and max pooling over 1, 4 and 16 km and CSI after max pooling; ``size=1`` is
the unpooled field.

Windows are laid on the last two (spatial) axes without padding; ``stride=size`` (the
default) tiles them without overlap, ``stride=1`` slides them cell by cell. A window holding
any NaN cell is NaN in the pooled field, so it is masked by the scores (a window half outside
the radar's range is not scored as if the missing half were dry).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import Array, lax
from jax.typing import ArrayLike

from climml.errors import ConfigError, DataError, expected
from climml.metrics._masking import as_float

POOLINGS = ("avg", "max")


def pool(x: ArrayLike, /, *, size: int, kind: str = "avg", stride: int | None = None) -> Array:
    """Average- or max-pool the last two axes over ``size x size`` windows.

    Args:
      x: ``(..., H, W)`` fields (e.g. rain rate in mm/h); NaN = missing.
      size: window side in cells (1 returns the fields unchanged, NaN included).
      kind: ``"avg"`` (mean of the window) or ``"max"`` (its largest value).
      stride: window step in cells (None: ``size``, non-overlapping windows).

    Returns:
      ``(..., H', W')`` with ``H' = (H - size) // stride + 1`` (likewise ``W'``), in the
      units of ``x``; NaN where the window holds a NaN.
    """
    size, stride = check_pooling(size=size, kind=kind, stride=stride)
    (x,) = as_float(x)
    if x.ndim < 2 or min(x.shape[-2:]) < size:
        raise DataError(expected("x.shape", f"(..., H, W) with H, W >= {size}", x.shape))
    if size == 1 and stride == 1:
        return x
    return _pool(x, size, stride, kind)


def check_pooling(
    *,
    size: int,
    kind: str = "avg",
    stride: int | None = None,
    names: tuple[str, str, str] = ("size", "kind", "stride"),
) -> tuple[int, int]:
    """``(size, stride)`` checked (stride None becomes ``size``), else ``ConfigError`` naming
    the argument by ``names`` (the caller's names for size, kind and stride)."""
    if kind not in POOLINGS:
        raise ConfigError(expected(names[1], f"one of {list(POOLINGS)}", repr(kind)))
    stride = size if stride is None else stride
    for name, value in ((names[0], size), (names[2], stride)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(expected(name, "a positive int", value))
    return size, stride


@functools.partial(jax.jit, static_argnames=("size", "stride", "kind"))
def _pool(x: Array, size: int, stride: int, kind: str) -> Array:
    window = (1,) * (x.ndim - 2) + (size, size)
    strides = (1,) * (x.ndim - 2) + (stride, stride)
    missing = jnp.isnan(x)
    if kind == "avg":
        zero = jnp.zeros((), x.dtype)
        total = lax.reduce_window(jnp.where(missing, 0, x), zero, lax.add, window, strides, "VALID")
        pooled = total / (size * size)
    else:
        lowest = jnp.full((), -jnp.inf, x.dtype)
        filled = jnp.where(missing, -jnp.inf, x)
        pooled = lax.reduce_window(filled, lowest, lax.max, window, strides, "VALID")
    # Counting the NaN cells per window with the same reduction keeps this one fused pass.
    n_missing = lax.reduce_window(
        missing.astype(jnp.int32), jnp.int32(0), lax.add, window, strides, "VALID"
    )
    return jnp.where(n_missing > 0, jnp.nan, pooled)
