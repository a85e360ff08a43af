"""FSS against scipy's uniform filter (the pysteps formulation), invariants and accumulation."""

import functools
import operator

import jax
import numpy as np
import pytest
from scipy.ndimage import uniform_filter

import climml.metrics as cm
from climml.errors import ConfigError, DataError
from climml.metrics.spatial import neighbourhood_fraction


def _reference_fss(f, o, threshold, window):
    """Roberts & Lean FSS as pysteps computes it, for NaN-free 2-D fields."""
    p_f = uniform_filter((f >= threshold).astype(float), size=window, mode="constant")
    p_o = uniform_filter((o >= threshold).astype(float), size=window, mode="constant")
    return 1 - np.sum((p_f - p_o) ** 2) / (np.sum(p_f**2) + np.sum(p_o**2))


@pytest.fixture
def fields():
    rng = np.random.default_rng(0)
    obs = rng.gamma(0.5, 2.0, size=(3, 24, 20)).astype(np.float32)
    fcst = np.roll(obs, 2, axis=-1) * rng.lognormal(0, 0.3, size=obs.shape).astype(np.float32)
    return fcst, obs


@pytest.mark.parametrize("window", [1, 2, 3, 4, 7, 40])
def test_neighbourhood_fraction_matches_scipy(window):
    events = (np.random.default_rng(window).random((2, 15, 11)) < 0.3).astype(np.int32)
    want = uniform_filter(events.astype(float), size=(1, window, window), mode="constant")
    np.testing.assert_allclose(neighbourhood_fraction(events, window), want, atol=1e-6)


@pytest.mark.parametrize("window", [1, 4, 5])
def test_fss_matches_reference(fields, window):
    f, o = fields
    got = cm.fss(f, o, threshold=1.0, window=window, axis=())
    want = [_reference_fss(f[i], o[i], 1.0, window) for i in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_fss_invariants(fields):
    f, o = fields
    np.testing.assert_allclose(cm.fss(o, o, threshold=1.0, window=3), 1.0)
    scores = [float(cm.fss(f, o, threshold=1.0, window=w)) for w in (1, 3, 9, 21)]
    assert scores == sorted(scores)  # a displaced forecast gains skill at larger scales
    no_events = np.zeros((4, 4))  # no events anywhere: FSS is undefined
    assert np.isnan(cm.fss(no_events, no_events, threshold=1.0, window=3))


def test_thresholds_vmap_and_pooled_sums_accumulate(fields):
    f, o = fields
    thresholds = np.array([0.5, 1.0, 3.0], np.float32)
    many = cm.fss(f, o, threshold=thresholds, window=3)
    np.testing.assert_allclose(
        many, [cm.fss(f, o, threshold=t, window=3) for t in thresholds], rtol=1e-6
    )
    per_field = [cm.fss_sums(f[i], o[i], threshold=1.0, window=3) for i in range(3)]
    pooled = functools.reduce(operator.add, per_field)  # float32 sums in another order
    np.testing.assert_allclose(pooled.fss(), cm.fss(f, o, threshold=1.0, window=3), rtol=1e-5)
    jitted = jax.jit(cm.fss, static_argnames=("window", "op", "axis"))
    np.testing.assert_allclose(
        jitted(f, o, threshold=1.0, window=3), cm.fss(f, o, threshold=1.0, window=3), rtol=1e-6
    )


def test_nan_cells_are_non_events_left_out_of_the_sums(fields):
    f, o = fields
    f, o = f[0].copy(), o[0].copy()
    o[:3] = np.nan
    window = 3
    keep = ~np.isnan(o)
    p_f = uniform_filter((np.nan_to_num(f) >= 1.0) * keep * 1.0, size=window, mode="constant")
    p_o = uniform_filter((np.nan_to_num(o) >= 1.0) * keep * 1.0, size=window, mode="constant")
    d = np.sum(((p_f - p_o) ** 2)[keep])
    want = 1 - d / (np.sum(p_f[keep] ** 2) + np.sum(p_o[keep] ** 2))
    np.testing.assert_allclose(cm.fss(f, o, threshold=1.0, window=window), want, rtol=1e-5)


def test_bad_arguments_raise_named_errors(fields):
    f, o = fields
    with pytest.raises(ConfigError, match="window"):
        cm.fss(f, o, threshold=1.0, window=0)
    with pytest.raises(ConfigError, match="op"):
        cm.fss(f, o, threshold=1.0, window=3, op="=")
    with pytest.raises(DataError, match="shape"):
        cm.fss(np.ones(5), np.ones(5), threshold=1.0, window=3)
