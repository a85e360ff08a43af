"""climml.models.conv.Conv: nnx.Conv when not periodic; lon wrap against NumPy; jit == eager."""

import jax
import numpy as np
from flax import nnx

from climml.models import conv


def conv_numpy(x, w):
    """Direct 'SAME' correlation in NumPy: zero padding in lat, wrap-around in lon."""
    kh, kw = w.shape[:2]
    x = np.pad(x, ((0, 0), (kh // 2, kh // 2), (0, 0), (0, 0)))
    x = np.pad(x, ((0, 0), (0, 0), (kw // 2, kw // 2), (0, 0)), mode="wrap")
    h, wd = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    return sum(
        np.einsum("bhwc,co->bhwo", x[:, i : i + h, j : j + wd], w[i, j])
        for i in range(kh)
        for j in range(kw)
    )


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
    want = conv_numpy(x, np.asarray(layer.kernel[...]))
    np.testing.assert_allclose(layer(x), want, rtol=1e-4, atol=1e-5)
    # and it commutes with any longitude roll
    np.testing.assert_allclose(
        layer(np.roll(x, 3, axis=2)), np.roll(layer(x), 3, axis=2), atol=1e-5
    )


def test_lon_periodic_conv_jit_equals_eager_with_batch_dims():
    x = jax.random.normal(jax.random.key(2), (2, 3, 4, 8, 2))  # two leading batch dims
    layer = conv.Conv(2, 3, 3, lon_periodic=True, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(layer)
    jitted = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, x)
    assert jitted.shape == (2, 3, 4, 8, 3)
    np.testing.assert_allclose(jitted, layer(x), rtol=1e-5, atol=1e-5)
