"""Single- and multi-pass permutation importance (Breiman 2001; Lakshmanan et al. 2015;
McGovern et al. 2019, BAMS 100, 2175), with every candidate of a pass scored in one ``jax.vmap``.

Single pass: each feature (or group of features) is permuted across samples alone, the others
intact; its importance is the loss of skill relative to the unpermuted score. Correlated
predictors hide each other here: permuting one leaves its copy to carry the information.

Multi pass: the feature whose permutation hurts most is frozen in its permuted state; the
remaining ones are permuted in turn on top of it, and so on until all are ranked or
``max_passes`` is reached. A feature whose information is duplicated rises in this ranking as
soon as its duplicate has been frozen.

Randomness (so that a plain loop can reproduce every number)::

    perm_key, boot_key = jax.random.split(key)
    pass_key = jax.random.fold_in(perm_key, p)              # p = 0, 1, ... (pass 0 = single pass)
    repeat r: jax.random.permutation(jax.random.split(pass_key, n_repeats)[r], n_samples)
    bootstrap: jax.random.randint(boot_key, (n_bootstrap, n_samples), 0, n_samples)

Within a pass and repeat, one permutation of the samples is applied to every permuted feature
(the frozen ones and the candidate), as in the PermutationImportance package.

A trained Flax NNX model becomes a ``predict_fn`` through its functional form::

    graphdef, state = nnx.split(model)  # after model.eval()
    ds = permutation_importance(lambda x: nnx.merge(graphdef, state)(x), x, y, rmse,
                                key=jax.random.key(0), feature_names=["sst", "ohc", "u850"])
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from climml.errors import ConfigError, DataError, expected
from climml.explain._passes import (
    PredictFn,
    ScoreFn,
    build_original_fn,
    build_pass_fn,
    build_python_fns,
)
from climml.explain._result import PassRecord, importance_dataset

# Accelerator memory for the candidate evaluations of a pass held at once (see _auto_chunk).
MEMORY_BUDGET_BYTES = 1 << 30

Groups = Mapping[str, Sequence[int]] | Sequence[Sequence[int]]


def permutation_importance(
    predict_fn: PredictFn,
    inputs: jax.Array | np.ndarray,
    targets: jax.Array | np.ndarray,
    score_fn: ScoreFn,
    *,
    key: jax.Array,
    feature_axis: int = -1,
    groups: Groups | None = None,
    feature_names: Sequence[str] | None = None,
    n_repeats: int = 5,
    multipass: bool = True,
    max_passes: int | None = None,
    higher_is_better: bool = False,
    n_bootstrap: int = 0,
    ci_level: float = 0.95,
    chunk_size: int | None = None,
) -> xr.Dataset:
    """Rank the features of ``inputs`` by how much permuting them degrades ``score_fn``.

    Args:
        predict_fn: ``(N, *sample_shape) -> (N, ...)`` predictions of a trained model. A
            jittable one has every candidate of a pass scored in one compiled program; any
            other callable (NumPy, scikit-learn's ``model.predict``) is detected when tracing
            it fails, with a ``RuntimeWarning``, and called once per candidate on NumPy arrays.
        inputs: ``(N, *sample_shape)``, samples on axis 0. A table is ``(N, F)``; a gridded
            input ``(N, lat, lon, C)`` (each channel's whole field is permuted across samples);
            a sequence ``(N, T, F)`` with ``feature_axis=1`` ranks time lags.
        targets: ``(N, ...)``, whatever ``score_fn`` compares the predictions with.
        score_fn: ``(pred, target) -> scalar`` (RMSE, AUC, CSI, CRPS, ...), jittable or not.
        key: PRNG key; the module docstring gives how it is split.
        feature_axis: axis of ``inputs`` holding the features (not 0, the sample axis).
        groups: features permuted together, as ``{name: [indices]}`` or ``[[indices], ...]``
            along ``feature_axis``; default each feature alone.
        feature_names: names of the ``F`` entries along ``feature_axis`` (default ``feature_i``).
        n_repeats: permutations per candidate and pass; the result holds their mean and std.
        multipass: also run the multi-pass ranking after the single pass.
        max_passes: stop the multi-pass ranking after this many passes (default: all).
        higher_is_better: the score is a skill (AUC, CSI); else an error (RMSE, CRPS).
        n_bootstrap: resamples (with replacement) of the samples for confidence intervals of
            each score; 0 skips them. The same resamples serve every candidate (paired).
        ci_level: coverage of the percentile bootstrap intervals.
        chunk_size: candidate evaluations in flight (see ``climml.explain._passes``); default
            one at a time on CPU, else as many as ``MEMORY_BUDGET_BYTES`` holds.

    Returns:
        ``xr.Dataset`` over ``feature`` and ``pass`` (see ``climml.explain._result``): the
        original score, single-pass and multi-pass scores, stds, importances (loss of skill,
        positive = important), ranks (1 = most important), per-pass score table, and
        bootstrap intervals when ``n_bootstrap > 0``.
    """
    x, y = jnp.asarray(inputs), jnp.asarray(targets)
    axis = _feature_axis(feature_axis, x.ndim)
    _check_samples(x, y)
    _check_counts(
        n_repeats=n_repeats, n_bootstrap=n_bootstrap, ci_level=ci_level, chunk_size=chunk_size
    )
    names, masks = _group_masks(groups, feature_names, x.shape[axis])
    n_passes = _n_passes(multipass, max_passes, len(names))
    traceable = _check_score(predict_fn, score_fn, x, y)

    perm_key, boot_key = jax.random.split(key)
    n = x.shape[0]
    boot_idx = jax.random.randint(boot_key, (n_bootstrap, n), 0, n) if n_bootstrap else None
    if traceable:
        chunk = chunk_size or _auto_chunk(predict_fn, x, jax.default_backend())
        run_pass = build_pass_fn(
            predict_fn, score_fn, feature_axis=axis, n_repeats=n_repeats, chunk_size=chunk
        )
        original_fn = build_original_fn(predict_fn, score_fn)
    else:
        chunk = 1  # one candidate per Python call, frozen ones skipped
        original_fn, run_pass = build_python_fns(
            predict_fn, score_fn, feature_axis=axis, n_repeats=n_repeats
        )
    original, original_boot = original_fn(x, y, boot_idx)
    sign = -1.0 if higher_is_better else 1.0

    records, frozen, remaining = [], np.zeros(masks.shape[1], bool), list(range(len(names)))
    for p in range(n_passes):
        slots, active, rows = _pass_slots(masks, frozen, remaining, sequential=chunk == 1)
        scores, boot = run_pass(x, y, slots, active, jax.random.fold_in(perm_key, p), boot_idx)
        scores, boot = np.asarray(scores)[rows], np.asarray(boot)[rows]
        best = remaining[_most_degrading(scores.mean(axis=1), float(original), sign)]
        records.append(PassRecord(list(remaining), scores, boot, best))
        frozen |= masks[best]
        remaining.remove(best)

    return importance_dataset(
        names,
        records,
        original=float(original),
        original_boot=np.asarray(original_boot),
        higher_is_better=higher_is_better,
        ci_level=ci_level,
        n_repeats=n_repeats,
        multipass=multipass,
    )


def _most_degrading(mean_scores: np.ndarray, original: float, sign: float) -> int:
    """Index of the candidate with the largest loss of skill (NaN scores never win)."""
    importance = sign * (mean_scores - original)
    return int(np.argmax(np.where(np.isnan(importance), -np.inf, importance)))


def _pass_slots(
    masks: np.ndarray, frozen: np.ndarray, remaining: list[int], *, sequential: bool
) -> tuple[jax.Array, jax.Array, list[int]]:
    """Candidate masks of a pass, which of them to evaluate, and the rows holding ``remaining``.

    A sequential pass keeps one slot per group (frozen ones inactive, skipped), so every pass
    reuses one compilation. A vectorized pass evaluates every slot, so it gets only the
    remaining candidates, padded (with copies of the first) to a multiple of ``ceil(G / 4)``:
    compiling each of the G sizes would cost more than the padded evaluations.
    """
    n_groups, count = masks.shape[0], len(remaining)
    if sequential:
        active = np.isin(np.arange(n_groups), remaining)
        return jnp.asarray(frozen | masks), jnp.asarray(active), remaining
    step = math.ceil(n_groups / 4)
    padded = remaining + remaining[:1] * (step * math.ceil(count / step) - count)
    return jnp.asarray(frozen | masks[padded]), jnp.ones(len(padded), bool), list(range(count))


def _auto_chunk(predict_fn: PredictFn, x: jax.Array, backend: str) -> int:
    """Candidate evaluations in flight by default.

    CPU: one at a time (see ``climml.explain._passes``: cache-resident activations beat a wide
    vmap). Accelerators: as many as the memory budget holds, each evaluation counted as a
    permuted copy of ``x``, first-layer activations of the same size, and the predictions.
    """
    if backend == "cpu":
        return 1
    pred = jax.eval_shape(predict_fn, x)
    per_evaluation = 2 * x.nbytes + math.prod(pred.shape) * pred.dtype.itemsize
    return max(1, MEMORY_BUDGET_BYTES // per_evaluation)


def _feature_axis(feature_axis: int, ndim: int) -> int:
    """``feature_axis`` as a non-negative axis; the sample axis 0 is not a feature axis."""
    if ndim < 2:
        raise DataError(expected("inputs", "(N, ...) with a feature axis", f"{ndim}-d array"))
    axis = feature_axis + ndim if feature_axis < 0 else feature_axis
    if not 0 < axis < ndim:
        want = f"an axis in 1..{ndim - 1} (or -{ndim - 1}..-1); 0 holds the samples"
        raise ConfigError(expected("feature_axis", want, feature_axis))
    return axis


def _check_samples(x: jax.Array, y: jax.Array) -> None:
    if x.shape[0] < 2:
        raise DataError(expected("inputs", "at least 2 samples to permute", x.shape[0]))
    if y.ndim == 0 or y.shape[0] != x.shape[0]:
        want = f"{x.shape[0]} samples on axis 0, as inputs"
        raise DataError(expected("targets", want, f"shape {y.shape}"))


def _check_counts(
    *, n_repeats: int, n_bootstrap: int, ci_level: float, chunk_size: int | None
) -> None:
    if not isinstance(n_repeats, int) or n_repeats < 1:
        raise ConfigError(expected("n_repeats", "an integer >= 1", n_repeats))
    if not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise ConfigError(expected("n_bootstrap", "an integer >= 0", n_bootstrap))
    if not 0.0 < ci_level < 1.0:
        raise ConfigError(expected("ci_level", "a coverage in (0, 1)", ci_level))
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ConfigError(expected("chunk_size", "None or an integer >= 1", chunk_size))


# What JAX raises when a function needs concrete values (NumPy, float(), if on data) in a trace.
TRACE_ERRORS = (
    jax.errors.TracerArrayConversionError,
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerIntegerConversionError,
)


def _check_score(predict_fn: PredictFn, score_fn: ScoreFn, x: jax.Array, y: jax.Array) -> bool:
    """Whether ``score_fn(predict_fn(x), y)`` can be traced (then it must give a scalar; checked
    by shape only, nothing runs). If tracing needs concrete values, warn: the candidates are then
    scored one Python call at a time on NumPy arrays."""
    try:
        score = jax.eval_shape(lambda a, b: score_fn(predict_fn(a), b), x, y)
    except TRACE_ERRORS as err:
        warnings.warn(
            "permutation_importance: predict_fn / score_fn cannot be traced by JAX "
            f"({type(err).__name__}); calling them once per candidate on NumPy arrays instead "
            "(slower; pass a jittable function to score all candidates in one compiled program)",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    if score.shape != ():
        raise ConfigError(expected("score_fn", "a scalar score", f"shape {score.shape}"))
    return True


def _n_passes(multipass: bool, max_passes: int | None, n_groups: int) -> int:
    if not multipass:
        return 1
    if max_passes is None:
        return n_groups
    if not isinstance(max_passes, int) or max_passes < 1:
        raise ConfigError(expected("max_passes", "None or an integer >= 1", max_passes))
    return min(max_passes, n_groups)


def _group_masks(
    groups: Groups | None, feature_names: Sequence[str] | None, n_features: int
) -> tuple[list[str], np.ndarray]:
    """Names and boolean masks ``(G, n_features)`` of the feature groups to permute."""
    if feature_names is None:
        feature_names = [f"feature_{i}" for i in range(n_features)]
    elif len(feature_names) != n_features:
        want = f"{n_features} names (the length of the feature axis)"
        raise ConfigError(expected("feature_names", want, len(feature_names)))
    if groups is None:
        return [str(n) for n in feature_names], np.eye(n_features, dtype=bool)
    members = list(groups.values()) if isinstance(groups, Mapping) else list(groups)
    if not members:
        raise ConfigError(expected("groups", "at least one group", "none"))
    fields = (
        [f"groups[{k!r}]" for k in groups]
        if isinstance(groups, Mapping)
        else [f"groups[{g}]" for g in range(len(members))]
    )
    indices = [_group_indices(f, m, n_features) for f, m in zip(fields, members, strict=True)]
    if isinstance(groups, Mapping):
        names = [str(k) for k in groups]
    else:  # unnamed groups are named after their features: "u+v"
        names = ["+".join(str(feature_names[i]) for i in idx) for idx in indices]
    if len(set(names)) != len(names):
        raise ConfigError(expected("groups", "unique group names", names))
    masks = np.zeros((len(indices), n_features), bool)
    for g, idx in enumerate(indices):
        masks[g, idx] = True
    return names, masks


def _group_indices(field: str, indices: Sequence[int], n_features: int) -> list[int]:
    """Validated, non-negative feature indices of one group."""
    indices = list(indices)
    valid = all(isinstance(i, (int, np.integer)) and -n_features <= i < n_features for i in indices)
    if not indices or not valid:
        want = f"a non-empty list of feature indices in [0, {n_features})"
        raise ConfigError(expected(field, want, indices))
    return [int(i) % n_features for i in indices]
