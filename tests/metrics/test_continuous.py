"""Continuous scores: reference values, NaN policy, weights, chunked accumulation, jit/vmap."""

import functools
import operator

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import climml.metrics as cm
from climml.errors import DataError


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(6, 5, 4)).astype(np.float32)
    fcst = (obs + rng.normal(scale=0.5, size=obs.shape) + 0.3).astype(np.float32)
    return fcst, obs


def test_rmse_mae_bias_match_numpy(pair):
    f, o = pair
    e = f.astype(np.float64) - o
    np.testing.assert_allclose(cm.rmse(f, o), np.sqrt(np.mean(e**2)), rtol=1e-5)
    np.testing.assert_allclose(cm.mae(f, o), np.mean(np.abs(e)), rtol=1e-5)
    np.testing.assert_allclose(cm.bias(f, o), np.mean(e), rtol=1e-5)
    np.testing.assert_allclose(cm.rmse(f, o, axis=0), np.sqrt(np.mean(e**2, axis=0)), rtol=1e-5)
    np.testing.assert_allclose(
        cm.mae(f, o, axis=(1, 2)), np.mean(np.abs(e), axis=(1, 2)), rtol=1e-5
    )


def test_weights_match_numpy_average(pair):
    f, o = pair
    w = cm.latitude_weights(np.linspace(-60, 60, 5))[:, None]  # (lat, 1) against (t, lat, lon)
    e2 = (f.astype(np.float64) - o) ** 2
    want = np.sqrt(
        np.average(e2, axis=(1, 2), weights=np.broadcast_to(np.asarray(w), e2.shape[1:]))
    )
    np.testing.assert_allclose(cm.rmse(f, o, axis=(1, 2), weights=w), want, rtol=1e-5)


def test_nan_masks_point_like_dropping_it(pair):
    f, o = pair
    f = f.copy()
    f[0, 0, 0] = np.nan
    o = o.copy()
    o[1, 2, 3] = np.nan
    keep = ~(np.isnan(f) | np.isnan(o))
    e = (f - o)[keep].astype(np.float64)
    np.testing.assert_allclose(cm.rmse(f, o), np.sqrt(np.mean(e**2)), rtol=1e-5)
    np.testing.assert_allclose(cm.bias(f, o), np.mean(e), rtol=1e-5)


def test_no_valid_point_gives_nan_not_error():
    f = jnp.array([np.nan, 1.0])
    o = jnp.array([1.0, np.nan])
    assert np.isnan(cm.rmse(f, o))
    assert np.isnan(cm.correlation(f, o))
    assert np.isnan(cm.acc(f, o))
    assert np.isnan(cm.rmse(jnp.zeros((0,)), jnp.zeros((0,))))


def test_correlation_matches_numpy_and_survives_large_means(pair):
    f, o = pair
    want = np.corrcoef(f.ravel(), o.ravel())[0, 1]
    np.testing.assert_allclose(cm.correlation(f, o), want, rtol=1e-5)
    # Kelvin-sized offsets with small anomalies: raw float32 sums of squares would cancel.
    np.testing.assert_allclose(cm.correlation(f + 280.0, o + 280.0), want, rtol=1e-3)


def test_acc_against_formula(pair):
    f, o = pair
    clim = np.full(o.shape[1:], 0.1, np.float32)
    fa, oa = (f - clim).astype(np.float64), (o - clim).astype(np.float64)
    unc = np.sum(fa * oa, axis=0) / np.sqrt(np.sum(fa**2, 0) * np.sum(oa**2, 0))
    np.testing.assert_allclose(cm.acc(f, o, clim, axis=0), unc, rtol=1e-4)
    cen = [np.corrcoef(fa[:, i, j], oa[:, i, j])[0, 1] for i in range(5) for j in range(4)]
    np.testing.assert_allclose(cm.acc(f, o, clim, axis=0, centered=True).ravel(), cen, rtol=1e-4)
    # climatology=None: the inputs are anomalies already.
    np.testing.assert_allclose(cm.acc(fa, oa, axis=0), unc, rtol=1e-4)


def test_chunked_accumulation_equals_one_shot(pair):
    f, o = pair
    f = f.copy()
    f[2, 1, 1] = np.nan
    chunks = [slice(0, 2), slice(2, 3), slice(3, 6)]
    err = functools.reduce(operator.add, [cm.error_sums(f[c], o[c], axis=0) for c in chunks])
    mom = functools.reduce(operator.add, [cm.comoments(f[c], o[c], axis=0) for c in chunks])
    np.testing.assert_allclose(err.rmse(), cm.rmse(f, o, axis=0), rtol=1e-5)
    np.testing.assert_allclose(err.bias(), cm.bias(f, o, axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mom.correlation(), cm.correlation(f, o, axis=0), rtol=1e-4)
    np.testing.assert_allclose(mom.correlation(centered=False), cm.acc(f, o, axis=0), rtol=1e-4)


def test_empty_chunk_merges_as_identity(pair):
    f, o = pair
    empty = cm.comoments(np.full(3, np.nan), np.ones(3))
    full = cm.comoments(f, o)
    np.testing.assert_allclose((empty + full).correlation(), full.correlation(), rtol=1e-6)
    np.testing.assert_allclose((full + empty).correlation(), full.correlation(), rtol=1e-6)


def test_jit_equals_eager_and_vmap_equals_loop(pair):
    f, o = pair
    jitted = jax.jit(cm.rmse, static_argnames="axis")
    np.testing.assert_allclose(jitted(f, o, axis=0), cm.rmse(f, o, axis=0), rtol=1e-6)
    per_point = jax.vmap(lambda a, b: cm.acc(a, b), in_axes=(1, 1))(f, o)
    loop = [cm.acc(f[:, i], o[:, i]) for i in range(f.shape[1])]
    np.testing.assert_allclose(per_point, loop, rtol=1e-5)


def test_latitude_weights_are_cell_areas():
    lat = np.arange(-87.5, 90, 5.0)
    w = np.asarray(cm.latitude_weights(lat))
    np.testing.assert_allclose(w.mean(), 1.0, rtol=1e-6)
    cos = np.cos(np.deg2rad(lat))
    np.testing.assert_allclose(w, cos / cos.mean(), rtol=1e-6)
    poles = np.asarray(cm.latitude_weights(np.linspace(90, -90, 7)))  # descending, with poles
    assert np.all(poles > 0) and poles[0] == poles[-1] and np.argmax(poles) == 3
    # Band areas on the sphere: the two polar caps of height 1 - cos(15°).
    np.testing.assert_allclose(poles[0] / poles.sum(), (1 - np.cos(np.deg2rad(15))) / 2, rtol=1e-6)


@pytest.mark.parametrize("bad", [[[0.0, 1.0]], [0.0, 95.0], [0.0, 10.0, 5.0], []])
def test_latitude_weights_reject_bad_input(bad):
    with pytest.raises(DataError, match="lat"):
        cm.latitude_weights(np.asarray(bad))


def test_shape_mismatch_is_a_data_error():
    with pytest.raises(DataError, match="observed.shape"):
        cm.rmse(np.zeros((3, 4)), np.zeros((5,)))


@settings(max_examples=30, deadline=None)
@given(arrays(np.float32, 12, elements=st.floats(-1e3, 1e3, width=32)))
def test_perfect_forecast_scores(x):
    assert float(cm.rmse(x, x)) == 0.0
    assert float(cm.mae(x, x)) == 0.0
    if np.ptp(x) > 1e-2:
        np.testing.assert_allclose(cm.correlation(x, x), 1.0, rtol=1e-4)
        np.testing.assert_allclose(cm.correlation(x, -x), -1.0, rtol=1e-4)


@pytest.mark.skipif(jax.device_count() < 2, reason="needs several (simulated) devices")
def test_statistics_summed_across_devices_equal_one_shot(pair):
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    n = jax.device_count()
    mesh = jax.make_mesh((n,), ("d",))
    rng = np.random.default_rng(3)
    f = rng.normal(size=(2 * n, 7)).astype(np.float32)
    o = rng.normal(size=(2 * n, 7)).astype(np.float32)
    f[0, 0] = np.nan
    shard = NamedSharding(mesh, P("d"))

    def local(f, o):
        stats = (cm.error_sums(f, o, axis=0), cm.contingency(f, o, threshold=0.0, axis=0))
        return jax.tree.map(lambda x: jax.lax.psum(x, "d"), stats)

    summed = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P("d"), P("d")), out_specs=P()))
    errors, table = summed(jax.device_put(f, shard), jax.device_put(o, shard))
    np.testing.assert_allclose(errors.rmse(), cm.rmse(f, o, axis=0), rtol=1e-5)
    np.testing.assert_array_equal(table.hits, cm.contingency(f, o, threshold=0.0, axis=0).hits)
