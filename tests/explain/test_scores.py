"""Permutation importance with the scores climate ML uses: RMSE, AUC, CSI, CRPS, a custom one.

The model reads x0 strongly, x1 weakly and ignores x2, so every score must rank them in that
order, and x2's importance must vanish (its permutation cannot change a prediction; only the
float32 summation order of the unpermuted and the vmapped evaluations may differ).
The small jnp scores are checked against scikit-learn / properscoring first.
"""

import jax
import jax.numpy as jnp
import numpy as np
import properscoring
import pytest
from sklearn.metrics import roc_auc_score

from climml import metrics
from climml.explain import permutation_importance

N = 2000
MEMBER_OFFSETS = jnp.linspace(-0.8, 0.8, 8, dtype=jnp.float32)


def rmse(pred, target):
    return jnp.sqrt(jnp.mean((pred - target) ** 2))


def roc_auc(score, label):
    """Mann-Whitney AUC (continuous scores: no ties to average)."""
    ranks = jnp.argsort(jnp.argsort(score)).astype(score.dtype) + 1.0
    n_pos = jnp.sum(label)
    n_neg = label.shape[0] - n_pos
    return (jnp.sum(ranks * label) - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)


def csi(pred, target, threshold=1.0):
    hits = jnp.sum((pred >= threshold) & (target >= threshold))
    misses = jnp.sum((pred < threshold) & (target >= threshold))
    false_alarms = jnp.sum((pred >= threshold) & (target < threshold))
    return hits / (hits + misses + false_alarms)


def crps_ensemble(members, obs):
    """Mean CRPS of ensembles ``(N, M)`` against ``(N,)``: E|X - y| - E|X - X'| / 2."""
    skill = jnp.mean(jnp.abs(members - obs[:, None]), axis=1)
    spread = jnp.mean(jnp.abs(members[:, :, None] - members[:, None, :]), axis=(1, 2))
    return jnp.mean(skill - 0.5 * spread)


def mean_abs_error(pred, target):
    return jnp.mean(jnp.abs(pred - target))


def predict_mean(x):
    return 2.0 * x[:, 0] + 0.7 * x[:, 1]


def predict_members(x):
    return predict_mean(x)[:, None] + MEMBER_OFFSETS


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, 3)).astype(np.float32)
    y = np.asarray(predict_mean(x)) + 0.5 * rng.standard_normal(N).astype(np.float32)
    return x, y.astype(np.float32)


def test_jnp_scores_match_reference_libraries(data):
    x, y = data
    pred, label = np.asarray(predict_mean(x)), (y > 0.5).astype(np.float32)
    np.testing.assert_allclose(
        roc_auc(jnp.asarray(pred), jnp.asarray(label)), roc_auc_score(label, pred), rtol=1e-5
    )
    members = np.asarray(predict_members(x))
    np.testing.assert_allclose(
        crps_ensemble(jnp.asarray(members), jnp.asarray(y)),
        properscoring.crps_ensemble(y, members).mean(),
        rtol=1e-5,
    )


CASES = {
    "rmse": (predict_mean, rmse, lambda y: y, False),
    "auc": (predict_mean, roc_auc, lambda y: (y > 0.5).astype(np.float32), True),
    "csi": (predict_mean, csi, lambda y: y, True),
    "crps": (predict_members, crps_ensemble, lambda y: y, False),
    "custom_mae": (predict_mean, mean_abs_error, lambda y: y, False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_score_ranks_the_strong_feature_first(data, name):
    x, y = data
    predict, score, make_target, higher_is_better = CASES[name]
    ds = permutation_importance(
        predict,
        x,
        make_target(y),
        score,
        key=jax.random.key(0),
        n_repeats=2,
        multipass=False,
        higher_is_better=higher_is_better,
    )
    imp = ds.singlepass_importance.values
    assert list(ds.singlepass_rank.values) == [1, 2, 3]
    assert imp[0] > imp[1] > 0
    assert abs(imp[2]) <= 1e-6 * abs(float(ds.original_score))  # x2 is ignored by the model


def test_higher_is_better_flips_the_sign_of_importance(data):
    x, y = data
    label = (y > 0.5).astype(np.float32)
    kwargs = dict(key=jax.random.key(0), n_repeats=2, multipass=False)
    skill = permutation_importance(predict_mean, x, label, roc_auc, higher_is_better=True, **kwargs)
    as_error = permutation_importance(predict_mean, x, label, roc_auc, **kwargs)
    np.testing.assert_array_equal(skill.singlepass_score, as_error.singlepass_score)
    np.testing.assert_array_equal(skill.singlepass_importance, -as_error.singlepass_importance)
    assert float(skill.singlepass_score[0]) < float(skill.original_score)  # AUC drops


CLIMML_SCORES = {
    "rmse": (predict_mean, lambda p, t: metrics.rmse(p, t), lambda y: y, False),
    "roc_auc": (predict_mean, lambda p, t: metrics.roc_auc(p, t), lambda y: y > 0.5, True),
    "csi": (predict_mean, lambda p, t: metrics.csi(p, t, threshold=1.0), lambda y: y, True),
    "crps": (
        predict_members,
        lambda p, t: jnp.mean(metrics.crps_ensemble(p, t)),
        lambda y: y,
        False,
    ),
}


@pytest.mark.parametrize("name", list(CLIMML_SCORES))
def test_climml_metrics_plug_in_and_agree_with_the_local_scores(data, name):
    """climml.metrics kernels are jittable score functions with the same importances."""
    x, y = data
    predict, score, make_target, higher_is_better = CLIMML_SCORES[name]
    local = {"rmse": "rmse", "roc_auc": "auc", "csi": "csi", "crps": "crps"}[name]
    kwargs = dict(
        key=jax.random.key(0), n_repeats=2, multipass=False, higher_is_better=higher_is_better
    )
    ours = permutation_importance(predict, x, make_target(y), score, **kwargs)
    _, local_score, local_target, _ = CASES[local]
    reference = permutation_importance(predict, x, local_target(y), local_score, **kwargs)
    np.testing.assert_allclose(
        ours.singlepass_importance, reference.singlepass_importance, rtol=1e-4, atol=1e-6
    )
