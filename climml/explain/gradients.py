"""Gradient saliency: how much each input value moves a model's output, one map per sample.

``gradient`` is d(output)/d(input) (Simonyan et al. 2014); ``input_x_gradient`` multiplies it by
the input (Shrikumar et al. 2017), which Toms et al. (2020, JAMES 12) found easier to read on
geophysical fields because it weights sensitivity by the anomaly actually present.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from climml.errors import ConfigError, DataError, expected

METHODS = ("gradient", "input_x_gradient")


def saliency(
    predict_fn: Callable[[jax.Array], jax.Array],
    inputs: jax.Array | np.ndarray,
    *,
    output_fn: Callable[[jax.Array], jax.Array] | None = None,
    method: str = "gradient",
    absolute: bool = False,
    chunk_size: int | None = None,
) -> jax.Array:
    """Per-sample saliency maps, shaped like ``inputs``.

    Args:
        predict_fn: jittable ``(N, *sample_shape) -> (N, *out_shape)``; samples must not
            interact (a model in eval mode).
        inputs: ``(N, *sample_shape)``, e.g. ``(N, lat, lon, C)`` for a gridded model.
        output_fn: maps one sample's prediction ``out_shape`` to the scalar whose gradient is
            taken, e.g. ``lambda p: p[2]`` for the third lead or ``lambda p: p[..., k]`` for a
            class logit; default the sum of all outputs (the output itself for a scalar).
        method: ``"gradient"`` or ``"input_x_gradient"``.
        absolute: return magnitudes (sign dropped).
        chunk_size: samples differentiated at once (``lax.map``); default all.

    Returns:
        ``(N, *sample_shape)`` saliency in output units per input unit (``gradient``) or in
        output units (``input_x_gradient``).
    """
    if method not in METHODS:
        raise ConfigError(expected("method", f"one of {METHODS}", repr(method)))
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ConfigError(expected("chunk_size", "None or an integer >= 1", chunk_size))
    x = jnp.asarray(inputs)
    if x.ndim < 2 or not jnp.issubdtype(x.dtype, jnp.floating):
        found = f"{x.dtype}{x.shape}"
        raise DataError(expected("inputs", "a float array (N, *sample_shape)", found))
    out_fn = output_fn or jnp.sum
    out = jax.eval_shape(lambda s: out_fn(predict_fn(s[None])[0]), x[0])
    if out.shape != ():
        raise ConfigError(expected("output_fn", "a scalar per sample", f"shape {out.shape}"))
    return _saliency_fn(predict_fn, out_fn, method, absolute, chunk_size)(x)


def _saliency_fn(predict_fn, out_fn, method: str, absolute: bool, chunk_size: int | None):
    """Jitted ``(N, *sample_shape) -> (N, *sample_shape)`` per-sample saliency."""

    def one_sample(sample: jax.Array) -> jax.Array:
        grad = jax.grad(lambda s: out_fn(predict_fn(s[None])[0]))(sample)
        value = grad * sample if method == "input_x_gradient" else grad
        return jnp.abs(value) if absolute else value

    @jax.jit
    def run(x):
        if chunk_size is None:
            return jax.vmap(one_sample)(x)
        return jax.lax.map(one_sample, x, batch_size=chunk_size)

    return run
