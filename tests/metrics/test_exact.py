"""Exact statistics: float32 scores of 2**24 offset points equal float64 NumPy to 1e-5.

Kelvin temperatures (offset 280) and geopotentials (5e4) with unit-sized anomalies are where
raw float32 moments cancel and running float32 sums drift; the scores must match float64
one-shot, accumulated chunk by chunk, and over the 8 simulated devices alike.
"""

import functools
import operator

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from sklearn.metrics import roc_auc_score

import climml.metrics as cm
from climml.metrics._masking import sum_together

N = 2**24
CHUNKS = 16
OFFSETS = [0.0, 280.0, 5e4]
RTOL = 1e-5
SCORES = ("correlation", "acc", "rmse", "mse", "mae", "bias", "brier")


@pytest.fixture(scope="module")
def anomalies():
    """Observed anomalies, forecast noise (bias 0.3, sd 0.7) and Brier pairs, float32."""
    rng = np.random.default_rng(11)
    o = rng.standard_normal(N, dtype=np.float32)
    noise = rng.standard_normal(N, dtype=np.float32) * np.float32(0.7) + np.float32(0.3)
    prob = (1 / (1 + np.exp(-2 * (o + noise)))).astype(np.float32)
    outcome = (o > 0).astype(np.float32)
    return o, noise, prob, outcome


def fields(anomalies, offset):
    """``(forecast, observed, probability, outcome)`` with the offset added in float32."""
    o, noise, prob, outcome = anomalies
    observed = o + np.float32(offset)
    return observed + noise, observed, prob, outcome


@pytest.fixture(scope="module")
def reference(anomalies):
    """``reference(offset)``: the scores in float64 NumPy from the same float32 values."""
    return functools.cache(lambda offset: _reference(*fields(anomalies, offset), offset))


def _reference(f, o, prob, outcome, offset) -> dict[str, float]:
    f, o = f.astype(np.float64), o.astype(np.float64)
    e = f - o
    fa, oa = f - f.mean(), o - o.mean()
    anom_f, anom_o = f - offset, o - offset
    return {
        "correlation": np.sum(fa * oa) / np.sqrt(np.sum(fa**2) * np.sum(oa**2)),
        "acc": np.sum(anom_f * anom_o) / np.sqrt(np.sum(anom_f**2) * np.sum(anom_o**2)),
        "rmse": np.sqrt(np.mean(e**2)),
        "mse": np.mean(e**2),
        "mae": np.mean(np.abs(e)),
        "bias": np.mean(e),
        "brier": np.mean((prob.astype(np.float64) - outcome) ** 2),
    }


def statistics(f, o, prob, outcome, climatology):
    """Every mergeable statistic the scores need, for one chunk."""
    return (
        cm.error_sums(f, o),
        cm.comoments(f, o),
        cm.comoments(f - climatology, o - climatology),
        cm.error_sums(prob, outcome),
    )


def scores(stats) -> dict[str, float]:
    errors, moments, anomalies, brier = stats
    return {
        "correlation": moments.correlation(),
        "acc": anomalies.correlation(centered=False),
        "rmse": errors.rmse(),
        "mse": errors.mse(),
        "mae": errors.mae(),
        "bias": errors.bias(),
        "brier": brier.mse(),
    }


def assert_scores(got: dict, want: dict) -> None:
    assert set(got) == set(SCORES)
    for name in SCORES:
        assert np.asarray(got[name]).dtype == np.float32, name
        np.testing.assert_allclose(float(got[name]), want[name], rtol=RTOL, err_msg=name)


@pytest.mark.parametrize("offset", OFFSETS)
def test_one_shot_scores_equal_float64(anomalies, reference, offset):
    f, o, prob, outcome = fields(anomalies, offset)
    clim = np.float32(offset)
    got = {
        "correlation": cm.correlation(f, o),
        "acc": cm.acc(f, o, clim),
        "rmse": cm.rmse(f, o),
        "mse": cm.mse(f, o),
        "mae": cm.mae(f, o),
        "bias": cm.bias(f, o),
        "brier": cm.brier_score(prob, outcome),
    }
    assert_scores(got, reference(offset))


@pytest.mark.parametrize("offset", OFFSETS)
def test_chunk_by_chunk_merge_equals_float64(anomalies, reference, offset):
    f, o, prob, outcome = fields(anomalies, offset)
    clim = np.float32(offset)
    per_chunk = jax.jit(statistics)
    parts = [
        per_chunk(
            *(a[c * (N // CHUNKS) : (c + 1) * (N // CHUNKS)] for a in (f, o, prob, outcome)), clim
        )
        for c in range(CHUNKS)
    ]
    # A running `+` over the chunks, as a loop over batches or dask blocks accumulates them.
    merged = tuple(functools.reduce(operator.add, [p[i] for p in parts]) for i in range(4))
    assert_scores(scores(merged), reference(offset))


@pytest.mark.parametrize("offset", OFFSETS)
def test_eight_devices_equal_float64(anomalies, reference, offset):
    n = jax.device_count()
    if n < 8:
        pytest.skip("needs the 8 simulated devices of tests/conftest.py")
    f, o, prob, outcome = fields(anomalies, offset)
    clim = np.float32(offset)
    want = reference(offset)
    mesh = jax.make_mesh((n,), ("d",))
    shard = NamedSharding(mesh, P("d"))
    data = [jax.device_put(a, shard) for a in (f, o, prob, outcome)]

    # 1. The kernels on sharded arrays: XLA splits the sums over the devices.
    sharded = jax.jit(statistics)(*data, clim)
    assert_scores(scores(sharded), want)

    # 2. Statistics per device, gathered and merged pairwise with cm.merge.
    def local(*chunk):
        return cm.merge(jax.lax.all_gather(statistics(*chunk, clim), "d"))

    # all_gather leaves every device with the same stack; the merge is then replicated.
    gathered = jax.shard_map(
        local, mesh=mesh, in_specs=(P("d"),) * 4, out_specs=P(), check_vma=False
    )
    gathered = jax.jit(gathered)
    assert_scores(scores(gathered(*data)), want)


def test_merge_of_stacked_statistics_equals_running_sum():
    rng = np.random.default_rng(0)
    x = rng.normal(280, 1, size=(7, 50)).astype(np.float32)  # 7 chunks: an odd count
    y = (x + rng.normal(size=x.shape)).astype(np.float32)
    stacked = jax.vmap(lambda a, b: cm.comoments(a, b))(x, y)
    merged = cm.merge(stacked)
    running = functools.reduce(operator.add, [cm.comoments(x[i], y[i]) for i in range(7)])
    for got, want in zip(merged, running, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(
        merged.correlation(), np.corrcoef(x.ravel(), y.ravel())[0, 1], rtol=1e-5
    )
    tables = jax.vmap(lambda a, b: cm.contingency(a, b, threshold=280.0))(x, y)
    np.testing.assert_array_equal(cm.merge(tables).hits, cm.contingency(x, y, threshold=280.0).hits)


@pytest.mark.parametrize("offset", [0.0, 5e4])
def test_per_point_scores_over_time_and_weights_equal_float64(offset):
    rng = np.random.default_rng(5)
    o = (rng.normal(size=(3000, 3, 4)) + offset).astype(np.float32)
    f = (o + rng.normal(0.3, 0.7, size=o.shape)).astype(np.float32)
    w = rng.random((3, 1)).astype(np.float32)  # latitude-like, broadcast over lon
    f64, o64 = f.astype(np.float64), o.astype(np.float64)
    fa, oa = f64 - f64.mean(0), o64 - o64.mean(0)
    want = np.sum(fa * oa, 0) / np.sqrt(np.sum(fa**2, 0) * np.sum(oa**2, 0))
    np.testing.assert_allclose(cm.correlation(f, o, axis=0), want, rtol=RTOL)
    e2 = np.broadcast_to(w, o.shape) * (f64 - o64) ** 2
    want_w = np.sqrt(e2.sum((1, 2)) / (np.broadcast_to(w, o.shape[1:]).sum()))
    np.testing.assert_allclose(cm.rmse(f, o, axis=(1, 2), weights=w), want_w, rtol=RTOL)
    mean = np.average(o64, axis=(0, 2), weights=np.broadcast_to(w, o.shape))
    got = cm.weighted_mean(o, axis=(0, 2), weights=w)
    np.testing.assert_allclose(got, mean, rtol=1e-6, atol=1e-6)  # means near 0 at offset 0


def test_float64_inputs_stay_float64_under_x64():
    rng = np.random.default_rng(6)
    x = rng.normal(5e4, 1, size=1000)
    y = x + rng.normal(size=1000)
    with jax.enable_x64(True):
        got = cm.correlation(x, y)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, np.corrcoef(x, y)[0, 1], rtol=1e-12)
        assert cm.rmse(x, y).dtype == np.float64


def test_exact_auc_of_a_million_tied_samples_equals_sklearn():
    # Beyond 46340 samples the rank sums leave int32; tied pairs then number ~1e11.
    rng = np.random.default_rng(7)
    labels = rng.random(2**20) < 0.4
    scores = np.round(rng.normal(size=labels.size) + labels, 1).astype(np.float32)
    np.testing.assert_allclose(cm.roc_auc(scores, labels), roc_auc_score(labels, scores), rtol=1e-6)
    w = rng.random(labels.size).astype(np.float32)
    want = roc_auc_score(labels, scores, sample_weight=w)
    np.testing.assert_allclose(cm.roc_auc(scores, labels, weights=w), want, rtol=1e-5)


def test_histogram_counts_past_float32_integers():
    # 2**24 + 3 samples in one bin: float32 counts would stop at 2**24.
    n = 2**24 + 3
    labels = np.zeros(n, bool)
    labels[:5] = True
    hist = cm.roc_histogram(np.full(n, 0.25, np.float32), labels, bins=2)
    np.testing.assert_array_equal(hist.negatives, [n - 5, 0])
    np.testing.assert_array_equal(hist.positives, [5, 0])


@pytest.mark.parametrize(
    ("shape", "axis"),
    [
        ((129,), None),  # one full block and a one-term tail
        ((300, 7, 5), 0),  # leading axes: blocked in place
        ((7, 5, 3000), (1, 2)),  # trailing axes
        ((40, 6, 50), (0, 2)),  # split axes: moved together first
        ((128 * 128 + 5,), 0),  # two levels
    ],
)
def test_blocked_sums_match_float64_on_every_layout(shape, axis):
    rng = np.random.default_rng(8)
    x = (5e4 + rng.normal(size=shape)).astype(np.float32)
    y = rng.integers(0, 3, size=shape).astype(np.int32)
    got_x, got_y = sum_together([jnp.asarray(x), jnp.asarray(y)], axis)
    np.testing.assert_allclose(got_x, x.astype(np.float64).sum(axis=axis), rtol=1e-6)
    np.testing.assert_array_equal(got_y, y.sum(axis=axis))
    assert got_x.dtype == np.float32 and got_y.dtype == np.int32
