"""climml.models.conv.Conv: nnx.Conv when not periodic; lon wrap against NumPy; jit == eager;
the im2col formulation (conv_impl="patches") equals XLA's forward and gradients, under vmap too."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from climml.errors import ConfigError
from climml.models import IOSpec, build, conv, nowcast_gan
from climml.models.nowcast_gan import NowcastGAN, NowcastGANConfig, SNConv
from climml.models.unet import UNetConfig


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


# --------------------------------------------------------------- conv_impl="patches" (im2col)

# (kernel window, strides, padding, kernel dilation) over 2-D and 3-D inputs
PATCH_CASES = [
    ((3, 3), (1, 1), "SAME", (1, 1)),
    ((3, 3), (2, 2), "SAME", (1, 1)),
    ((3, 5), (1, 2), "VALID", (1, 1)),
    ((2, 2), (2, 1), ((1, 0), (2, 1)), (1, 1)),
    ((3, 3), (1, 1), "SAME", (2, 1)),
    ((1, 1), (1, 1), "SAME", (1, 1)),
    ((3, 3, 3), (1, 2, 1), "SAME", (1, 1, 1)),
]


def _grads(fn, x, w):
    """Forward value and gradients w.r.t. input and kernel of sum(fn(x, w) * probe)."""
    probe = jnp.cos(jnp.arange(fn(x, w).size, dtype=x.dtype)).reshape(fn(x, w).shape)
    return fn(x, w), jax.grad(lambda x, w: jnp.sum(fn(x, w) * probe), argnums=(0, 1))(x, w)


@pytest.mark.parametrize(("window", "strides", "padding", "dilation"), PATCH_CASES)
def test_patch_conv_equals_xla_conv_and_its_gradients_in_float64(
    window, strides, padding, dilation
):
    dims = len(window)
    numbers = conv._channels_last(dims + 2)
    with jax.enable_x64(True):
        rng = np.random.default_rng(dims)
        x = jnp.asarray(rng.normal(size=(2, *(7 - d for d in range(dims)), 3)), jnp.float64)
        w = jnp.asarray(rng.normal(size=(*window, 3, 4)), jnp.float64)

        def xla(x, w):
            return lax.conv_general_dilated(
                x, w, strides, padding, rhs_dilation=dilation, dimension_numbers=numbers
            )

        def patches(x, w):
            return conv.patch_conv(
                x, w, strides, padding, rhs_dilation=dilation, dimension_numbers=numbers
            )

        (y_ref, (dx_ref, dw_ref)), (y, (dx, dw)) = _grads(xla, x, w), _grads(patches, x, w)
        assert y.dtype == jnp.float64 and y.shape == y_ref.shape
        np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dw, dw_ref, rtol=1e-12, atol=1e-12)


def _jit_grads(layer, x):
    """Jitted loss sum(sin(layer(x))) and its gradients w.r.t. the parameters and ``x``."""
    graphdef, params = nnx.split(layer)

    @jax.jit
    def value_and_grads(params, x):
        return jax.value_and_grad(
            lambda p, x: jnp.sum(jnp.sin(nnx.merge(graphdef, p)(x))), argnums=(0, 1)
        )(params, x)

    return value_and_grads(params, x)


@pytest.mark.parametrize("lon_periodic", [False, True])
@pytest.mark.parametrize("strides", [1, 2])
def test_patches_conv_layer_equals_nnx_conv_with_gradients_under_jit(lon_periodic, strides):
    x = jax.random.normal(jax.random.key(3), (2, 6, 10, 3))
    ref = conv.Conv(3, 4, (3, 3), strides, lon_periodic=lon_periodic, rngs=nnx.Rngs(0))
    ours = conv.Conv(
        3, 4, (3, 3), strides, lon_periodic=lon_periodic, conv_impl="patches", rngs=nnx.Rngs(0)
    )
    if not lon_periodic:  # the reference is exactly nnx.Conv
        np.testing.assert_array_equal(ref(x), nnx.Conv(3, 4, (3, 3), strides, rngs=nnx.Rngs(0))(x))
    # same parameter names, shapes and values: checkpoints load under either formulation
    want = nnx.to_pure_dict(nnx.state(ref, nnx.Param))
    got = nnx.to_pure_dict(nnx.state(ours, nnx.Param))
    assert jax.tree.structure(got) == jax.tree.structure(want)
    jax.tree.map(np.testing.assert_array_equal, got, want)

    v_ref, (gp_ref, gx_ref) = _jit_grads(ref, x)
    v, (gp, gx) = _jit_grads(ours, x)
    assert v.shape == () and gx.shape == x.shape
    np.testing.assert_allclose(v, v_ref, rtol=1e-5)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-4, atol=1e-5)
    gp, gp_ref = nnx.to_pure_dict(gp), nnx.to_pure_dict(gp_ref)
    np.testing.assert_allclose(gp["kernel"], gp_ref["kernel"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gp["bias"], gp_ref["bias"], rtol=1e-4, atol=1e-4)
    assert np.abs(gp["kernel"]).max() > 1e-2  # the gradients compared are not all zero


@pytest.mark.parametrize("shared_batch", [True, False])
def test_patches_conv_vmapped_over_members_equals_loop(shared_batch):
    """Ensemble members (different kernels) vmapped == one member at a time, with gradients."""
    members = 3
    xs = jax.random.normal(jax.random.key(4), (members, 2, 8, 8, 2))
    layers = [
        conv.Conv(2, 3, (3, 3), lon_periodic=True, conv_impl="patches", rngs=nnx.Rngs(m))
        for m in range(members)
    ]
    graphdef = nnx.graphdef(layers[0])
    params = [nnx.state(layer) for layer in layers]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *params)

    def grads(p, x):
        return jax.grad(lambda p, x: jnp.sum(nnx.merge(graphdef, p)(x) ** 2), argnums=(0, 1))(p, x)

    x_axis = None if shared_batch else 0
    batched = jax.jit(jax.vmap(grads, in_axes=(0, x_axis)))(stacked, xs[0] if shared_batch else xs)
    for m in range(members):
        gp, gx = grads(params[m], xs[0] if shared_batch else xs[m])
        np.testing.assert_allclose(batched[1][m], gx, rtol=1e-4, atol=1e-5)
        jax.tree.map(
            lambda b, s, m=m: np.testing.assert_allclose(b[m], s, rtol=1e-4, atol=1e-5),
            nnx.to_pure_dict(batched[0]),
            nnx.to_pure_dict(gp),
        )


def test_conv_impl_is_validated():
    with pytest.raises(ConfigError, match="model.conv_impl"):
        conv.Conv(2, 3, 3, conv_impl="im2col", rngs=nnx.Rngs(0))
    grouped = conv.Conv(4, 4, 3, feature_group_count=2, conv_impl="patches", rngs=nnx.Rngs(0))
    with pytest.raises(ConfigError, match="feature group"):
        grouped(jnp.ones((1, 5, 5, 4)))
    spec = IOSpec((1, 8, 8, 2), (1, 8, 8))
    with pytest.raises(ConfigError, match="model.conv_impl"):
        build(UNetConfig(depth=1, base_filters=4, conv_impl="cudnn"), spec, nnx.Rngs(0))


def test_unet_patches_has_the_xla_unets_parameters_and_outputs():
    spec = IOSpec((1, 8, 8, 2), (1, 8, 8))
    x = jax.random.normal(jax.random.key(5), (2, 1, 8, 8, 2))
    nets = [
        build(UNetConfig(depth=1, base_filters=4, conv_impl=impl), spec, nnx.Rngs(0))
        for impl in ("xla", "patches")
    ]
    states = [nnx.to_pure_dict(nnx.state(net)) for net in nets]
    assert jax.tree.structure(states[0]) == jax.tree.structure(states[1])
    np.testing.assert_allclose(nets[1](x), nets[0](x), rtol=1e-4, atol=1e-5)


def test_gan_conv_impls_give_the_same_model():
    """The GAN's spectrally normalized convolutions (2-D and the temporal discriminator's 3-D)
    under either formulation: same parameters, same generator sample and discriminator scores."""
    spec = IOSpec((2, 32, 32, 1), (2, 32, 32))
    tiny = dict(base_channels=1, disc_channels=2, disc_frames=2, disc_crop=16, attention=False)
    models = {
        impl: NowcastGAN(NowcastGANConfig(**tiny, conv_impl=impl), spec, nnx.Rngs(0))
        for impl in ("xla", "patches")
    }
    convs = [m for _, m in nnx.iter_graph(models["patches"]) if isinstance(m, SNConv)]
    assert {c.dims for c in convs} == {2, 3} and {c.conv_impl for c in convs} == {"patches"}
    states = {k: nnx.to_pure_dict(nnx.state(m)) for k, m in models.items()}
    jax.tree.map(np.testing.assert_array_equal, states["patches"], states["xla"])

    x = jax.random.normal(jax.random.key(6), (2, 2, 32, 32, 1))
    last = jnp.abs(x[:, -1, ..., 0])
    seq = jnp.abs(jax.random.normal(jax.random.key(7), (2, 4, 32, 32)))
    out = {}
    for impl, model in models.items():
        nowcast_gan.set_sigma_updates(model, False)
        out[impl] = (
            model(x, jax.random.key(8), last),
            model.discriminator.score_spatial(seq, jax.random.key(9)),
            model.discriminator.score_temporal(seq, jax.random.key(9)),
        )
    assert float(jnp.std(out["xla"][0])) > 0
    for got, want in zip(out["patches"], out["xla"], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="model.conv_impl"):
        NowcastGAN(NowcastGANConfig(**tiny, conv_impl="im2col"), spec, nnx.Rngs(0))
