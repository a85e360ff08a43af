"""ROC curve and area under it (AUC): exact with ties, or binned for streaming.

Exact AUC is the Mann-Whitney statistic: the probability that a random positive scores above
a random negative, ties counting one half, which equals scikit-learn's trapezoidal
``roc_auc_score``. Per point it needs one sort of the scores (O(n log n)); the kernel is
written for one point and vmapped over all others, never looped.

Why the sort is packed: XLA's CPU sort is fast only for a single integer operand (with
several operands it calls a comparator per comparison, several times slower; figures in
benchmarks/RESULTS.md). So, without sample weights, each score becomes an order-preserving
integer key, one bit that all of a point's keys share is cut out (losslessly: a shared bit
never decides a comparison) and the label takes the lowest bit. One single-operand sort then
gives the rank sum of the positives, and run lengths in the sorted keys give the ties between
classes. Scores of both signs are split into their >= 0 and < 0 halves, each of which shares
the sign bit (two sorts). With sample weights a three-operand sort carries them along.

Binned mode (``roc_histogram``) counts positives and negatives per score bin; histograms add
across batches and the AUC is formed last, treating scores in the same bin as ties.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax
from jax.typing import ArrayLike

from climml.errors import ConfigError, expected
from climml.metrics._masking import (
    Axis,
    as_float,
    check_labels,
    check_pair,
    move_to_end,
    ratio,
    sum_together,
)

SCAN_MIN_POINTS = 32


def roc_auc(
    scores: ArrayLike,
    labels: ArrayLike,
    /,
    *,
    axis: Axis = None,
    weights: ArrayLike | None = None,
    bins: int | ArrayLike | None = None,
) -> Array:
    """Area under the ROC curve over the samples along ``axis``, one value per other index.

    Args:
      scores: classifier scores or probabilities, any shape; higher means "more positive".
      labels: 0/1 or boolean outcomes (NaN = missing) with as many axes as ``scores``
        (size-1 axes broadcast).
      axis: sample axes (None: all, one AUC). The remaining axes are points (vmapped).
      weights: non-negative sample weights broadcastable with ``scores``.
      bins: None for the exact AUC; an int B for B equal bins on [0, 1] (probabilities) or
        a 1-D array of increasing bin edges for the binned (streaming) AUC.

    Returns:
      AUC in [0, 1] with the sample axes removed; NaN where only one class is present.
      NaN scores or labels (and NaN weights) mask their sample.

    Raises:
      DataError: for concrete ``labels`` (not traced under ``jit``) other than 0/1, e.g.
        probabilities passed as labels (arguments swapped).
    """
    if bins is not None:
        return roc_histogram(scores, labels, bins=bins, axis=axis, weights=weights).auc()
    s, positive, w = _flatten_samples(scores, labels, axis, weights)
    if w is None:
        return _exact_auc(s, positive)
    n = s.shape[-1]
    flat = (a.reshape(-1, n) for a in (s, positive, w))
    return _weighted_aucs(*flat).reshape(s.shape[:-1])


def _flatten_samples(scores, labels, axis, weights):
    """Broadcast the inputs and move the sample axes last: ``(*points, n)`` each.

    Masked samples (NaN label or NaN weight) are marked by a NaN score, which every AUC path
    treats as "leave out". Returns ``(scores, positive, weights_or_None)``.
    """
    shape = check_pair("scores", scores, "labels", labels, weights)
    check_labels("labels", labels)
    scores, labels = as_float(scores, labels)
    scores = jnp.where(jnp.isnan(labels), jnp.nan, jnp.broadcast_to(scores, shape))
    positive = jnp.broadcast_to(labels != 0, shape)
    w = None
    if weights is not None:
        w = jnp.broadcast_to(jnp.asarray(weights).astype(scores.dtype), shape)
        scores = jnp.where(jnp.isnan(w), jnp.nan, scores)
        w = move_to_end(jnp.where(jnp.isnan(w), 0, w), axis)
    return move_to_end(scores, axis), move_to_end(positive, axis), w


def ordered_key(x: Array) -> Array:
    """Map floats to unsigned ints whose order is the numeric order (-0.0 == 0.0).

    float64 (under ``jax_enable_x64``) maps to uint64, anything narrower to float32 and
    uint32. Positive floats get the sign bit set; negative floats have all bits flipped.
    Done on the bits, not with float comparisons, so subnormals keep their order even where
    the CPU flushes them to zero in arithmetic.
    """
    wide = x.dtype == jnp.float64
    x = x if wide else x.astype(jnp.float32)
    bits = lax.bitcast_convert_type(x, jnp.uint64 if wide else jnp.uint32)
    sign = _top_bit(bits.dtype)
    bits = jnp.where(bits == sign, jnp.zeros((), bits.dtype), bits)  # -0.0 is +0.0
    return jnp.where((bits & sign) != 0, ~bits, bits | sign)


def _top_bit(dtype) -> np.ndarray:
    """The sign bit of an unsigned key dtype, e.g. 0x80000000 for uint32."""
    return np.array(1 << (np.dtype(dtype).itemsize * 8 - 1), dtype)


def _all_ones(dtype) -> np.ndarray:
    """The largest key: the sentinel that sorts masked samples last."""
    return np.array(np.iinfo(dtype).max, dtype)


@jax.jit  # eager calls then compile once, not once per primitive
def _exact_auc(s: Array, positive: Array) -> Array:
    """Exact unweighted AUC for ``(..., n)`` scores; NaN scores are masked samples."""
    points, n = s.shape[:-1], s.shape[-1]
    s, positive = s.reshape(-1, n), positive.reshape(-1, n)
    valid = ~jnp.isnan(s)
    key = ordered_key(jnp.where(valid, s, 0))
    # Bits that differ between some valid keys of a point; any other bit may be dropped.
    ones = _all_ones(key.dtype)
    any_set = lax.reduce(jnp.where(valid, key, 0), np.zeros((), key.dtype), lax.bitwise_or, (1,))
    all_set = lax.reduce(jnp.where(valid, key, ones), ones, lax.bitwise_and, (1,))
    varying = any_set ^ all_set
    # Ties are counted by a scan when there are enough points to fill its vector lanes.
    scan = key.shape[0] >= SCAN_MIN_POINTS
    shared_bit = jax.vmap(functools.partial(_auc_shared_bit, scan=scan))
    by_sign = jax.vmap(functools.partial(_auc_by_sign, scan=scan))
    auc = lax.cond(
        jnp.all(varying != ones),
        lambda: shared_bit(key, positive, valid, varying),
        lambda: by_sign(key, positive, valid),
    )
    return auc.reshape(points)


def _auc_shared_bit(key, positive, valid, varying, scan: bool) -> Array:
    """AUC of one point whose valid keys share a bit (e.g. the sign bit of probabilities)."""
    bit = key.dtype.itemsize * 8 - 1 - lax.clz(~varying)  # the highest shared bit
    return _auc_from(*_packed_mann_whitney(key, positive, valid, bit, scan))


def _auc_by_sign(key: Array, positive: Array, valid: Array, scan: bool) -> Array:
    """AUC of one point with scores of both signs: each sign half shares its sign bit.

    A positive scoring >= 0 beats every negative scoring < 0 and loses to none scoring < 0
    the other way round, so U = U(>= 0 half) + U(< 0 half) + P(>= 0) N(< 0).
    """
    sign = _top_bit(key.dtype)
    bit = key.dtype.itemsize * 8 - 1
    nonnegative = key >= sign
    u_hi, pos_hi, neg_hi = _packed_mann_whitney(key, positive, valid & nonnegative, bit, scan)
    u_lo, pos_lo, neg_lo = _packed_mann_whitney(key, positive, valid & ~nonnegative, bit, scan)
    return _auc_from(u_hi + u_lo + 2 * pos_hi * neg_lo, pos_hi + pos_lo, neg_hi + neg_lo)


def _packed_mann_whitney(
    key: Array, positive: Array, valid: Array, bit: Array | int, scan: bool
) -> tuple[Array, Array, Array]:
    """``(2U, n_pos, n_neg)`` over the ``valid`` samples, whose keys all share ``bit``.

    The shared bit is cut out and the label appended as the lowest bit, so one sort of the
    packed keys orders samples by value with negatives first inside tie groups: the k-th
    positive, at sorted index i_k, has ``i_k - k`` negatives at or below its value. Ties
    between classes must count one half, so the number T of tied (positive, negative) pairs
    is subtracted once: ``2U = 2 Σ (i_k - k) - T``. The sums are exact in int32 while
    n (n - 1) < 2**31. Beyond that each positive's two counts (each < n, exact in int32)
    are summed as floats with blocked sums: a float total of the indices ``Σ i_k`` minus
    ``n_pos (n_pos - 1) / 2`` would cancel, and int32 totals would overflow. ``scan`` picks
    how T is counted in the int32 case.
    """
    n = key.shape[0]
    bit = jnp.asarray(bit, key.dtype)
    one, ones = np.ones((), key.dtype), _all_ones(key.dtype)
    low = key & ((one << bit) - 1)
    high = lax.shift_right_logical(key, bit + 1) << bit  # a shift by the width gives 0
    packed = ((high | low) << 1) | positive.astype(key.dtype)
    small = n <= 46340
    total = jnp.int32 if small else (jnp.float64 if key.dtype == jnp.uint64 else jnp.float32)
    n_pos, n_valid = sum_together(
        [(positive & valid).astype(jnp.int32), valid.astype(jnp.int32)], None
    )
    n_pos, n_neg = n_pos.astype(total), (n_valid - n_pos).astype(total)
    # Masked samples get the all-ones key and sort last; no valid packed key is all ones
    # (the top float keys are NaN patterns), so the key alone tells them apart.
    ordered = lax.sort(jnp.where(valid, packed, ones))
    is_pos = ((ordered & 1) == 1) & (ordered != ones)
    index = jnp.arange(n, dtype=jnp.int32)
    if small:
        at_or_below = jnp.sum(jnp.where(is_pos, index, 0)) - n_pos * (n_pos - 1) // 2
        tied = (_tied_pairs_scan if scan else _tied_pairs)(ordered, is_pos)
        return 2 * at_or_below - tied, n_pos, n_neg
    below = jnp.where(is_pos, index - (jnp.cumsum(is_pos, dtype=jnp.int32) - 1), 0)
    at_or_below, tied = sum_together(
        [below.astype(total), _tied_counts(ordered, is_pos).astype(total)], None
    )
    return 2 * at_or_below - tied, n_pos, n_neg


def _tied_pairs(ordered: Array, is_pos: Array) -> Array:
    """Number of (positive, negative) pairs with equal scores in a sorted packed array."""
    return jnp.sum(_tied_counts(ordered, is_pos))


def _tied_counts(ordered: Array, is_pos: Array) -> Array:
    """Per sorted sample: the negatives tied with it if it is a positive, else 0.

    A tie group of value v holds a run of negatives (key 2v) right before a run of positives
    (key 2v + 1). Every positive adds the length of the negative run in front of its own run.
    Run starts come from a running max of the indices where the key changes.
    """
    index = jnp.arange(ordered.shape[0], dtype=jnp.int32)
    starts = jnp.concatenate([jnp.array([True]), ordered[1:] != ordered[:-1]])
    run_start = lax.cummax(jnp.where(starts, index, 0))  # start of each run of equal keys
    before = jnp.maximum(run_start - 1, 0)  # last element before the run
    tied = (run_start > 0) & (ordered[before] == ordered - 1)  # a negative of the same value
    negatives = run_start - run_start[before]
    return jnp.where(is_pos & tied, negatives, 0)


def _tied_pairs_scan(ordered: Array, is_pos: Array) -> Array:
    """``_tied_pairs`` as one pass that carries run lengths: sequential per point, but under
    vmap every step updates all points at once, which beats the running max by ~4x."""

    def step(carry, item):
        prev, run, neg_run, tied = carry
        key, positive = item
        new_run = key != prev
        # Entering the positives of a value whose negatives just ended: remember their count.
        neg_run = jnp.where(new_run, jnp.where(key == prev + 1, run, 0), neg_run)
        run = jnp.where(new_run, 1, run + 1)
        return (key, run, neg_run, tied + jnp.where(positive, neg_run, 0)), None

    zero = jnp.zeros((), jnp.int32)
    # The first key differs from `prev` (its complement) and opens a run; the run before it
    # has length 0, so it inherits no negatives.
    start = (~ordered[0], zero, zero, zero)
    return lax.scan(step, start, (ordered, is_pos))[0][3]


def _auc_from(twice_u: Array, n_pos: Array, n_neg: Array) -> Array:
    """AUC = U / (n_pos n_neg), in floating point; NaN when a class is absent."""
    twice_u, n_pos, n_neg = as_float(twice_u, n_pos, n_neg)
    return ratio(twice_u / 2, n_pos * n_neg)


def _weighted_auc(s: Array, positive: Array, w: Array) -> Array:
    """Exact AUC of one point with sample weights (one sort carrying labels and weights)."""
    valid = ~jnp.isnan(s) & (w > 0)
    key = ordered_key(jnp.where(valid, s, 0))
    key = jnp.where(valid, key, _all_ones(key.dtype))
    # Sort by (key, label) so that negatives precede positives inside each tie group.
    label = positive.astype(jnp.uint32)
    key, label, w = lax.sort((key, label, jnp.where(valid, w, 0)), num_keys=2)
    w_pos = jnp.where(label == 1, w, 0)
    w_neg = jnp.where(label == 0, w, 0)
    return _mann_whitney(key, w_pos, w_neg)


_weighted_aucs = jax.jit(jax.vmap(_weighted_auc))


def _mann_whitney(value: Array, w_pos: Array, w_neg: Array) -> Array:
    """AUC from samples sorted by value, negatives first within ties.

    For a positive at sorted position i, the negative weight before it is the weight of all
    negatives below its value plus all tied negatives; the weight before its tie group is
    the negatives strictly below. Their mean counts ties one half:
    ``U = Σ_pos w_i (neg_before_i + neg_before_group_i) / 2``.
    """
    neg_before = jnp.cumsum(w_neg) - w_neg
    starts_group = jnp.concatenate([jnp.array([True]), value[1:] != value[:-1]])
    # neg_before is non-decreasing, so a running max of its group-start values gives, at
    # every position, the value at the start of the current group.
    neg_before_group = lax.cummax(jnp.where(starts_group, neg_before, 0))
    twice_u, pos, neg = sum_together([w_pos * (neg_before + neg_before_group), w_pos, w_neg], None)
    return ratio(twice_u / 2, pos * neg)


class RocHistogram(NamedTuple):
    """Positive and negative samples per score bin, ``(..., B)``; ``+`` adds.

    int32 counts without sample weights (exact to 2**31 per bin; float32 counts would stop
    growing at 2**24), summed weights (float) with them.
    """

    positives: Array
    negatives: Array
    edges: Array  # (B + 1,) bin edges, shared by all points

    def __add__(self, other: RocHistogram) -> RocHistogram:
        positives = self.positives + other.positives
        return RocHistogram(positives, self.negatives + other.negatives, self.edges)

    def auc(self) -> Array:
        """Mann-Whitney AUC with samples in the same bin counted as ties."""
        positives, negatives = as_float(self.positives, self.negatives)
        neg_below = jnp.cumsum(negatives, axis=-1) - negatives
        u = jnp.sum(positives * (neg_below + negatives / 2), axis=-1)
        total = jnp.sum(positives, axis=-1) * jnp.sum(negatives, axis=-1)
        return ratio(u, total)

    def curve(self) -> tuple[Array, Array, Array]:
        """``(fpr, tpr, thresholds)`` for the events ``score >= edge`` at every lower edge.

        Thresholds decrease from the last bin's lower edge to the first (rates increase);
        a leading ``+inf`` threshold gives the (0, 0) point.
        """
        positives, negatives = as_float(self.positives, self.negatives)
        tp = jnp.cumsum(positives[..., ::-1], axis=-1)
        fp = jnp.cumsum(negatives[..., ::-1], axis=-1)
        zero = jnp.zeros(tp.shape[:-1] + (1,), tp.dtype)
        tpr = ratio(jnp.concatenate([zero, tp], -1), tp[..., -1:])
        fpr = ratio(jnp.concatenate([zero, fp], -1), fp[..., -1:])
        top = jnp.array([jnp.inf], self.edges.dtype)
        thresholds = jnp.concatenate([top, self.edges[:-1][::-1]])
        return fpr, tpr, thresholds


def roc_histogram(
    scores: ArrayLike,
    labels: ArrayLike,
    /,
    *,
    bins: int | ArrayLike,
    axis: Axis = None,
    weights: ArrayLike | None = None,
) -> RocHistogram:
    """Bin the samples along ``axis`` by score, separately for positives and negatives.

    Args:
      scores, labels, axis, weights: as in ``roc_auc``.
      bins: an int B (B equal bins on [0, 1], for probabilities) or 1-D increasing edges.
        Scores below the first or above the last edge go to the first or last bin.

    Returns:
      ``RocHistogram`` with ``(points..., B)`` counts per class (int32), or summed
      weights (float) when ``weights`` are given.
    """
    edges = _edges(bins)
    n_bins = edges.shape[0] - 1
    s, positive, w = _flatten_samples(scores, labels, axis, weights)
    points = s.shape[:-1]
    if isinstance(bins, int):  # equal bins: arithmetic instead of a binary search
        index = jnp.floor(jnp.where(jnp.isnan(s), 0, s) * n_bins).astype(jnp.int32)
    else:
        index = jnp.searchsorted(edges, s, side="right").astype(jnp.int32) - 1
    index = jnp.clip(index, 0, n_bins - 1)
    counted = jnp.int32 if w is None else s.dtype
    w = jnp.where(jnp.isnan(s), 0, 1 if w is None else w).astype(counted)
    # One scatter-add fills both histograms of every point: slot = (point, bin, label).
    n_points = math.prod(points)
    point = jnp.arange(n_points, dtype=jnp.int32).reshape(*points, 1)
    slot = (point * n_bins + index) * 2 + positive.astype(jnp.int32)
    counts = jnp.zeros(n_points * n_bins * 2, counted).at[slot.reshape(-1)].add(w.reshape(-1))
    counts = counts.reshape(*points, n_bins, 2)
    return RocHistogram(counts[..., 1], counts[..., 0], edges)


def _edges(bins: int | ArrayLike) -> Array:
    """Bin edges from an int (equal bins on [0, 1]) or an increasing 1-D array."""
    if isinstance(bins, int):
        if bins < 1:
            raise ConfigError(expected("bins", "a positive int or 1-D edges", bins))
        return jnp.linspace(0.0, 1.0, bins + 1)
    (edges,) = as_float(bins)
    if edges.ndim != 1 or edges.shape[0] < 2:
        want = "1-D edges with at least 2 values"
        raise ConfigError(expected("bins", want, f"shape {edges.shape}"))
    return edges


def roc_curve(
    scores: ArrayLike,
    labels: ArrayLike,
    /,
    *,
    weights: ArrayLike | None = None,
    thresholds: ArrayLike | None = None,
) -> tuple[Array, Array, Array]:
    """ROC curve ``(fpr, tpr, thresholds)`` over all samples, the event being ``score >= t``.

    With ``thresholds=None`` the curve has one point per distinct score, in decreasing
    order, after a leading ``(0, 0)`` point at threshold ``+inf``: scikit-learn's
    ``roc_curve(..., drop_intermediate=False)``. Its length depends on the data, so this mode
    runs eagerly (not under jit). Give ``thresholds`` (1-D, any order) for a fixed-size,
    jittable curve evaluated at those thresholds.
    """
    s, positive, w = _flatten_samples(scores, labels, None, weights)
    w = jnp.where(jnp.isnan(s), 0, jnp.ones_like(s) if w is None else w)
    w_pos, w_neg = jnp.where(positive, w, 0), jnp.where(positive, 0, w)
    if thresholds is not None:
        (t,) = as_float(thresholds)
        above = s[None, :] >= t[:, None]
        tp = jnp.sum(jnp.where(above, w_pos, 0), axis=-1)
        fp = jnp.sum(jnp.where(above, w_neg, 0), axis=-1)
        return ratio(fp, jnp.sum(w_neg)), ratio(tp, jnp.sum(w_pos)), t
    missing = jnp.isnan(s)
    order = jnp.lexsort((-jnp.where(missing, 0, s), missing))  # decreasing, NaN last
    s, w_pos, w_neg = s[order], w_pos[order], w_neg[order]
    keep = np.flatnonzero(np.asarray(jnp.append(s[1:] != s[:-1], True) & ~jnp.isnan(s)))
    tp = jnp.concatenate([jnp.zeros(1, s.dtype), jnp.cumsum(w_pos)[keep]])
    fp = jnp.concatenate([jnp.zeros(1, s.dtype), jnp.cumsum(w_neg)[keep]])
    t = jnp.concatenate([jnp.array([jnp.inf], s.dtype), s[keep]])
    return ratio(fp, fp[-1]), ratio(tp, tp[-1]), t
