"""Convolutions for gridded climate fields that wrap around in longitude.

A global grid is periodic in longitude: the column east of the last meridian is the first one.
:class:`Conv` with ``lon_periodic=True`` pads the last spatial axis (longitude) with the values
from the other side of the globe and the other spatial axes (latitude, ...) with zeros, so that
a model built from it commutes with a roll of its input along longitude and sees no edge at
the grid's seam. With ``lon_periodic=False`` it is exactly ``nnx.Conv``.

Models compile with XLA's default options on every backend, CPU included: limiting XLA:CPU's
YNNPACK fusions so that convolutions take its Eigen kernels speeds up a single large
convolution but not a whole U-Net, whose small many-channel convolutions YNNPACK runs faster
(``benchmarks/RESULTS.md``, U-Net section).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax


def _lon_periodic_conv(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    *,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    **kwargs: Any,
) -> jax.Array:
    """``lax.conv_general_dilated`` for channels-last ``lhs`` whose last spatial axis wraps.

    lhs: (N, *spatial, C_in) with longitude last among ``spatial``; rhs: (*window, C_in, C_out).
    The padding that ``padding`` asks for on the longitude axis is taken from the opposite edge
    of the globe instead of zeros; the other spatial axes are padded as asked (zeros).
    """
    rhs_dilation = tuple(rhs_dilation or (1,) * len(window_strides))
    window = [(k - 1) * d + 1 for k, d in zip(rhs.shape[:-2], rhs_dilation, strict=True)]
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:-1], window, window_strides, padding)
    *others, (lo, hi) = [tuple(p) for p in padding]
    lon_axis = lhs.ndim - 2
    pad_widths = [(0, 0)] * lhs.ndim
    pad_widths[lon_axis] = (lo, hi)
    lhs = jnp.pad(lhs, pad_widths, mode="wrap")
    return lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides,
        [*others, (0, 0)],
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        **kwargs,
    )


class Conv(nnx.Conv):
    """``nnx.Conv`` (same signature, parameters and outputs) plus ``lon_periodic``.

    Inputs are channels-last: ``(*batch, *spatial, in_features)``, longitude last among the
    spatial axes. With ``lon_periodic=True`` the ``padding`` requested (``"SAME"``, explicit
    pairs...) is applied with wrap-around values along longitude and zeros elsewhere.
    Drop-in for ``nnx.Conv``: ``nnx.Conv(...)`` -> ``climml.models.conv.Conv(...)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        *,
        lon_periodic: bool = False,
        rngs: nnx.Rngs,
        **kwargs: Any,
    ):
        if lon_periodic:
            kwargs["conv_general_dilated"] = _lon_periodic_conv
        super().__init__(in_features, out_features, kernel_size, strides, rngs=rngs, **kwargs)
        self.lon_periodic = lon_periodic
