"""nowcast_statistics / nowcast_scores against NumPy float64 hand computations, merging, jit."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import uniform_filter

import climml.metrics as cm
from climml.errors import ConfigError, DataError

THRESHOLDS = (0.5, 2.0)
POOLS = (1, 2, 4)
SCALES = (1, 3)


def _blocks(x, size, kind):
    """float64 non-overlapping pooling by reshaping into (..., H/size, W/size, size, size)."""
    *lead, h, w = x.shape
    b = np.asarray(x, np.float64).reshape(*lead, h // size, size, w // size, size)
    b = np.moveaxis(b, -3, -2)
    return b.mean(axis=(-2, -1)) if kind == "avg" else b.max(axis=(-2, -1))


def _crps(members, obs):
    """Energy-form CRPS per point, members on axis 0 (float64)."""
    skill = np.mean(np.abs(members - obs), axis=0)
    spread = np.mean(np.abs(members[:, None] - members[None, :]), axis=(0, 1))
    return skill - 0.5 * spread


@pytest.fixture
def ensemble():
    """(N=2 events, M=3 members, L=2 leads, 8, 8) forecasts and (N, L, 8, 8) observations."""
    rng = np.random.default_rng(0)
    obs = (rng.gamma(0.6, 2.0, size=(2, 2, 8, 8)) * (rng.random((2, 2, 8, 8)) < 0.6)).astype(
        np.float32
    )
    noise = rng.lognormal(0, 0.5, size=(2, 3, 2, 8, 8)).astype(np.float32)
    forecast = np.roll(obs, 1, axis=-1)[:, None] * noise
    return forecast, obs


def _stats(forecast, obs, **kw):
    settings = dict(thresholds=THRESHOLDS, pools=POOLS, fss_scales=SCALES)
    return cm.nowcast_statistics(forecast, obs, **{**settings, **kw})


def test_scores_equal_hand_computations(ensemble):
    forecast, obs = ensemble
    scores = cm.nowcast_scores(_stats(forecast, obs, member_axis=1, lead_axis=1))
    members = np.moveaxis(forecast, 1, 0).astype(np.float64)  # (M, N, L, H, W)
    for i, size in enumerate(POOLS):
        f, o = _blocks(members, size, "max"), _blocks(obs, size, "max")[None]
        for k, t in enumerate(THRESHOLDS):
            fe, oe = np.broadcast_arrays(f >= t, o >= t)
            a = np.sum(fe & oe, axis=(0, 1, 3, 4))  # per lead
            b = np.sum(fe & ~oe, axis=(0, 1, 3, 4))
            c = np.sum(~fe & oe, axis=(0, 1, 3, 4))
            np.testing.assert_allclose(scores["csi"][:, i, k], a / (a + b + c), rtol=1e-6)
            np.testing.assert_allclose(scores["pod"][:, i, k], a / (a + c), rtol=1e-6)
            np.testing.assert_allclose(scores["far"][:, i, k], b / (a + b), rtol=1e-6)
        for kind in ("avg", "max"):
            crps = _crps(_blocks(members, size, kind), _blocks(obs, size, kind))
            want = crps.mean(axis=(0, 2, 3))
            np.testing.assert_allclose(scores[f"crps_{kind}"][:, i], want, rtol=1e-5)
    for j, scale in enumerate(SCALES):
        for k, t in enumerate(THRESHOLDS):
            pf = uniform_filter((members >= t) * 1.0, size=(1, 1, 1, scale, scale), mode="constant")
            po = uniform_filter((obs >= t) * 1.0, size=(1, 1, scale, scale), mode="constant")
            num = np.sum((pf - po) ** 2, axis=(0, 1, 3, 4))
            den = np.sum(pf**2, axis=(0, 1, 3, 4)) + 3 * np.sum(po**2, axis=(0, 2, 3))
            np.testing.assert_allclose(scores["fss"][:, j, k], 1 - num / den, rtol=1e-5)
    ranks = np.sum(members < obs[None], axis=0)  # no ties among wet values; dry cells tie
    dry = np.sum(members == obs[None], axis=0)
    for lead in range(2):
        hist = np.zeros(4)
        for r, e in zip(ranks[:, lead].ravel(), dry[:, lead].ravel(), strict=True):
            hist[r : r + e + 1] += 1 / (e + 1)
        np.testing.assert_allclose(scores["rank_histogram"][lead], hist / hist.sum(), rtol=1e-5)
    mean = members.mean(axis=0)
    spread = np.sqrt(members.var(axis=0, ddof=1).mean(axis=(0, 2, 3)) * 4 / 3)
    skill = np.sqrt(((mean - obs) ** 2).mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(scores["spread"], spread, rtol=1e-5)
    np.testing.assert_allclose(scores["spread_skill"], spread / skill, rtol=1e-5)
    psd = np.asarray(cm.radial_psd(members)[1]).mean(axis=(0, 1))
    np.testing.assert_allclose(scores["psd_forecast"], psd, rtol=1e-5)
    np.testing.assert_allclose(
        scores["psd_observed"], np.asarray(cm.radial_psd(obs)[1]).mean(0), rtol=1e-5
    )
    np.testing.assert_allclose(scores["wavenumber"], np.arange(5) / 8)


def test_deterministic_forecast_crps_is_the_mae(ensemble):
    forecast, obs = ensemble
    single = forecast[:, 0]
    stats = _stats(single, obs)
    assert stats.rank is None and stats.spread is None
    scores = cm.nowcast_scores(stats)
    for i, size in enumerate(POOLS):
        for kind in ("avg", "max"):
            mae = np.mean(np.abs(_blocks(single, size, kind) - _blocks(obs, size, kind)))
            np.testing.assert_allclose(scores[f"crps_{kind}"][i], mae, rtol=1e-5)
    # An ensemble's categorical scores pool the members' tables.
    tables = [_stats(forecast[:, m], obs).contingency for m in range(3)]
    pooled = _stats(forecast, obs, member_axis=1).contingency
    for got, *want in zip(pooled, *tables, strict=True):
        np.testing.assert_array_equal(got, sum(want))


def test_halves_merge_into_the_whole_per_lead_and_jit_equals_eager(ensemble):
    forecast, obs = ensemble
    kw = dict(member_axis=1, lead_axis=1, pools=(1, 2), fss_scales=(3,))  # compiles faster
    whole = _stats(forecast, obs, **kw)
    halves = _stats(forecast[:1], obs[:1], **kw) + _stats(forecast[1:], obs[1:], **kw)
    stacked = jax.tree.map(
        lambda *x: jnp.stack(x),
        *[_stats(forecast[i : i + 1], obs[i : i + 1], **kw) for i in range(2)],
    )
    merged = cm.merge(stacked)
    jitted = jax.jit(
        cm.nowcast_statistics,
        static_argnames=("thresholds", "pools", "fss_scales", "member_axis", "lead_axis"),
    )(forecast, obs, thresholds=THRESHOLDS, **kw)
    lead1 = _stats(forecast[:, :, 1], obs[:, 1], member_axis=1, pools=(1, 2), fss_scales=(3,))
    for other in (halves, merged, jitted):
        assert other.settings() == whole.settings()
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-6), whole, other)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[1], b, rtol=2e-6), whole, lead1)
    with pytest.raises(DataError, match="settings"):
        whole + _stats(forecast, obs, thresholds=(1.0,), **kw)


def test_nan_cells_are_masked_and_incomplete_fields_leave_the_spectra(ensemble):
    forecast, obs = ensemble
    obs = obs[:, 0].copy()  # (N, H, W)
    forecast = forecast[:, 0, 0].copy()
    obs[0, :2, :3] = np.nan  # touches the first 2x2 and 4x4 windows only
    stats = _stats(forecast, obs)
    total = 2 * 64
    for i, size in enumerate(POOLS):
        cells = sum(stats.contingency[f][i, 0] for f in range(4))
        masked = {1: 6, 2: 2, 4: 1}[size]  # pooled windows touching the NaN block
        assert int(cells) == total // size**2 - masked
    assert float(stats.psd_observed.weight[0]) == 1  # only the complete field
    np.testing.assert_allclose(
        cm.nowcast_scores(stats)["psd_observed"], cm.radial_psd(obs[1])[1], rtol=1e-6
    )


def test_float32_sums_at_radar_size_match_float64():
    """A 4 x 512 x 512 rain field (10^6 cells): CRPS and spectra stay at float64 accuracy."""
    rng = np.random.default_rng(1)
    obs = (rng.gamma(0.5, 3.0, size=(4, 512, 512)) * (rng.random((4, 512, 512)) < 0.3)).astype(
        np.float32
    )
    forecast = (obs * rng.lognormal(0, 0.4, size=obs.shape) + 0.01).astype(np.float32)
    stats = cm.nowcast_statistics(forecast, obs, thresholds=(1.0,), pools=(1, 16), fss_scales=(8,))
    table = cm.nowcast_table(stats)
    f64, o64 = forecast.astype(np.float64), obs.astype(np.float64)
    np.testing.assert_allclose(table["crps"], np.mean(np.abs(f64 - o64)), rtol=1e-5)
    want = np.mean(np.abs(_blocks(f64, 16, "avg") - _blocks(o64, 16, "avg")))
    np.testing.assert_allclose(table["crps/avg16"], want, rtol=1e-5)
    hits = np.sum((forecast >= 1) & (obs >= 1))
    assert int(stats.contingency.hits[0, 0]) == hits  # integer counts: exact


def test_table_keys_follow_the_metrics_json_convention(ensemble):
    forecast, obs = ensemble
    table = cm.nowcast_table(_stats(forecast, obs, member_axis=1, lead_axis=1))
    assert {"csi@0.5", "csi@2/max4", "pod@0.5/max2", "far@2", "fss@0.5/3", "crps"} <= set(table)
    assert {"crps/avg2", "crps/max4", "spread", "skill", "spread_skill"} <= set(table)
    assert "crps/avg1" not in table and all(v.shape == (2,) for v in table.values())


def test_bad_settings_and_shapes_name_the_argument(ensemble):
    forecast, obs = ensemble
    with pytest.raises(ConfigError, match="thresholds"):
        _stats(forecast[:, 0], obs, thresholds=(np.nan,))
    with pytest.raises(ConfigError, match="pools"):
        _stats(forecast[:, 0], obs, pools=(0,))
    with pytest.raises(ConfigError, match="fss_scales"):
        _stats(forecast[:, 0], obs, fss_scales=(2.5,))
    with pytest.raises(ConfigError, match="op"):
        _stats(forecast[:, 0], obs, op="==")
    with pytest.raises(ConfigError, match="fair"):
        _stats(forecast[:, 0], obs, fair=True)
    with pytest.raises(DataError, match="largest pool"):
        _stats(forecast[:, 0], obs, pools=(16,))
    with pytest.raises(DataError, match="forecast.ndim"):
        _stats(forecast, obs)  # a member axis without member_axis
    with pytest.raises(DataError, match="member_axis"):
        _stats(forecast, obs, member_axis=-1)
    with pytest.raises(DataError, match="lead_axis"):
        _stats(forecast[:, 0], obs, lead_axis=2)


def test_xarray_wrapper_labels_every_axis(ensemble):
    import xarray as xr

    forecast, obs = ensemble
    f = xr.DataArray(forecast, dims=("event", "member", "lead", "y", "x"), coords={"lead": [5, 10]})
    o = xr.DataArray(obs, dims=("event", "lead", "y", "x"), coords={"lead": [5, 10]})
    ds = cm.xr.nowcast_scores(
        f.transpose("lead", "y", "member", "x", "event"),
        o,
        member_dim="member",
        thresholds=THRESHOLDS,
        pools=POOLS,
        fss_scales=SCALES,
    )
    scores = cm.nowcast_scores(_stats(forecast, obs, member_axis=1, lead_axis=1))
    assert ds["csi"].dims == ("lead", "pool", "threshold") and ds["lead"].values.tolist() == [5, 10]
    assert (
        ds["fss"].dims == ("lead", "scale", "threshold") and ds["rank_histogram"].sizes["rank"] == 4
    )
    assert ds["pool"].values.tolist() == list(POOLS) and ds["threshold"].values.tolist() == [0.5, 2]
    for name, values in scores.items():
        if name != "wavenumber":
            np.testing.assert_allclose(ds[name], values, rtol=1e-6, err_msg=name)
    single = cm.xr.nowcast_scores(f.isel(member=0), o, lead_dim=None, thresholds=(1.0,), pools=(1,))
    assert single["csi"].dims == ("pool", "threshold") and "rank_histogram" not in single


def test_statistics_per_device_merge_into_the_whole():
    """8 events on 8 (simulated) devices: each scores its own, all_gather + merge."""
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    rng = np.random.default_rng(2)
    obs = rng.gamma(0.6, 2.0, size=(8, 2, 8, 8)).astype(np.float32)
    forecast = obs[:, None] * rng.lognormal(0, 0.5, size=(8, 3, 2, 8, 8)).astype(np.float32)
    kw = dict(member_axis=1, lead_axis=1, pools=(1, 4), fss_scales=(3,), thresholds=THRESHOLDS)
    mesh = Mesh(np.array(jax.devices()[:8]), ("d",))

    def local(f, o):
        return cm.merge(jax.lax.all_gather(cm.nowcast_statistics(f, o, **kw), "d"))

    gathered = jax.jit(
        jax.shard_map(local, mesh=mesh, in_specs=(P("d"), P("d")), out_specs=P(), check_vma=False)
    )
    shard = NamedSharding(mesh, P("d"))
    got = gathered(jax.device_put(forecast, shard), jax.device_put(obs, shard))
    want = cm.nowcast_statistics(forecast, obs, **kw)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-6), got, want)


def test_host_accumulation_widens_past_int32_and_float32(ensemble):
    """After jax.device_get, ``+`` sums counts in int64 and sums in float64."""
    forecast, obs = ensemble
    host = jax.device_get(_stats(forecast[:, 0], obs, pools=(1,), fss_scales=(3,)))
    assert host.contingency.hits.dtype == np.int32
    big = dataclasses.replace(
        host,
        contingency=cm.Contingency(*(np.full_like(x, 2**30 + 7) for x in host.contingency)),
    )
    total = big + big + big
    assert total.contingency.hits.dtype == np.int64
    np.testing.assert_array_equal(total.contingency.hits, 3 * (2**30 + 7))
    assert total.crps.total.dtype == np.float64
    np.testing.assert_allclose(total.crps.total, 3 * host.crps.total.astype(np.float64))
    np.testing.assert_allclose(cm.nowcast_scores(total)["csi"], 1 / 3, rtol=1e-6)  # not wrapped
    np.testing.assert_allclose(
        cm.nowcast_scores(total)["crps_avg"], cm.nowcast_scores(host)["crps_avg"], rtol=1e-6
    )
