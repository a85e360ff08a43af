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

Two formulations of the same convolution (``conv_impl``), same parameters and outputs:

* ``"xla"`` (default): ``lax.conv_general_dilated``, what ``nnx.Conv`` runs.
* ``"patches"``: im2col, the window's shifted slices of the padded input concatenated along
  channels, then one matmul with the ``(window * C_in, C_out)`` kernel (``patch_conv``). Its
  autodiff is the textbook backward: the weight gradient is one matmul ``patches^T @ dout``,
  the input gradient ``dout @ kernel^T`` scattered back by col2im (pads and adds of the slices).

``"xla"`` stays the default because it is the faster one measured on CPU, forward and backward,
for the U-Net's and the GAN's shapes (3-5x), and also faster when ensemble members are unrolled
instead of vmapped (``benchmarks/conv_grad.py``, RESULTS.md "Convolution formulations").
``"patches"`` is the formulation to measure again on other hardware.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from climml.errors import ConfigError, expected

CONV_IMPLS = ("xla", "patches")


def patch_conv(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    *,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
    out_sharding: Any = None,
) -> jax.Array:
    """``lax.conv_general_dilated`` for channels-last operands as im2col + one matmul.

    lhs: (N, *spatial, C_in); rhs: (*window, C_in, C_out) -> (N, *out_spatial, C_out), equal to
    ``lax.conv_general_dilated`` with channels-last dimension numbers (what ``nnx.Conv``
    passes). Strides, kernel dilation and any padding ("SAME", "VALID", explicit pairs) are
    supported; input dilation and feature groups are not (``ConfigError``).
    """
    n_sp = lhs.ndim - 2
    numbers = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    if dimension_numbers is not None and numbers != _channels_last(lhs.ndim):
        want = "channels-last lhs/out and (*window, in, out) kernels"
        raise ConfigError(expected("conv_impl='patches' operands", want, dimension_numbers))
    if feature_group_count != 1 or any(d != 1 for d in lhs_dilation or ()):
        found = {"feature_group_count": feature_group_count, "input_dilation": lhs_dilation}
        raise ConfigError(
            expected("conv_impl='patches'", "one feature group and no input dilation", found)
        )
    window, dilation = rhs.shape[:-2], tuple(rhs_dilation or (1,) * n_sp)
    span = [(k - 1) * d + 1 for k, d in zip(window, dilation, strict=True)]
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:-1], span, window_strides, padding)
    zero = jnp.zeros((), lhs.dtype)
    lhs = lax.pad(lhs, zero, [(0, 0, 0), *((lo, hi, 0) for lo, hi in padding), (0, 0, 0)])
    out = [
        (s - k) // st + 1 for s, k, st in zip(lhs.shape[1:-1], span, window_strides, strict=True)
    ]
    cols = []  # one shifted, strided view of the input per window offset, in the kernel's order
    for offset in itertools.product(*(range(k) for k in window)):
        start = [o * d for o, d in zip(offset, dilation, strict=True)]
        limit = [b + (m - 1) * st + 1 for b, m, st in zip(start, out, window_strides, strict=True)]
        cols.append(
            lax.slice(
                lhs, (0, *start, 0), (lhs.shape[0], *limit, lhs.shape[-1]), (1, *window_strides, 1)
            )
        )
    patches = jnp.concatenate(cols, axis=-1)  # (N, *out, prod(window) * C_in)
    kernel = rhs.reshape(-1, rhs.shape[-1])
    return lax.dot_general(
        patches,
        kernel,
        (((patches.ndim - 1,), (0,)), ((), ())),
        precision=precision,
        preferred_element_type=preferred_element_type,
        out_sharding=out_sharding,
    )


def conv_function(conv_impl: str) -> Callable[..., jax.Array]:
    """The convolution of ``conv_impl`` (``CONV_IMPLS``), with the signature of
    ``lax.conv_general_dilated``; ``ConfigError`` naming ``model.conv_impl`` for another."""
    if conv_impl not in CONV_IMPLS:
        raise ConfigError(expected("model.conv_impl", CONV_IMPLS, conv_impl))
    return patch_conv if conv_impl == "patches" else lax.conv_general_dilated


def _channels_last(ndim: int) -> lax.ConvDimensionNumbers:
    """Dimension numbers of channels-last lhs/out and (*window, in, out) kernels."""
    spatial = tuple(range(1, ndim - 1))
    return lax.ConvDimensionNumbers(
        (0, ndim - 1, *spatial), (ndim - 1, ndim - 2, *range(ndim - 2)), (0, ndim - 1, *spatial)
    )


def _lon_periodic(conv: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
    """``conv`` (signature of ``lax.conv_general_dilated``, channels-last ``lhs`` with longitude
    last among its spatial axes) with the padding asked for on the longitude axis taken from
    the opposite edge of the globe instead of zeros; the other spatial axes padded as asked."""

    def wrapped(
        lhs: jax.Array,
        rhs: jax.Array,
        window_strides: Sequence[int],
        padding: str | Sequence[tuple[int, int]],
        *,
        rhs_dilation: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> jax.Array:
        rhs_dilation = tuple(rhs_dilation or (1,) * len(window_strides))
        window = [(k - 1) * d + 1 for k, d in zip(rhs.shape[:-2], rhs_dilation, strict=True)]
        if isinstance(padding, str):
            padding = lax.padtype_to_pads(lhs.shape[1:-1], window, window_strides, padding)
        *others, (lo, hi) = [tuple(p) for p in padding]
        pad_widths = [(0, 0)] * lhs.ndim
        pad_widths[lhs.ndim - 2] = (lo, hi)
        lhs = jnp.pad(lhs, pad_widths, mode="wrap")
        return conv(
            lhs, rhs, window_strides, [*others, (0, 0)], rhs_dilation=rhs_dilation, **kwargs
        )

    return wrapped


class Conv(nnx.Conv):
    """``nnx.Conv`` (same signature, parameters and outputs) plus ``lon_periodic`` and
    ``conv_impl``.

    Inputs are channels-last: ``(*batch, *spatial, in_features)``, longitude last among the
    spatial axes. With ``lon_periodic=True`` the ``padding`` requested (``"SAME"``, explicit
    pairs...) is applied with wrap-around values along longitude and zeros elsewhere.
    ``conv_impl``: ``"xla"`` (``lax.conv_general_dilated``) or ``"patches"`` (``patch_conv``),
    see the module docstring. Drop-in for ``nnx.Conv``:
    ``nnx.Conv(...)`` -> ``climml.models.conv.Conv(...)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        *,
        lon_periodic: bool = False,
        conv_impl: str = "xla",
        rngs: nnx.Rngs,
        **kwargs: Any,
    ):
        conv = conv_function(conv_impl)
        if lon_periodic:
            conv = _lon_periodic(conv)
        if conv is not lax.conv_general_dilated:
            kwargs["conv_general_dilated"] = conv
        super().__init__(in_features, out_features, kernel_size, strides, rngs=rngs, **kwargs)
        self.lon_periodic, self.conv_impl = lon_periodic, conv_impl
