"""ROC AUC and curve against scikit-learn: ties, NaN, weights, every sort path, binned mode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

import climml.metrics as cm

# One jitted function per call pattern, shared by the tests: compiling is the slow part.
auc = jax.jit(cm.roc_auc, static_argnames=("axis", "bins"))


def _sk_auc(scores, labels, weights=None):
    """scikit-learn AUC over non-NaN samples (it rejects infinities, so clip them)."""
    keep = ~np.isnan(scores)
    finite = np.clip(scores[keep].astype(np.float64), -1e300, 1e300)
    w = None if weights is None else weights[keep]
    if len(np.unique(labels[keep])) < 2:
        return np.nan
    return roc_auc_score(labels[keep], finite, sample_weight=w)


def _cases(seed, points=6, n=80, decimals=1):
    rng = np.random.default_rng(seed)
    labels = rng.random((points, n)) < 0.35
    scores = np.round(rng.normal(size=(points, n)) + labels, decimals).astype(np.float32)
    return scores, labels


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda s: np.abs(s), id="shared-bit (non-negative)"),
        pytest.param(lambda s: s, id="both signs"),
        pytest.param(lambda s: np.where(s > 2, np.inf, np.where(s < -1, -np.inf, s)), id="infs"),
        pytest.param(lambda s: np.where(s == 0, -0.0, s), id="signed zeros"),
    ],
)
def test_exact_auc_matches_sklearn_with_ties(make):
    scores, labels = _cases(0)
    scores = make(scores).astype(np.float32)
    scores[0, :7] = np.nan
    got = np.asarray(auc(scores, labels, axis=1))
    want = [_sk_auc(scores[i], labels[i]) for i in range(len(scores))]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_many_points_count_ties_by_scan_and_match_sklearn():
    from climml.metrics import roc

    scores, labels = _cases(10, points=roc.SCAN_MIN_POINTS + 8, n=60, decimals=0)  # many ties
    scores[0, :5] = np.nan
    got = np.asarray(auc(scores, labels, axis=1))
    want = [_sk_auc(scores[i], labels[i]) for i in range(len(scores))]
    np.testing.assert_allclose(got, want, atol=1e-6)
    keys = np.sort(np.random.default_rng(11).integers(0, 20, size=(8, 100)), axis=1)
    ordered = jnp.asarray(keys.astype(np.uint32))
    is_pos = jnp.asarray(keys % 2 == 1) & (jnp.arange(100) < 90)  # last 10: masked
    np.testing.assert_array_equal(
        jax.vmap(roc._tied_pairs)(ordered, is_pos), jax.vmap(roc._tied_pairs_scan)(ordered, is_pos)
    )


def test_weighted_auc_matches_sklearn_sample_weight():
    scores, labels = _cases(1)
    w = np.random.default_rng(2).random(scores.shape).astype(np.float32)
    got = np.asarray(auc(scores, labels, axis=1, weights=w))
    want = [_sk_auc(scores[i], labels[i], w[i]) for i in range(len(scores))]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_long_samples_use_float_sums_and_stay_exact():
    scores, labels = _cases(3, points=1, n=50_000, decimals=2)
    np.testing.assert_allclose(auc(scores[0], labels[0]), _sk_auc(scores[0], labels[0]), atol=1e-5)


def test_nan_labels_mask_and_single_class_gives_nan():
    scores, labels = _cases(4)
    labels = labels.astype(np.float32)
    labels[:, :10] = np.nan
    got = np.asarray(auc(scores, labels, axis=1))
    want = [_sk_auc(scores[i, 10:], labels[i, 10:]) for i in range(len(scores))]
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.isnan(auc(scores, np.ones_like(labels), axis=1)).all()


def test_axis_layout_jit_and_vmap_agree():
    scores, labels = _cases(5)
    by_row = auc(scores, labels, axis=1)
    np.testing.assert_allclose(cm.roc_auc(scores, labels, axis=1), by_row)  # eager == jit
    np.testing.assert_allclose(auc(scores.T, labels.T, axis=0), by_row, atol=1e-7)
    np.testing.assert_allclose(jax.jit(jax.vmap(cm.roc_auc))(scores, labels), by_row, atol=1e-7)
    loop = [auc(scores[i], labels[i]) for i in range(len(scores))]
    np.testing.assert_allclose(loop, by_row, atol=1e-7)


def test_binned_auc_is_exact_when_bins_separate_scores():
    # Scores on a 0.1 grid, bins centred on the grid: each bin holds one score value.
    scores, labels = _cases(6)
    probs = np.clip(np.round(np.abs(scores) / 4, 1), 0, 1).astype(np.float32)
    exact = auc(probs, labels, axis=1)
    edges = np.linspace(-0.05, 1.05, 12)
    np.testing.assert_allclose(cm.roc_auc(probs, labels, axis=1, bins=edges), exact, atol=1e-6)
    coarse = auc(probs, labels, axis=1, bins=4)  # ties within bins: an approximation
    assert np.all(np.abs(np.asarray(coarse) - np.asarray(exact)) < 0.1)


def test_histograms_accumulate_across_batches():
    scores, labels = _cases(7)
    probs = (1 / (1 + np.exp(-scores))).astype(np.float32)
    halves = [slice(0, 30), slice(30, 80)]
    total = cm.roc_histogram(probs[:, halves[0]], labels[:, halves[0]], bins=20, axis=1)
    total = total + cm.roc_histogram(probs[:, halves[1]], labels[:, halves[1]], bins=20, axis=1)
    np.testing.assert_allclose(total.auc(), auc(probs, labels, axis=1, bins=20), atol=1e-6)


def test_roc_curve_matches_sklearn():
    scores, labels = _cases(8, points=1, n=200)
    s, y = scores[0], labels[0]
    w = np.random.default_rng(9).random(s.shape).astype(np.float32)
    fpr, tpr, thr = cm.roc_curve(s, y, weights=w)
    sk_fpr, sk_tpr, sk_thr = sk_roc_curve(y, s, sample_weight=w, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, atol=1e-6)
    np.testing.assert_allclose(tpr, sk_tpr, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(thr)[1:], sk_thr[1:])
    # The fixed-threshold (jittable) mode evaluates the same curve at given thresholds.
    fixed_fpr, fixed_tpr, _ = jax.jit(cm.roc_curve)(s, y, weights=w, thresholds=sk_thr[1:])
    np.testing.assert_allclose(fixed_fpr, sk_fpr[1:], atol=1e-6)
    np.testing.assert_allclose(fixed_tpr, sk_tpr[1:], atol=1e-6)
    # The AUC of the exact curve by the trapezoid rule is the AUC.
    np.testing.assert_allclose(np.trapezoid(tpr, fpr), auc(s, y, weights=w), atol=1e-6)


# Variable-length samples padded with NaN (= masked) to one length, so one compile serves all.
N_MAX = 40
tied_scores = st.sampled_from([-2.0, -0.5, 0.0, 0.25, 1.0, 3.0, np.nan])


def _padded(values, labels):
    scores = np.full(N_MAX, np.nan, np.float32)
    scores[: len(values)] = values
    flags = np.zeros(N_MAX, bool)
    flags[: len(labels)] = labels
    return scores, flags


samples = st.integers(4, N_MAX).flatmap(
    lambda n: st.tuples(arrays(np.float32, n, elements=tied_scores), arrays(np.bool_, n))
)


@settings(max_examples=60, deadline=None)
@given(samples)
def test_auc_properties_with_heavy_ties(case):
    scores, labels = _padded(*case)
    value = float(auc(scores, labels))
    want = _sk_auc(scores, labels.astype(int))
    if np.isnan(want):
        assert np.isnan(value)
        return
    assert abs(value - want) < 1e-6
    assert abs(float(auc(-scores, labels)) - (1 - value)) < 1e-6  # AUC(-s) = 1 - AUC(s)
    assert abs(float(auc(scores, ~labels)) - (1 - value)) < 1e-6


big = st.floats(width=32)  # any float32: subnormals, infinities, NaN


@settings(max_examples=30, deadline=None)
@given(arrays(np.float32, N_MAX, elements=big), arrays(np.bool_, N_MAX))
def test_auc_matches_sklearn_on_arbitrary_floats(scores, labels):
    want = _sk_auc(scores, labels.astype(int))
    got = float(auc(scores, labels))
    assert (np.isnan(want) and np.isnan(got)) or abs(got - want) < 1e-6
