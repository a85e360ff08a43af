"""The GAN nowcaster's generator, ensembles, spectral normalization and discriminators."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from climml import models
from climml.errors import ConfigError
from climml.models.nowcast_gan import (
    PAPER,
    NowcastGAN,
    NowcastGANConfig,
    SNConv,
    depth_to_space,
    sample,
    set_sigma_updates,
    space_to_depth,
)
from climml.types import IOSpec

TINY = dict(base_channels=1, disc_channels=2, disc_frames=2, disc_crop=16, attention=False)


def _forward(model, x, key, last):
    graphdef, state = nnx.split(model.generator)
    return jax.jit(lambda s, x, k, r: nnx.merge(graphdef, s)(x, k, r))(state, x, key, last)


def _last(shape, seed=5):
    """A last observed frame ``(B, H, W)`` in mm/h: mostly dry, some heavy rain."""
    return jax.random.gamma(jax.random.key(seed), 0.3, shape) * 5.0


@pytest.mark.parametrize(
    "input_shape, output_shape, extra",
    [
        ((4, 32, 32, 1), (3, 32, 32), dict(base_channels=2, attention=True)),
        ((2, 64, 32, 2), (2, 64, 32), dict(spectral_norm=False)),
    ],
)
def test_generator_shape_and_non_negative(input_shape, output_shape, extra):
    spec = IOSpec(input_shape, output_shape)
    model = models.build("nowcast_gan", spec, nnx.Rngs(0), **{**TINY, **extra})
    x = jax.random.normal(jax.random.key(1), (2, *input_shape)) * 3.0
    out = np.asarray(_forward(model, x, jax.random.key(2), _last((2, *input_shape[1:3]))))
    assert out.shape == (2, *output_shape)
    assert np.all(np.isfinite(out)) and out.min() >= 0.0
    assert out.std() > 0  # not a constant field


def test_members_from_latent_keys():
    spec = IOSpec((2, 32, 32, 1), (2, 32, 32))
    model = NowcastGAN(NowcastGANConfig(**TINY), spec, nnx.Rngs(0))
    x = jnp.tile(jax.random.normal(jax.random.key(1), (1, 2, 32, 32, 1)), (2, 1, 1, 1, 1))
    k1, k2 = jax.random.split(jax.random.key(3))
    last = jnp.tile(_last((1, 32, 32)), (2, 1, 1))
    ens = np.asarray(
        jax.jit(lambda x, r, k: sample(model.generator, x, r, k))(x, last, jnp.stack([k1, k2, k1]))
    )
    assert ens.shape == (2, 3, 2, 32, 32)
    np.testing.assert_allclose(ens[:, 0], ens[:, 2], rtol=1e-5, atol=1e-6)  # same key
    assert np.abs(ens[:, 0] - ens[:, 1]).max() > 1e-4  # another key, another member
    # one latent draw per example: two copies of one input in a batch get different noise
    assert np.abs(ens[0, 0] - ens[1, 0]).max() > 1e-4
    direct = np.asarray(_forward(model, x, k1, last))
    np.testing.assert_allclose(ens[:, 0], direct, rtol=1e-4, atol=1e-5)


def test_untrained_generator_is_near_persistence_on_any_grid():
    """Anchored to the last frame, a fresh generator forecasts persistence times a latent-driven
    factor (rain where it rained, dry stays about dry), on the grid it was built for and on a
    larger one (trained on crops, run on the full grid)."""
    model = NowcastGAN(NowcastGANConfig(**TINY), IOSpec((2, 32, 32, 1), (3, 32, 32)), nnx.Rngs(0))
    for side in (32, 64):
        x = jax.random.normal(jax.random.key(1), (2, 2, side, side, 1))
        last = _last((2, side, side))
        out = np.asarray(_forward(model, x, jax.random.key(2), last))
        assert out.shape == (2, 3, side, side)
        ratio = (out + 0.1) / (np.asarray(last)[:, None] + 0.1)
        log_ratio = np.abs(np.log(ratio))
        assert log_ratio.max() < 2.0 and log_ratio.mean() < 0.3, (log_ratio.max(), log_ratio.mean())
        assert np.corrcoef(out[:, 0].ravel(), np.asarray(last).ravel())[0, 1] > 0.95


def test_spectral_norm_reaches_largest_singular_value():
    conv = SNConv(3, 5, 3, sn=True, rngs=nnx.Rngs(0))
    for _ in range(60):  # power iteration converges from the random start
        kernel, _ = conv.weights()
    top = np.linalg.svd(np.asarray(kernel, np.float64).reshape(-1, 5), compute_uv=False)[0]
    assert top == pytest.approx(1.0, abs=1e-3)
    raw = np.linalg.svd(np.asarray(conv.kernel[...], np.float64).reshape(-1, 5), compute_uv=False)
    assert raw[0] != pytest.approx(1.0, abs=1e-2)  # the raw kernel was not already normalized


def test_space_to_depth_round_trip():
    x = np.arange(2 * 4 * 6 * 3, dtype=np.float32).reshape(2, 4, 6, 3)
    s = space_to_depth(x, 2)
    assert s.shape == (2, 2, 3, 12)
    np.testing.assert_array_equal(s[0, 0, 0, :3], x[0, 0, 0])  # a 2x2 block in channels
    np.testing.assert_array_equal(s[0, 0, 0, 3:6], x[0, 0, 1])
    np.testing.assert_array_equal(depth_to_space(s, 2), x)


def test_discriminators_score_each_example():
    spec = IOSpec((2, 32, 32, 1), (3, 32, 32))
    model = NowcastGAN(NowcastGANConfig(**TINY), spec, nnx.Rngs(0))
    set_sigma_updates(model, False)  # eager calls would otherwise each refine the estimate
    seq = jax.random.uniform(jax.random.key(0), (3, 5, 32, 32)) * 10
    spatial, temporal = model.discriminator(seq, jax.random.key(1))
    assert spatial.shape == temporal.shape == (3,)
    assert np.all(np.isfinite(spatial)) and np.all(np.isfinite(temporal))
    # the spatial discriminator sees only lead frames: changing the history changes nothing
    seq2 = seq.at[:, :2].set(0.0)
    np.testing.assert_allclose(
        model.discriminator.score_spatial(seq2, jax.random.key(1)), spatial, rtol=1e-5
    )


def test_bad_grids_and_settings_are_config_errors():
    with pytest.raises(ConfigError, match="divisible by 32"):
        models.build("nowcast_gan", IOSpec((4, 48, 48, 1), (2, 48, 48)), **TINY)
    with pytest.raises(ConfigError, match="reg_samples"):  # the CRPS needs two members
        models.build(
            "nowcast_gan", IOSpec((4, 32, 32, 1), (2, 32, 32)), **TINY, crps_weight=1, reg_samples=1
        )
    with pytest.raises(ConfigError, match="max_weight"):
        models.build("nowcast_gan", IOSpec((4, 32, 32, 1), (2, 32, 32)), **TINY, max_weight=0.5)
    assert PAPER.base_channels == 24 and PAPER.disc_crop == 128 and PAPER.reg_samples == 6
