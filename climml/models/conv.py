"""Convolutions for gridded climate fields: periodic in longitude, with CPU compile options.

Speed on CPU. This jaxlib's XLA CPU backend runs convolutions through YNNPACK by default, whose
weight gradient is slow for large convolutions. With YNNPACK limited to elementwise fusions
(:data:`CPU_CONV_OPTIONS`) convolutions take XLA's Eigen kernels instead. That wins on a single
large convolution, but a whole U-Net gains little on large grids and loses on small ones, whose
many-channel convolutions YNNPACK runs faster (figures: ``benchmarks/RESULTS.md``, U-Net
section). So climml compiles with XLA's
defaults, and :func:`jit` offers the option for conv-heavy programs on large grids, to be kept
where ``benchmarks/unet.py`` shows it wins on the machine at hand. Matmul formulations (im2col)
lose to both paths: building the 9x larger patch tensor costs more than the matmul saves.

The option is passed per ``jax.jit`` (``compiler_options=``), never through the process-wide
``XLA_FLAGS``: only the programs compiled with it change, only on the CPU backend, and GPU/TPU
programs compile exactly as before.

Longitude periodicity. A global grid wraps around in longitude: :class:`Conv` with
``lon_periodic=True`` pads the last spatial axis (longitude) with the values from the other side
of the globe and the other spatial axes with zeros, so that a model built from it commutes with
a roll of its input along longitude.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

# YNNPACK fusions left on: elementwise only, so that convolutions and dots take XLA's own
# (Eigen) kernels. Value names are the ``LibraryFusionType`` enum of XLA.
CPU_CONV_OPTIONS: dict[str, str] = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_ELTWISE",
}


@functools.cache
def compiler_options(backend: str | None = None) -> dict[str, str]:
    """Compiler options sending large convolutions to XLA's Eigen kernels on ``backend``.

    Returns :data:`CPU_CONV_OPTIONS` on CPU when this jaxlib knows the option, else ``{}``
    (GPU/TPU, or an older/newer jaxlib without it: XLA's defaults are then kept unchanged).
    """
    backend = backend or jax.default_backend()
    if backend != "cpu":
        return {}
    try:
        jax.jit(jnp.negative, compiler_options=CPU_CONV_OPTIONS).lower(jnp.zeros(())).compile()
    except jax.errors.JaxRuntimeError:  # "No such compile option" / invalid enum value
        return {}
    return dict(CPU_CONV_OPTIONS)


def jit(fn: Callable[..., Any], **jit_kwargs: Any) -> Callable[..., Any]:
    """``jax.jit(fn, **jit_kwargs)`` compiled with :func:`compiler_options` (Eigen CPU convs)."""
    options = {**compiler_options(), **jit_kwargs.pop("compiler_options", {})}
    return jax.jit(fn, compiler_options=options, **jit_kwargs)


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
