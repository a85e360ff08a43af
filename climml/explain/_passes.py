"""One pass of permutation importance: all candidates scored in one compiled program.

A pass scores a stack of candidate masks ``(S, F)``. Candidate ``s`` is the input with every
feature marked in ``masks[s]`` taken from another sample (``x[perm]``), all other features left
intact. The same permutation is shared by all candidates of a repeat: their scores are then
paired (common random numbers), so the differences between candidates, which decide the
ranking, carry less permutation noise than the scores themselves.

How the candidates are batched is set by ``chunk_size`` (candidate evaluations in flight):

- ``chunk_size >= S * n_repeats``: one ``jax.vmap`` over repeats and candidates (accelerators);
- ``1 < chunk_size < S * n_repeats``: repeats one after the other, candidates ``chunk_size`` at
  a time (``lax.map``), bounding the permuted copies of ``x`` held in memory;
- ``chunk_size == 1``: a ``lax.scan`` over the candidates in which inactive ones (features frozen
  by earlier passes) are skipped by ``lax.cond``, so every pass reuses one compilation with no
  wasted evaluation. On CPU this is the fastest form: a single candidate's activations stay in
  cache, where one vmap over all candidates ran several times slower (figures in
  benchmarks/RESULTS.md).

A ``predict_fn`` that JAX cannot trace (NumPy, scikit-learn) gets ``build_python_fns``: the same
permutations and outputs, one Python call per candidate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from climml.errors import ConfigError, expected

PredictFn = Callable[[jax.Array], jax.Array]
ScoreFn = Callable[[jax.Array, jax.Array], jax.Array]
PassFn = Callable[..., tuple[jax.Array, jax.Array]]


def _permuted(x: jax.Array, x_shuffled: jax.Array, mask: jax.Array, axis: int) -> jax.Array:
    """``x`` with the features where ``mask`` (F,) is true taken from ``x_shuffled``."""
    shape = [1] * x.ndim
    shape[axis] = mask.shape[0]
    return jnp.where(mask.reshape(shape), x_shuffled, x)


def _score_and_bootstrap(score_fn: ScoreFn, pred: jax.Array, y: jax.Array, boot_idx: Any):
    """The score on all samples and on each bootstrap resample ``boot_idx`` (B, N) → (), (B,)."""
    score = score_fn(pred, y)
    if boot_idx is None:
        return score, jnp.zeros((0,), score.dtype)
    # Sequential over resamples: B gathered copies of the predictions would not fit at once.
    boot = jax.lax.map(lambda idx: score_fn(pred[idx], y[idx]), boot_idx)
    return score, boot


def _nan_like(shape: jax.ShapeDtypeStruct) -> jax.Array:
    return jnp.full(shape.shape, jnp.nan, shape.dtype)


# The builders are not cached: a ``predict_fn`` closes over a model's parameters, so a cache
# keyed on it would keep every model it has seen alive (and a fresh closure never hits it).
# One permutation-importance call compiles its passes once and reuses them for every pass.
def build_original_fn(predict_fn: PredictFn, score_fn: ScoreFn) -> Callable:
    """Jitted ``(x, y, boot_idx) -> (score (), boot_scores (B,))`` of the unpermuted inputs."""

    @jax.jit
    def original(x, y, boot_idx):
        return _score_and_bootstrap(score_fn, predict_fn(x), y, boot_idx)

    return original


def build_pass_fn(
    predict_fn: PredictFn,
    score_fn: ScoreFn,
    *,
    feature_axis: int,
    n_repeats: int,
    chunk_size: int,
) -> PassFn:
    """Jitted ``(x, y, masks (S, F), active (S,), key, boot_idx) -> (scores (S, R), boot (S, B))``.

    ``key`` is split into ``n_repeats`` keys, one permutation of the samples each; ``boot`` is
    each candidate's bootstrap score averaged over the repeats. ``active`` is honoured (inactive
    rows are NaN) only by the sequential ``chunk_size == 1`` form; the vectorized forms evaluate
    every row, the caller discards padding.
    """

    def one_repeat(x, y, masks, active, perm, boot_idx):
        x_shuffled = jnp.take(x, perm, axis=0)  # computed once, shared by every candidate

        def candidate(mask):
            pred = predict_fn(_permuted(x, x_shuffled, mask, feature_axis))
            return _score_and_bootstrap(score_fn, pred, y, boot_idx)

        if chunk_size == 1:
            skipped = jax.tree.map(_nan_like, jax.eval_shape(candidate, masks[0]))

            def if_active(mask_and_flag):
                mask, flag = mask_and_flag
                return jax.lax.cond(flag, candidate, lambda _: skipped, mask)

            return jax.lax.map(if_active, (masks, active))
        if chunk_size >= masks.shape[0]:
            return jax.vmap(candidate)(masks)
        return jax.lax.map(candidate, masks, batch_size=chunk_size)

    @jax.jit
    def run_pass(x, y, masks, active, key, boot_idx):
        n = x.shape[0]
        perms = jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(key, n_repeats))
        repeat = lambda perm: one_repeat(x, y, masks, active, perm, boot_idx)  # noqa: E731
        if chunk_size >= masks.shape[0] * n_repeats:
            scores, boot = jax.vmap(repeat)(perms)  # (R, S), (R, S, B)
        else:
            scores, boot = jax.lax.map(repeat, perms)
        return scores.T, boot.mean(axis=0)

    return run_pass


def build_python_fns(
    predict_fn: Callable, score_fn: Callable, *, feature_axis: int, n_repeats: int
) -> tuple[Callable, PassFn]:
    """The original-score and pass functions for a ``predict_fn`` that JAX cannot trace.

    Same signatures, permutations and outputs as ``build_original_fn`` / ``build_pass_fn`` with
    ``chunk_size == 1`` (inactive rows NaN), but each candidate is one Python call of
    ``predict_fn`` on a NumPy array, e.g. a scikit-learn model's ``predict``.
    """

    def scored(x, y, boot_idx):
        pred = predict_fn(x)
        score = np.asarray(score_fn(pred, y), np.float64)
        if score.ndim:
            raise ConfigError(expected("score_fn", "a scalar score", f"shape {score.shape}"))
        if boot_idx is None:
            return score, np.zeros(0)
        pred = np.asarray(pred)
        return score, np.array([float(score_fn(pred[idx], y[idx])) for idx in boot_idx])

    def original(x, y, boot_idx):
        return scored(np.asarray(x), np.asarray(y), _host(boot_idx))

    def run_pass(x, y, masks, active, key, boot_idx):
        x, y, masks, active, boot_idx = map(_host, (x, y, masks, active, boot_idx))
        n, n_boot = x.shape[0], 0 if boot_idx is None else boot_idx.shape[0]
        keys = jax.random.split(key, n_repeats)
        perms = np.asarray(jax.vmap(lambda k: jax.random.permutation(k, n))(keys))
        scores = np.full((masks.shape[0], n_repeats), np.nan)
        boot = np.full((masks.shape[0], n_repeats, n_boot), np.nan)
        shape = [1] * x.ndim
        shape[feature_axis] = masks.shape[1]
        for r, perm in enumerate(perms):
            x_shuffled = x[perm]
            for s in np.flatnonzero(active):
                candidate = np.where(masks[s].reshape(shape), x_shuffled, x)
                scores[s, r], boot[s, r] = scored(candidate, y, boot_idx)
        return scores, boot.mean(axis=1)

    return original, run_pass


def _host(value: Any) -> Any:
    return None if value is None else np.asarray(value)
