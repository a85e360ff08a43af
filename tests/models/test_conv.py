"""climml.models.conv: CPU compiler options keep lax.conv values and gradients; lon wrap."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from climml.models import conv

DN = ("NHWC", "HWIO", "NHWC")


def conv_numpy(x, w, lon_wrap):
    """Direct 'SAME' correlation in NumPy: zero padding in lat, zeros or wrap-around in lon."""
    kh, kw = w.shape[:2]
    x = np.pad(x, ((0, 0), (kh // 2, kh // 2), (0, 0), (0, 0)))
    mode = "wrap" if lon_wrap else "constant"
    x = np.pad(x, ((0, 0), (0, 0), (kw // 2, kw // 2), (0, 0)), mode=mode)
    h, wd = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    return sum(
        np.einsum("bhwc,co->bhwo", x[:, i : i + h, j : j + wd], w[i, j])
        for i in range(kh)
        for j in range(kw)
    )


def test_compiler_options_only_on_cpu():
    assert conv.compiler_options("gpu") == {}
    assert conv.compiler_options("tpu") == {}
    try:  # the option is XLA:CPU's; a jaxlib that predates it keeps its defaults instead
        jax.jit(jnp.negative, compiler_options=conv.CPU_CONV_OPTIONS).lower(jnp.zeros(())).compile()
        known = True
    except jax.errors.JaxRuntimeError:
        known = False
    assert conv.compiler_options("cpu") == (conv.CPU_CONV_OPTIONS if known else {})


def test_fast_jit_values_and_gradients_equal_lax_conv_and_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 9, 12, 5)).astype(np.float32)
    w = rng.normal(size=(3, 3, 5, 7)).astype(np.float32)
    g = rng.normal(size=(2, 9, 12, 7)).astype(np.float32)

    def loss(x, w):  # <conv(x, w), g>: its gradients are the two transposed convolutions
        return jnp.sum(lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN) * g)

    value_and_grads = jax.value_and_grad(loss, argnums=(0, 1))
    fast_value, fast = conv.jit(value_and_grads)(x, w)
    plain_value, plain = jax.jit(value_and_grads)(x, w)
    np.testing.assert_allclose(fast_value, plain_value, rtol=1e-5)
    for a, b in zip(fast, plain, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    # NumPy references: value, and d/dw = sum over pixels of (shifted x) outer g.
    np.testing.assert_allclose(fast_value, np.sum(conv_numpy(x, w, False) * g), rtol=1e-4)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    dw = [
        np.einsum("bhwc,bhwo->co", xp[:, i : i + 9, j : j + 12], g)
        for i in range(3)
        for j in range(3)
    ]
    np.testing.assert_allclose(fast[1], np.stack(dw).reshape(w.shape), rtol=1e-4, atol=1e-3)


def test_conv_is_nnx_conv_when_not_periodic():
    x = jax.random.normal(jax.random.key(0), (2, 6, 10, 3))
    ours = conv.Conv(3, 4, (3, 3), rngs=nnx.Rngs(0))
    theirs = nnx.Conv(3, 4, (3, 3), rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(ours(x), theirs(x))
    def param_shapes(module):  # {path: shape}: plain data, compared the same under every flax
        return {
            jax.tree_util.keystr(path): leaf.shape
            for path, leaf in jax.tree_util.tree_leaves_with_path(nnx.state(module, nnx.Param))
        }

    assert param_shapes(ours) == param_shapes(theirs)
    assert sorted(param_shapes(ours).values()) == [(3, 3, 3, 4), (4,)]


def test_lon_periodic_conv_wraps_lon_and_zero_pads_lat():
    x = np.random.default_rng(1).normal(size=(2, 6, 10, 3)).astype(np.float32)
    layer = conv.Conv(3, 4, (3, 5), lon_periodic=True, use_bias=False, rngs=nnx.Rngs(0))
    want = conv_numpy(x, np.asarray(layer.kernel[...]), lon_wrap=True)
    np.testing.assert_allclose(layer(x), want, rtol=1e-4, atol=1e-5)
    # and it commutes with any longitude roll
    np.testing.assert_allclose(
        layer(np.roll(x, 3, axis=2)), np.roll(layer(x), 3, axis=2), atol=1e-5
    )


def test_lon_periodic_conv_jit_equals_eager_with_batch_dims():
    x = jax.random.normal(jax.random.key(2), (2, 3, 4, 8, 2))  # two leading batch dims
    layer = conv.Conv(2, 3, 3, lon_periodic=True, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(layer)
    jitted = conv.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, x)
    assert jitted.shape == (2, 3, 4, 8, 3)
    np.testing.assert_allclose(jitted, layer(x), rtol=1e-5, atol=1e-5)
