"""Rank histograms and spread/skill: hand counts, calibration invariants, pysteps, merging."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import climml.metrics as cm
from climml.errors import DataError


def _ranks(members, obs):
    """float64 hand ranks for tie-free data: number of members below the observation."""
    return np.sum(np.asarray(members, np.float64) < np.asarray(obs, np.float64)[..., None], -1)


def test_rank_histogram_counts_by_hand():
    rng = np.random.default_rng(0)
    members = rng.normal(size=(3, 50, 4)).astype(np.float32)
    obs = rng.normal(size=(3, 50)).astype(np.float32)
    hist = cm.rank_histogram(members, obs, axis=1)
    want = np.stack([np.bincount(r, minlength=5) for r in _ranks(members, obs)])
    np.testing.assert_array_equal(hist.counts, want)
    np.testing.assert_allclose(hist.frequencies(), want / 50, rtol=1e-6)


def test_ties_share_the_point_among_their_ranks():
    members = np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 1.0, 2.0]])
    obs = np.array([0.0, 1.0, 1.0])
    got = np.asarray(cm.rank_histogram(members, obs, axis=()).counts)
    # dry obs among 3 dry members: ranks 0..3; obs 1 tied with 2 members above one: 1..3;
    # obs 1 tied with one member between 0 and 2: ranks 1..2.
    want = [[0.25] * 4, [0, 1 / 3, 1 / 3, 1 / 3], [0, 0.5, 0.5, 0]]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_min_value_drops_dry_points_and_ties_values_below_it():
    members = np.array([[0.05, 0.0, 0.02], [0.0, 0.5, 2.0], [0.0, 0.0, 3.0]])
    obs = np.array([0.01, 0.08, 1.0])
    got = np.asarray(cm.rank_histogram(members, obs, min_value=0.1).counts)
    # Point 0 is dry everywhere (dropped); point 1's obs ties the one dry member (ranks 0..1);
    # point 2's obs is above both dry members (rank 2).
    np.testing.assert_allclose(got, [0.5, 0.5, 1.0, 0.0], rtol=1e-6)


def test_calibrated_ensemble_has_a_flat_histogram_and_an_underdispersive_one_does_not():
    rng = np.random.default_rng(1)
    m, n = 9, 20_000
    centre = rng.normal(size=n)
    members = (centre[:, None] + rng.normal(size=(n, m))).astype(np.float32)
    obs = (centre + rng.normal(size=n)).astype(np.float32)  # same distribution as a member
    counts = np.asarray(cm.rank_histogram(members, obs).counts)
    chi2 = stats.chisquare(counts).statistic
    assert counts.sum() == n
    assert chi2 < stats.chi2.ppf(0.999, m)  # flat: well inside the 99.9 % bound of 9 d.o.f.
    narrow = centre[:, None] + 0.5 * (members - centre[:, None])
    u_shape = np.asarray(cm.rank_histogram(narrow, obs).counts)
    assert stats.chisquare(u_shape).statistic > 100 * stats.chi2.ppf(0.999, m)
    assert u_shape[0] > 2 * u_shape[m // 2] and u_shape[-1] > 2 * u_shape[m // 2]


def test_rank_histogram_matches_pysteps():
    ensscores = pytest.importorskip("pysteps.verification.ensscores")
    rng = np.random.default_rng(2)
    members = rng.gamma(0.4, 2.0, size=(6, 40, 30))
    obs = rng.gamma(0.4, 2.0, size=(40, 30))
    members[members < 0.3] = 0.0  # dry cells tie at 0: pysteps breaks ties at random
    obs[obs < 0.3] = 0.0
    obs[0, :5] = np.nan
    want_exact = ensscores.rankhist(members, obs, X_min=None, normalize=False)
    got = np.asarray(cm.rank_histogram(members, obs, ensemble_axis=0).counts)
    assert got.sum() == want_exact.sum()  # the same points (NaN observations dropped)
    # Ties: pysteps' random draws scatter around our expectation; averaged over repeats they meet.
    np.random.seed(0)
    draws = np.array(
        [ensscores.rankhist(members, obs, X_min=0.1, normalize=False) for _ in range(40)]
    )
    got = np.asarray(cm.rank_histogram(members, obs, ensemble_axis=0, min_value=0.1).counts)
    np.testing.assert_allclose(got.sum(), draws[0].sum())
    # Within 5 standard errors of the draws' mean (sending the ties to one rank instead would
    # be off by ~100 points per bin).
    sem = draws.std(axis=0) / np.sqrt(len(draws))
    assert np.all(np.abs(got - draws.mean(axis=0)) < 5 * sem + 1e-3)
    assert np.abs(got - draws.mean(axis=0)).max() < 0.03 * got.max()
    tie_free = rng.normal(size=(6, 40, 30))
    truth = rng.normal(size=(40, 30))
    np.testing.assert_array_equal(
        cm.rank_histogram(tie_free, truth, ensemble_axis=0).counts,
        ensscores.rankhist(tie_free, truth, normalize=False),
    )


def _spread_skill_reference(members, obs):
    members, obs = np.asarray(members, np.float64), np.asarray(obs, np.float64)
    m = members.shape[-1]
    spread = np.sqrt(np.mean(members.var(axis=-1, ddof=1)) * (m + 1) / m)
    skill = np.sqrt(np.mean((members.mean(axis=-1) - obs) ** 2))
    return spread, skill


@pytest.mark.parametrize("m", [3, 20])
def test_spread_skill_by_hand_and_calibrated_ratio_is_one(m):
    rng = np.random.default_rng(m)
    n = 40_000
    centre = rng.normal(size=n) * 3
    members = (centre[:, None] + rng.normal(size=(n, m))).astype(np.float32)
    obs = (centre + rng.normal(size=n)).astype(np.float32)
    got = cm.spread_skill(members, obs)
    spread, skill = _spread_skill_reference(members, obs)
    np.testing.assert_allclose([got.spread(), got.skill()], [spread, skill], rtol=1e-5)
    # Calibrated: ratio 1 within sampling error (~1 %); without the (M + 1) / M correction a
    # 3-member ensemble would read sqrt(3 / 4) = 0.87.
    assert abs(float(got.ratio()) - 1) < 0.03


def test_spread_skill_at_kelvin_offsets_in_float32():
    rng = np.random.default_rng(3)
    members = (280 + rng.normal(size=(500, 400, 5)) * 0.3).astype(np.float32)
    obs = (280 + rng.normal(size=(500, 400)) * 0.3).astype(np.float32)
    got = cm.spread_skill(members, obs)
    spread, skill = _spread_skill_reference(members, obs)
    np.testing.assert_allclose([got.spread(), got.skill()], [spread, skill], rtol=1e-5)


def test_halves_merge_into_the_whole_and_jit_equals_eager():
    rng = np.random.default_rng(4)
    members = rng.normal(size=(4, 30, 7)).astype(np.float32)
    obs = rng.normal(size=(4, 30)).astype(np.float32)
    for fn in (cm.rank_histogram, cm.spread_skill):
        whole = fn(members, obs, axis=1)
        halves = fn(members[:, :13], obs[:, :13], axis=1) + fn(members[:, 13:], obs[:, 13:], axis=1)
        stacked = jax.vmap(lambda f, o, fn=fn: fn(f, o, axis=1))(
            members.reshape(4, 3, 10, 7).swapaxes(0, 1), obs.reshape(4, 3, 10).swapaxes(0, 1)
        )
        jitted = jax.jit(fn, static_argnames=("axis",))(members, obs, axis=1)
        for a, b, c, d in zip(whole, halves, cm.merge(stacked), jitted, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)
            np.testing.assert_allclose(a, c, rtol=1e-6)
            np.testing.assert_allclose(a, d, rtol=1e-6)


def test_nan_member_or_observation_masks_the_point():
    rng = np.random.default_rng(5)
    members = rng.normal(size=(30, 4)).astype(np.float32)
    obs = rng.normal(size=30).astype(np.float32)
    members[3, 1] = np.nan
    obs[7] = np.nan
    keep = np.ones(30, bool)
    keep[[3, 7]] = False
    hist = cm.rank_histogram(members, obs)
    np.testing.assert_array_equal(
        hist.counts, np.bincount(_ranks(members[keep], obs[keep]), minlength=5)
    )
    got = cm.spread_skill(members, obs)
    want = _spread_skill_reference(members[keep], obs[keep])
    np.testing.assert_allclose([got.spread(), got.skill()], want, rtol=1e-5)
    assert float(got.weight) == 28
    empty = cm.spread_skill(jnp.full((2, 3), jnp.nan), jnp.zeros(2))
    assert np.isnan(empty.ratio())


def test_bad_inputs_name_the_argument():
    with pytest.raises(DataError, match="ensemble_axis"):
        cm.rank_histogram(np.zeros((3, 4)), np.zeros(3), ensemble_axis=2)
    with pytest.raises(DataError, match=">= 2"):
        cm.spread_skill(np.zeros((3, 1)), np.zeros(3))
    with pytest.raises(DataError, match="observed"):
        cm.rank_histogram(np.zeros((3, 4)), np.zeros(5))


def test_xarray_wrappers_equal_the_kernels():
    import xarray as xr

    rng = np.random.default_rng(6)
    members = rng.normal(size=(5, 3, 40)).astype(np.float32)  # (member, time, point)
    obs = rng.normal(size=(3, 40)).astype(np.float32)
    f = xr.DataArray(members, dims=("member", "time", "point"), coords={"time": [1, 2, 3]})
    o = xr.DataArray(obs, dims=("time", "point"), coords={"time": [1, 2, 3]})
    hist = cm.xr.rank_histogram(f, o, dim="point")
    assert hist.dims == ("time", "rank") and hist["rank"].values.tolist() == list(range(6))
    want = cm.rank_histogram(members, obs, ensemble_axis=0, axis=1).counts
    np.testing.assert_array_equal(hist, want)
    scores = cm.xr.spread_skill(f.chunk({"member": 2}), o, dim=["time", "point"])
    stats = cm.spread_skill(members, obs, ensemble_axis=0)
    np.testing.assert_allclose(
        [scores.spread, scores.skill, scores.ratio],
        [stats.spread(), stats.skill(), stats.ratio()],
        rtol=1e-6,
    )
    with pytest.raises(DataError, match="member_dim"):
        cm.xr.rank_histogram(f.rename(member="m"), o)
