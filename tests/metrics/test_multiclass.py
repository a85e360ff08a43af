"""Confusion matrix and IoU against scikit-learn, with ignored labels and accumulation."""

import jax
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import jaccard_score

import climml.metrics as cm
from climml.errors import ConfigError


@pytest.fixture
def labels():
    rng = np.random.default_rng(1)
    true = rng.integers(0, 4, size=(8, 16))
    pred = np.where(rng.random(true.shape) < 0.6, true, rng.integers(0, 4, size=true.shape))
    return pred, true


def test_confusion_matrix_matches_sklearn(labels):
    pred, true = labels
    got = cm.confusion_matrix(pred, true, num_classes=4)
    np.testing.assert_array_equal(got, sk_confusion(true.ravel(), pred.ravel(), labels=range(4)))
    w = np.random.default_rng(2).random(true.shape)
    np.testing.assert_allclose(
        cm.confusion_matrix(pred, true, num_classes=4, weights=w),
        sk_confusion(true.ravel(), pred.ravel(), labels=range(4), sample_weight=w.ravel()),
        rtol=1e-5,
    )


def test_iou_matches_sklearn_jaccard(labels):
    pred, true = labels
    want = jaccard_score(true.ravel(), pred.ravel(), average=None, labels=range(4))
    np.testing.assert_allclose(cm.iou(pred, true, num_classes=4), want, rtol=1e-6)
    np.testing.assert_allclose(cm.mean_iou(pred, true, num_classes=4), want.mean(), rtol=1e-6)


def test_out_of_range_and_nan_labels_are_ignored(labels):
    pred, true = labels
    masked_true = true.astype(np.float32)
    masked_true[0] = 255  # segmentation "ignore" label
    masked_true[1, :3] = np.nan
    keep = (masked_true < 4) & ~np.isnan(masked_true)
    want = sk_confusion(true[keep], pred[keep], labels=range(4))
    np.testing.assert_array_equal(cm.confusion_matrix(pred, masked_true, num_classes=4), want)


def test_absent_class_iou_is_nan_and_skipped_by_mean():
    pred = np.array([0, 1, 1, 0])
    true = np.array([0, 1, 0, 0])
    per_class = np.asarray(cm.iou(pred, true, num_classes=3))
    assert np.isnan(per_class[2])
    np.testing.assert_allclose(per_class[:2], [2 / 3, 1 / 2])
    np.testing.assert_allclose(
        cm.mean_iou(pred, true, num_classes=3), (2 / 3 + 1 / 2) / 2, rtol=1e-6
    )


def test_batches_add_up_and_jit_vmap_agree(labels):
    pred, true = labels
    total = sum(cm.confusion_matrix(pred[i], true[i], num_classes=4) for i in range(len(true)))
    np.testing.assert_array_equal(total, cm.confusion_matrix(pred, true, num_classes=4))
    per_row = jax.vmap(lambda p, t: cm.confusion_matrix(p, t, num_classes=4))(pred, true)
    np.testing.assert_array_equal(per_row.sum(0), total)
    jitted = jax.jit(cm.iou, static_argnames="num_classes")
    np.testing.assert_allclose(
        jitted(pred, true, num_classes=4), cm.iou(pred, true, num_classes=4), rtol=1e-6
    )


def test_num_classes_must_be_positive_int(labels):
    pred, true = labels
    with pytest.raises(ConfigError, match="num_classes"):
        cm.confusion_matrix(pred, true, num_classes=0)
