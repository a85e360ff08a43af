"""CRPS (ensemble, Gaussian, pooled) and Brier score against scoringrules and properscoring."""

import jax
import jax.numpy as jnp
import numpy as np
import properscoring as ps
import pytest
import scoringrules as sr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import brier_score_loss

import climml.metrics as cm
from climml.errors import ConfigError, DataError

crps = jax.jit(cm.crps_ensemble, static_argnames=("ensemble_axis", "fair"))


@pytest.fixture
def ensemble():
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(30, 4)).astype(np.float32)
    fcst = (obs[..., None] + rng.normal(0.2, 1.0, size=(30, 4, 12))).astype(np.float32)
    fcst[:, :, 3] = fcst[:, :, 4]  # tied members
    return fcst, obs


@pytest.mark.parametrize(("fair", "estimator"), [(False, "nrg"), (True, "fair")])
def test_crps_matches_scoringrules(ensemble, fair, estimator):
    f, o = ensemble
    want = sr.crps_ensemble(
        o.astype(np.float64), f.astype(np.float64), estimator=estimator, backend="numpy"
    )
    np.testing.assert_allclose(crps(f, o, fair=fair), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cm.crps_ensemble(f, o, fair=fair), want, rtol=1e-5, atol=1e-6)


def test_crps_matches_properscoring_with_member_weights(ensemble):
    f, o = ensemble
    w = np.random.default_rng(1).random(f.shape).astype(np.float32)
    want = ps.crps_ensemble(o.astype(np.float64), f.astype(np.float64), weights=w)
    np.testing.assert_allclose(cm.crps_ensemble(f, o, weights=w), want, rtol=1e-5, atol=1e-6)
    # Fair with weights follows scoringrules: spread term divided by 1 - sum(w^2).
    wn = w / w.sum(-1, keepdims=True)
    want_fair = sr.crps_ensemble(o, f, ens_w=wn, estimator="fair", backend="numpy")
    np.testing.assert_allclose(cm.crps_ensemble(f, o, fair=True, weights=w), want_fair, rtol=1e-4)


def test_nan_members_are_omitted_per_point(ensemble):
    f, o = ensemble
    f = f.copy()
    o = o.copy()
    f[0, 0, :5] = np.nan
    f[0, 1, :] = np.nan
    f[0, 2, 1:] = np.nan  # a single valid member
    o[0, 3] = np.nan
    got = np.asarray(crps(f, o, fair=False))
    for j in range(4):
        members = f[0, j][~np.isnan(f[0, j])]
        want = (
            np.nan
            if members.size == 0 or np.isnan(o[0, j])
            else sr.crps_ensemble(o[0, j], members, backend="numpy")
        )
        np.testing.assert_allclose(got[0, j], want, rtol=1e-5)
    fair = np.asarray(crps(f, o, fair=True))
    assert np.isnan(fair[0, 2])  # the fair CRPS needs two members
    np.testing.assert_allclose(got[1:], crps(f[1:], o[1:], fair=False), rtol=1e-6)


def test_large_ensembles_use_the_sort_fallback():
    rng = np.random.default_rng(2)
    f, o = rng.normal(size=(50, 80)).astype(np.float32), rng.normal(size=50).astype(np.float32)
    want = sr.crps_ensemble(
        o.astype(np.float64), f.astype(np.float64), estimator="nrg", backend="numpy"
    )
    np.testing.assert_allclose(crps(f, o), want, rtol=1e-5)
    w = rng.random(f.shape).astype(np.float32)
    np.testing.assert_allclose(
        cm.crps_ensemble(f, o, weights=w), ps.crps_ensemble(o, f, weights=w), rtol=1e-4
    )


def test_ensemble_axis_and_shift_invariance(ensemble):
    f, o = ensemble
    base = crps(f, o)
    np.testing.assert_allclose(crps(np.moveaxis(f, -1, 0), o, ensemble_axis=0), base, rtol=1e-6)
    # Kelvin-sized offsets: the kernel works on x - y, so float32 keeps its precision.
    np.testing.assert_allclose(crps(f + 280.0, o + 280.0), base, rtol=1e-3, atol=2e-5)


def test_vmap_over_points_equals_loop(ensemble):
    f, o = ensemble
    per_point = jax.vmap(lambda a, b: cm.crps_ensemble(a, b))(f[:, 0], o[:, 0])
    loop = [cm.crps_ensemble(f[i, 0], o[i, 0]) for i in range(4)]
    np.testing.assert_allclose(per_point[:4], loop, rtol=1e-6)


member_values = st.floats(-100, 100, width=32)


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.float32, (3, 7), elements=member_values),
    arrays(np.float32, 3, elements=member_values),
)
def test_crps_is_nonnegative_and_zero_for_perfect_deterministic(f, o):
    assert np.all(np.asarray(crps(f, o)) >= -1e-4)
    perfect = np.repeat(o[:, None], 7, axis=1)
    np.testing.assert_allclose(crps(perfect, o), 0.0, atol=1e-5)
    np.testing.assert_allclose(crps(perfect, o, fair=True), 0.0, atol=1e-5)


def test_crps_gaussian_matches_scoringrules():
    rng = np.random.default_rng(3)
    mu, sigma, y = rng.normal(size=20), rng.uniform(0.1, 3, size=20), rng.normal(size=20)
    np.testing.assert_allclose(
        cm.crps_gaussian(mu, sigma, y), sr.crps_normal(y, mu, sigma, backend="numpy"), rtol=1e-5
    )
    np.testing.assert_allclose(
        cm.crps_gaussian(mu, sigma, y), ps.crps_gaussian(y, mu, sigma), rtol=1e-5
    )
    limits = cm.crps_gaussian(jnp.array([1.0, 1.0, np.nan]), jnp.array([0.0, -1.0, 1.0]), 3.0)
    np.testing.assert_allclose(limits[0], 2.0)  # sigma = 0: absolute error
    assert np.isnan(limits[1]) and np.isnan(limits[2])


def test_large_ensemble_crps_approaches_gaussian():
    key = jax.random.key(0)
    members = 1.5 * jax.random.normal(key, (4000,)) + 0.3
    np.testing.assert_allclose(
        cm.crps_ensemble(members, 1.0), cm.crps_gaussian(0.3, 1.5, 1.0), rtol=0.03
    )


def test_brier_score_matches_sklearn():
    rng = np.random.default_rng(4)
    p = rng.random(100).astype(np.float32)
    y = rng.random(100) < p
    np.testing.assert_allclose(cm.brier_score(p, y), brier_score_loss(y, p), rtol=1e-5)
    p[:5] = np.nan
    np.testing.assert_allclose(cm.brier_score(p, y), brier_score_loss(y[5:], p[5:]), rtol=1e-5)


def test_pooled_crps_matches_pooling_by_reshape():
    rng = np.random.default_rng(5)
    f = rng.gamma(0.5, 2.0, size=(2, 8, 12, 6)).astype(np.float32)
    o = rng.gamma(0.5, 2.0, size=(2, 8, 12)).astype(np.float32)
    np.testing.assert_allclose(cm.pooled_crps(f, o, scale=1), cm.crps_ensemble(f, o), rtol=1e-6)
    f_blocks = f.reshape(2, 2, 4, 3, 4, 6)
    o_blocks = o.reshape(2, 2, 4, 3, 4)
    for pool, reduce in [("avg", np.mean), ("max", np.max)]:
        want = sr.crps_ensemble(
            reduce(o_blocks, axis=(2, 4)),
            reduce(f_blocks, axis=(2, 4)),
            estimator="nrg",
            backend="numpy",
        )
        np.testing.assert_allclose(cm.pooled_crps(f, o, scale=4, pool=pool), want, rtol=1e-5)
    overlapping = cm.pooled_crps(f, o, scale=4, stride=2)
    assert overlapping.shape == (2, 3, 5)
    o[0, 0, 0] = np.nan
    pooled = np.asarray(cm.pooled_crps(f, o, scale=4))
    assert np.isnan(pooled[0, 0, 0]) and not np.isnan(pooled[0, 0, 1])


def test_bad_arguments_raise_named_errors(ensemble):
    f, o = ensemble
    with pytest.raises(DataError, match="ensemble_axis"):
        cm.crps_ensemble(f, o, ensemble_axis=3)
    with pytest.raises(DataError, match="observed.shape"):
        cm.crps_ensemble(f, o[:5, :3])
    with pytest.raises(ConfigError, match="pool"):
        cm.pooled_crps(f, o, scale=2, pool="median")
    with pytest.raises(ConfigError, match="scale"):
        cm.pooled_crps(f, o, scale=0)


@pytest.mark.parametrize("fair", [False, True])
def test_sorting_network_and_array_sort_paths_agree(fair):
    from climml.metrics import probabilistic as prob

    rng = np.random.default_rng(11)
    f = rng.normal(size=(40, 12)).astype(np.float32)
    o = rng.normal(size=40).astype(np.float32)
    w = rng.random((40, 12)).astype(np.float32)
    f[3, :2] = np.nan
    np.testing.assert_allclose(
        prob._crps_equal_weights(f, o, 1, fair),
        prob._crps_equal_weights_sorted(f, o, 1, fair),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        prob._crps_weighted(f, o, w, 1, fair),
        prob._crps_weighted_sorted(f, o, w, 1, fair),
        atol=1e-6,
    )
