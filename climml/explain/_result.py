"""Assemble the passes of a permutation-importance run into an ``xr.Dataset``.

Variables (``feature`` = the permuted features or groups, ``pass`` = 1, 2, ...,
``bound`` = lower/upper of a bootstrap interval, present when ``n_bootstrap > 0``):

- ``original_score`` (), ``original_score_ci`` (bound): score of the unpermuted inputs.
- ``singlepass_score`` / ``_std`` / ``_ci`` (feature): score with only that feature permuted,
  mean and std over the repeats, bootstrap interval.
- ``singlepass_importance`` (feature): loss of skill, ``score - original`` for errors and
  ``original - score`` for skills; positive = the model relies on the feature.
- ``singlepass_rank`` (feature): 1 = most important.
- ``multipass_rank`` (feature): pass at which the feature was frozen (NaN if never reached);
  ``multipass_score`` / ``_std`` / ``_ci`` / ``_importance``: score when it was frozen, i.e. with
  it and every feature ranked before it permuted.
- ``pass_score`` / ``pass_score_std`` (pass, feature): every candidate's score in every pass
  (NaN for features already frozen); ``selected`` (pass): the feature frozen by each pass.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import xarray as xr

METHOD = (
    "single-pass (Breiman 2001) and multi-pass (Lakshmanan et al. 2015; McGovern et al. 2019) "
    "permutation importance"
)


class PassRecord(NamedTuple):
    """What one pass measured: candidate indices, their scores and the one frozen."""

    candidates: list[int]
    scores: np.ndarray  # (C, n_repeats)
    boot: np.ndarray  # (C, n_bootstrap): bootstrap scores averaged over the repeats
    selected: int


def importance_dataset(
    names: list[str],
    records: list[PassRecord],
    *,
    original: float,
    original_boot: np.ndarray,
    higher_is_better: bool,
    ci_level: float,
    n_repeats: int,
    multipass: bool,
) -> xr.Dataset:
    """The result Dataset described in the module docstring."""
    n_passes, n_groups, n_boot = len(records), len(names), original_boot.shape[0]
    mean, std = np.full((n_passes, n_groups), np.nan), np.full((n_passes, n_groups), np.nan)
    boot = np.full((n_passes, n_groups, n_boot), np.nan)
    for p, rec in enumerate(records):
        mean[p, rec.candidates] = rec.scores.mean(axis=1)
        std[p, rec.candidates] = rec.scores.std(axis=1)  # ddof=0, as scikit-learn reports
        boot[p, rec.candidates] = rec.boot
    sign = -1.0 if higher_is_better else 1.0

    single = _ranked("singlepass", mean[0], std[0], boot[0], original, sign, ci_level)
    single["singlepass_rank"] = ("feature", _rank_by_importance(sign * (mean[0] - original)))
    data = {"original_score": ((), original), **single}
    if n_boot:
        data["original_score_ci"] = ("bound", _interval(original_boot, ci_level))
    if multipass:
        data.update(_multipass_vars(records, mean, std, boot, original, sign, ci_level))
        data["pass_score"] = (("pass", "feature"), mean)
        data["pass_score_std"] = (("pass", "feature"), std)
        data["selected"] = ("pass", np.array([names[r.selected] for r in records]))
    coords = {"feature": names, "pass": np.arange(1, n_passes + 1)}
    if n_boot:
        coords["bound"] = ["lower", "upper"]
    attrs = {
        "method": METHOD,
        "higher_is_better": int(higher_is_better),
        "n_repeats": n_repeats,
        "n_bootstrap": n_boot,
        "ci_level": ci_level,
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _ranked(prefix, mean, std, boot, original, sign, ci_level) -> dict:
    """Score, std, importance and (with bootstrap) interval variables over ``feature``."""
    out = {
        f"{prefix}_score": ("feature", mean),
        f"{prefix}_score_std": ("feature", std),
        f"{prefix}_importance": ("feature", sign * (mean - original)),
    }
    if boot.shape[-1]:
        out[f"{prefix}_score_ci"] = (("feature", "bound"), _interval(boot, ci_level))
    return out


def _multipass_vars(records, mean, std, boot, original, sign, ci_level) -> dict:
    """Each feature's multi-pass rank and its scores in the pass that froze it."""
    at_freeze = np.full(mean.shape[1], -1)
    for p, rec in enumerate(records):
        at_freeze[rec.selected] = p
    rank = np.where(at_freeze >= 0, at_freeze + 1.0, np.nan)
    picked = [_at_freeze(table, at_freeze) for table in (mean, std, boot)]
    out = _ranked("multipass", *picked, original, sign, ci_level)
    out["multipass_rank"] = ("feature", rank)
    return out


def _at_freeze(table: np.ndarray, at_freeze: np.ndarray) -> np.ndarray:
    """``table[at_freeze[g], g]`` for each feature ``g`` (NaN where ``at_freeze`` is -1)."""
    picked = table[at_freeze, np.arange(table.shape[1])]
    reached = (at_freeze >= 0).reshape((-1,) + (1,) * (picked.ndim - 1))
    return np.where(reached, picked, np.nan)


def _rank_by_importance(importance: np.ndarray) -> np.ndarray:
    """1-based ranks, largest importance first; ties keep feature order, NaN ranks last."""
    order = np.argsort(-np.nan_to_num(importance, nan=-np.inf), kind="stable")
    rank = np.empty(importance.shape[0], int)
    rank[order] = np.arange(1, importance.shape[0] + 1)
    return rank


def _interval(samples: np.ndarray, ci_level: float) -> np.ndarray:
    """Percentile interval ``(..., 2)`` over the last axis of bootstrap ``samples``."""
    tail = (1.0 - ci_level) / 2.0
    return np.moveaxis(np.quantile(samples, [tail, 1.0 - tail], axis=-1), 0, -1)
