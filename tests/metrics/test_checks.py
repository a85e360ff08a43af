"""Bad inputs give one-line DataErrors naming the argument instead of silent wrong scores."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import climml.metrics as cm
from climml.errors import DataError


@pytest.fixture
def binary():
    rng = np.random.default_rng(0)
    labels = rng.random(200) < 0.4
    probs = np.clip(0.5 * labels + 0.5 * rng.random(200), 0, 1).astype(np.float32)
    return probs, labels


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_roc_auc_with_swapped_arguments_is_an_error_not_nan(binary):
    probs, labels = binary
    with pytest.raises(DataError, match="^labels: expected 0/1 or boolean") as error:
        cm.roc_auc(labels.astype(np.float32), probs)  # probabilities in the labels slot
    assert "found" in one_line(error)
    with pytest.raises(DataError, match="^labels"):
        cm.roc_auc(labels, probs, bins=10)
    with pytest.raises(DataError, match="^labels"):
        cm.roc_curve(labels, probs)
    # The right order, with NaN labels as missing, still scores.
    y = labels.astype(np.float32)
    y[:5] = np.nan
    want = roc_auc_score(labels[5:], probs[5:])
    np.testing.assert_allclose(cm.roc_auc(probs, y), want, rtol=1e-6)


def test_brier_rejects_non_binary_outcomes_and_percent_probabilities(binary):
    probs, labels = binary
    with pytest.raises(DataError, match="^observed: expected 0/1") as error:
        cm.brier_score(probs, 2 * labels.astype(np.float32))  # outcomes in {0, 2}
    one_line(error)
    with pytest.raises(DataError, match=r"^probability: expected probabilities in \[0, 1\]") as e:
        cm.brier_score(100 * probs, labels)  # percent
    assert "percent" in one_line(e)
    with pytest.raises(DataError, match="^probability"):
        cm.brier_score(probs - 0.5, labels)
    y = labels.astype(np.float32)
    y[0] = np.nan  # missing outcome: allowed, masks the point
    want = np.mean((probs[1:].astype(np.float64) - labels[1:]) ** 2)
    np.testing.assert_allclose(cm.brier_score(probs, y), want, rtol=1e-6)


def test_value_checks_are_skipped_under_jit(binary):
    # Values are unknown while tracing: jit compiles and scores good inputs as eager does.
    probs, labels = binary
    jitted = jax.jit(cm.brier_score)
    np.testing.assert_allclose(jitted(probs, labels), cm.brier_score(probs, labels), rtol=1e-6)
    auc = jax.jit(cm.roc_auc)(jnp.asarray(probs), jnp.asarray(labels))
    np.testing.assert_allclose(auc, roc_auc_score(labels, probs), rtol=1e-6)


@pytest.mark.parametrize("score", [cm.rmse, cm.mae, cm.bias, cm.mse, cm.correlation, cm.acc])
def test_ensemble_against_observations_is_not_pooled_silently(score):
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(10, 4)).astype(np.float32)
    members = (obs + rng.normal(size=(5, 10, 4))).astype(np.float32)  # (member, time, point)
    with pytest.raises(DataError, match=r"^forecast\.shape: .*crps_ensemble") as error:
        score(members, obs)
    one_line(error)
    # The documented way: score the ensemble mean (or use crps_ensemble).
    assert np.isfinite(score(members.mean(0), obs))


def test_other_pairs_need_the_same_number_of_axes():
    with pytest.raises(DataError, match=r"^forecast\.shape"):
        cm.csi(np.ones((3, 4)), np.ones(4), threshold=1.0)
    with pytest.raises(DataError, match=r"^probability\.shape"):
        cm.brier_score(np.full((3, 4), 0.5), np.ones(4))
    with pytest.raises(DataError, match=r"^scores\.shape"):
        cm.roc_auc(np.ones((3, 4)), np.ones(4))
    with pytest.raises(DataError, match=r"^forecast\.shape"):
        cm.fss(np.ones((2, 4, 4)), np.ones((4, 4)), threshold=1.0, window=3)
    # Size-1 axes still broadcast, e.g. a climatological forecast against every year.
    clim = np.zeros((1, 4), np.float32)
    obs = np.random.default_rng(2).normal(size=(6, 4)).astype(np.float32)
    np.testing.assert_allclose(cm.rmse(clim, obs), np.sqrt(np.mean(obs.astype(float) ** 2)))


PUBLIC_KERNELS = [
    cm.rmse,
    cm.mse,
    cm.mae,
    cm.bias,
    cm.correlation,
    cm.acc,
    cm.error_sums,
    cm.comoments,
    cm.brier_score,
    cm.crps_ensemble,
    cm.pooled_crps,
    cm.contingency,
    cm.csi,
    cm.accuracy,
    cm.roc_auc,
    cm.roc_histogram,
    cm.roc_curve,
    cm.fss,
    cm.fss_sums,
    cm.confusion_matrix,
    cm.iou,
    cm.mean_iou,
    cm.weighted_mean,
    cm.radial_psd,
]


@pytest.mark.parametrize("kernel", PUBLIC_KERNELS, ids=lambda k: k.__name__)
def test_data_positional_only_options_keyword_only(kernel):
    kinds = {p.name: p.kind for p in inspect.signature(kernel).parameters.values()}
    data = [n for n, k in kinds.items() if k == inspect.Parameter.POSITIONAL_ONLY]
    assert data, kernel.__name__
    assert all(
        k in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.KEYWORD_ONLY)
        for k in kinds.values()
    ), kinds
    with pytest.raises(TypeError):
        cm.rmse(np.ones(3), np.ones(3), 0)  # axis passed positionally
