"""Contingency-table scores: published CAWCR values, scikit-learn, invariants, accumulation."""

import functools
import operator

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

import climml.metrics as cm
from climml.errors import ConfigError, DataError

# WWRP/WGNE JWGFVR ("CAWCR") verification pages, worked dichotomous example.
CAWCR = cm.Contingency(hits=82, misses=23, false_alarms=38, correct_negatives=222)


@pytest.mark.parametrize(
    ("score", "want"),
    [
        ("csi", 0.5734),
        ("pod", 0.7810),
        ("far", 0.3167),
        ("ets", 0.4377),
        ("hss", 0.6089),
        ("frequency_bias", 1.1429),
        ("pofd", 38 / 260),
        ("accuracy", 304 / 365),
    ],
)
def test_cawcr_worked_example(score, want):
    np.testing.assert_allclose(getattr(CAWCR, score)(), want, atol=5e-5)


def _paired_fields(seed=0, shape=(40, 30)):
    rng = np.random.default_rng(seed)
    obs = np.round(rng.gamma(0.6, 2.0, size=shape), 1).astype(np.float32)  # rounded: ties
    fcst = np.round(obs * rng.lognormal(0, 0.5, size=shape), 1).astype(np.float32)
    fcst[0, :4] = np.nan
    obs[1, 2:6] = np.nan
    return fcst, obs


def test_contingency_counts_match_numpy_with_ties_and_nans():
    f, o = _paired_fields()
    keep = ~(np.isnan(f) | np.isnan(o))
    for op, compare in [(">=", np.greater_equal), (">", np.greater), ("<", np.less)]:
        fe, oe = compare(f[keep], 1.0), compare(o[keep], 1.0)
        table = cm.contingency(f, o, threshold=1.0, op=op)
        assert int(table.hits) == np.sum(fe & oe)
        assert int(table.misses) == np.sum(~fe & oe)
        assert int(table.false_alarms) == np.sum(fe & ~oe)
        assert int(table.correct_negatives) == np.sum(~fe & ~oe)


def test_binary_scores_match_sklearn():
    f, o = _paired_fields(seed=3)
    keep = ~(np.isnan(f) | np.isnan(o))
    pred, true = f[keep] >= 1.0, o[keep] >= 1.0
    p, r, f1, _ = precision_recall_fscore_support(true, pred, average="binary")
    np.testing.assert_allclose(cm.precision(f, o, threshold=1.0), p, rtol=1e-6)
    np.testing.assert_allclose(cm.recall(f, o, threshold=1.0), r, rtol=1e-6)
    np.testing.assert_allclose(cm.f1_score(f, o, threshold=1.0), f1, rtol=1e-6)
    np.testing.assert_allclose(
        cm.accuracy(f, o, threshold=1.0), accuracy_score(true, pred), rtol=1e-6
    )
    # Default threshold 0.5 serves 0/1 labels directly.
    np.testing.assert_allclose(cm.precision(pred, true), p, rtol=1e-6)


def test_weighted_table_matches_sklearn_sample_weight():
    f, o = _paired_fields(seed=4)
    w = np.random.default_rng(5).random(f.shape)
    keep = ~(np.isnan(f) | np.isnan(o))
    p, r, _, _ = precision_recall_fscore_support(
        o[keep] >= 2.0, f[keep] >= 2.0, average="binary", sample_weight=w[keep]
    )
    np.testing.assert_allclose(cm.precision(f, o, threshold=2.0, weights=w), p, rtol=1e-5)
    np.testing.assert_allclose(cm.recall(f, o, threshold=2.0, weights=w), r, rtol=1e-5)


def test_many_thresholds_equal_loop_and_jit_equals_eager():
    f, o = _paired_fields()
    thresholds = np.array([0.1, 0.5, 1.0, 2.0, 5.0], np.float32)
    many = cm.contingency(f, o, threshold=thresholds, axis=1)
    for k, t in enumerate(thresholds):
        one = cm.contingency(f, o, threshold=t, axis=1)
        for a, b in zip(many, one, strict=True):
            np.testing.assert_array_equal(a[k], b)
    jitted = jax.jit(cm.ets, static_argnames=("op", "axis"))
    np.testing.assert_allclose(
        jitted(f, o, threshold=thresholds, axis=0), cm.ets(f, o, threshold=thresholds, axis=0)
    )


def test_vmap_over_points_equals_loop():
    f, o = _paired_fields()
    per_column = jax.vmap(lambda a, b: cm.csi(a, b, threshold=1.0), in_axes=1)(f, o)
    loop = [cm.csi(f[:, j], o[:, j], threshold=1.0) for j in range(f.shape[1])]
    np.testing.assert_allclose(per_column, loop, rtol=1e-6)


def test_tables_accumulated_over_chunks_equal_one_shot():
    f, o = _paired_fields()
    chunks = np.array_split(np.arange(f.shape[0]), 4)
    total = functools.reduce(
        operator.add, [cm.contingency(f[c], o[c], threshold=1.0) for c in chunks]
    )
    one_shot = cm.contingency(f, o, threshold=1.0)
    for a, b in zip(total, one_shot, strict=True):
        assert int(a) == int(b)
    np.testing.assert_allclose(total.hss(), one_shot.hss())


def test_no_events_gives_nan_scores():
    zeros = np.zeros(10, np.float32)
    assert np.isnan(cm.csi(zeros, zeros, threshold=1.0))
    assert np.isnan(cm.pod(zeros, zeros, threshold=1.0))
    assert float(cm.accuracy(zeros, zeros, threshold=1.0)) == 1.0
    assert np.isnan(cm.csi(np.full(3, np.nan), np.ones(3), threshold=1.0))


def test_bad_arguments_raise_named_errors():
    with pytest.raises(ConfigError, match="op"):
        cm.contingency(np.ones(3), np.ones(3), threshold=1.0, op="==")
    with pytest.raises(DataError, match="threshold"):
        cm.contingency(np.ones(3), np.ones(3), threshold=np.ones((2, 2)))


fields = arrays(np.float32, 20, elements=st.floats(0, 10, width=32) | st.just(np.nan))


@settings(max_examples=40, deadline=None)
@given(fields, fields, st.floats(0, 10, width=32))
def test_score_ranges(f, o, t):
    table = cm.contingency(f, o, threshold=t)
    for score in ("csi", "pod", "far", "pofd", "accuracy", "f1_score"):
        value = float(getattr(table, score)())
        assert np.isnan(value) or 0.0 <= value <= 1.0
    hss, ets = float(table.hss()), float(table.ets())
    assert np.isnan(hss) or -1.0 - 1e-6 <= hss <= 1.0 + 1e-6
    assert np.isnan(ets) or -1 / 3 - 1e-6 <= ets <= 1.0 + 1e-6
    # A perfect forecast scores CSI 1 whenever there is an event.
    perfect = float(cm.csi(o, o, threshold=t))
    assert np.isnan(perfect) or perfect == 1.0
