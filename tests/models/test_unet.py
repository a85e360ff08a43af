"""U-Net: shapes, grid checks, live skip connections, longitude equivariance, jit == eager."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from climml.errors import ConfigError, DataError
from climml.models import IOSpec, build
from climml.models.unet import UNetConfig, max_pool_2x


def make(grid=(16, 32), steps=1, channels=2, leads=1, classes=3, **cfg):
    spec = IOSpec((steps, *grid, channels), (leads, *grid), num_classes=classes)
    return build(UNetConfig(**{"base_filters": 4, **cfg}), spec, nnx.Rngs(0))


def out_shape(model, x):
    """Output shape by tracing only (no compile, no op-by-op execution: fast)."""
    graphdef, state = nnx.split(model)
    return jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, x).shape


def inputs(shape, seed=0):
    return jax.random.normal(jax.random.key(seed), shape)


@pytest.mark.parametrize(
    ("depth", "grid", "steps", "leads", "classes"),
    [(1, (8, 12), 1, 1, 3), (2, (16, 32), 2, 3, 2), (3, (24, 48), 1, 1, None)],
)
def test_output_shapes_for_depths_and_grids(depth, grid, steps, leads, classes):
    model = make(grid, steps=steps, leads=leads, classes=classes, depth=depth)
    shape = out_shape(model, inputs((2, steps, *grid, 2)))
    assert shape == (2, leads, *grid) + ((classes,) if classes else ())


def test_grid_not_divisible_by_two_to_the_depth_is_an_error():
    with pytest.raises(ConfigError, match="model.depth"):
        make(grid=(12, 32), depth=3)
    model = make(grid=(16, 32), depth=2)
    with pytest.raises(DataError, match="multiples of 2\\*\\*depth=4"):
        out_shape(model, inputs((1, 1, 18, 32, 2)))


@pytest.mark.parametrize(
    ("field", "value"),
    [("normalization", "instance"), ("dropout", 1.0), ("kernel_size", 2), ("depth", 0)],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=f"model.{field}"):
        make(**{field: value})


def test_skip_connections_are_used():
    model = make(depth=2)
    feats = inputs((2, 16, 32, 2))
    bottleneck, skips = model.encode(feats)
    out = model.decode(bottleneck, skips)
    zeroed = model.decode(bottleneck, [jnp.zeros_like(skips[0]), *skips[1:]])
    assert (
        float(jnp.max(jnp.abs(out - zeroed))) > 1e-3
    )  # the first block's features reach the output
    plain = make(depth=2, skip_connections=False)
    b2, s2 = plain.encode(feats)
    np.testing.assert_array_equal(
        plain.decode(b2, s2), plain.decode(b2, [jnp.zeros_like(s) for s in s2])
    )


def test_lon_periodic_predictions_are_equivariant_to_longitude_rolls():
    x = inputs((2, 1, 16, 32, 2))
    shift = 8  # a multiple of 2**depth keeps the pooling grid aligned
    periodic = make(depth=2, lon_periodic=True, normalization="group")
    roll = lambda a: jnp.roll(a, shift, axis=3)  # noqa: E731 - lon axis of (B, L, lat, lon, K)
    np.testing.assert_allclose(periodic(roll(x)), roll(periodic(x)), atol=1e-4)
    zero_padded = make(depth=2, lon_periodic=False, normalization="group")
    assert float(jnp.max(jnp.abs(zero_padded(roll(x)) - roll(zero_padded(x))))) > 1e-3


def test_jit_equals_eager_and_batchnorm_eval_mode():
    model = make(depth=2, dropout=0.2)
    x = inputs((2, 1, 16, 32, 2))
    model.eval()  # dropout off, running statistics: deterministic
    graphdef, state = nnx.split(model)
    jitted = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, x)
    np.testing.assert_allclose(jitted, model(x), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(model(x), model(x))


def test_max_pool_matches_numpy():
    x = np.random.default_rng(0).normal(size=(2, 4, 6, 3)).astype(np.float32)
    want = x.reshape(2, 2, 2, 3, 2, 3).max(axis=(2, 4))
    np.testing.assert_array_equal(max_pool_2x(jnp.asarray(x)), want)


def test_upsample_equals_torch_conv_transpose():
    torch = pytest.importorskip("torch")
    up = make(depth=1).up[0]  # 8 -> 4 channels
    up.bias[...] = jnp.arange(4.0)
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 8)).astype(np.float32)
    ref = torch.nn.ConvTranspose2d(8, 4, 2, stride=2)
    kernel = np.array(up.proj.kernel[...]).reshape(8, 2, 2, 4).transpose(0, 3, 1, 2).copy()
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(kernel))
        ref.bias.copy_(torch.arange(4.0))
        want = ref(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(up(jnp.asarray(x)), want, rtol=1e-4, atol=1e-5)
