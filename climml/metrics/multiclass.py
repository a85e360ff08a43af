"""Multi-class verification: confusion matrix and per-class intersection over union (IoU).

The confusion matrix is the additive statistic (matrices of two batches add); IoU is formed
from it last. Labels outside ``[0, num_classes)`` and NaN labels are treated as missing, which
is also how segmentation "ignore" labels (e.g. 255) are handled.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from climml.errors import ConfigError, expected
from climml.metrics._masking import as_float, check_broadcast, ratio


def confusion_matrix(
    pred: ArrayLike, true: ArrayLike, /, *, num_classes: int, weights: ArrayLike | None = None
) -> Array:
    """Counts of (true class, predicted class) pairs over all elements.

    Args:
      pred, true: integer (or float, NaN = missing) class labels, broadcastable, any shape.
      num_classes: number of classes K (a Python int: it fixes the output shape).
      weights: non-negative weights broadcastable against the labels (None: counts).

    Returns:
      ``(K, K)`` matrix ``C[i, j]`` = weight of elements with true class i predicted as j
      (the scikit-learn convention: rows are true classes). int32 counts without weights.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(expected("num_classes", "a positive int", num_classes))
    shape = check_broadcast(pred=pred, true=true, weights=weights)
    pred, true = (jnp.broadcast_to(jnp.asarray(a), shape).reshape(-1) for a in (pred, true))
    valid = _in_range(pred, num_classes) & _in_range(true, num_classes)
    index = jnp.where(valid, true.astype(jnp.int32) * num_classes + pred.astype(jnp.int32), 0)
    if weights is None:
        w = valid.astype(jnp.int32)
    else:
        w = jnp.broadcast_to(jnp.asarray(weights), shape).reshape(-1)
        w = jnp.where(valid, w, 0)
    counts = jnp.zeros(num_classes * num_classes, w.dtype).at[index].add(w)
    return counts.reshape(num_classes, num_classes)


def _in_range(labels: Array, num_classes: int) -> Array:
    """True where a label is a valid class index (not NaN, within [0, K))."""
    if jnp.issubdtype(labels.dtype, jnp.floating):
        return ~jnp.isnan(labels) & (labels >= 0) & (labels < num_classes)
    return (labels >= 0) & (labels < num_classes)


def iou_from_confusion(matrix: ArrayLike, /) -> Array:
    """Per-class IoU ``TP / (TP + FP + FN)`` from a ``(K, K)`` confusion matrix.

    NaN for a class that appears neither in the truth nor in the prediction.
    """
    (matrix,) = as_float(matrix)
    hits = jnp.diagonal(matrix)
    union = jnp.sum(matrix, axis=0) + jnp.sum(matrix, axis=1) - hits
    return ratio(hits, union)


def iou(pred: ArrayLike, true: ArrayLike, /, *, num_classes: int, weights=None) -> Array:
    """Per-class intersection over union, shape ``(K,)`` (see ``confusion_matrix``)."""
    return iou_from_confusion(
        confusion_matrix(pred, true, num_classes=num_classes, weights=weights)
    )


def mean_iou(pred: ArrayLike, true: ArrayLike, /, *, num_classes: int, weights=None) -> Array:
    """Mean of the per-class IoU over the classes present in truth or prediction."""
    return jnp.nanmean(iou(pred, true, num_classes=num_classes, weights=weights))
