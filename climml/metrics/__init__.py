"""Forecast verification: pure jnp kernels (jit/vmap friendly) plus xarray wrappers.

Two layers
----------
* Kernels (this namespace) take jnp/numpy arrays with ``axis=`` (the axes reduced) and
  ``weights=`` (non-negative, broadcast with numpy rules against the data).
* ``climml.metrics.xr`` wraps them for xarray: ``dim=``, ``weights=``, ``skipna=``; the
  coordinates of the kept dimensions are preserved.

Scores are formed from additive sufficient statistics, ratio last: ``error_sums``,
``comoments``, ``contingency``, ``confusion_matrix``, ``roc_histogram``, ``fss_sums``,
``rank_histogram``, ``spread_skill`` and ``nowcast_statistics`` (every nowcast score at
once, ``climml.metrics.nowcast``) return NamedTuples (or a matrix) that ``+`` merges across
batches, dask chunks or devices; the score is a method of the merged statistics
(``(a + b).rmse()``, ``table.csi()``).
``merge`` combines K statistics stacked along a leading axis (e.g. ``lax.all_gather`` of
them inside ``shard_map``) pairwise.

Data arguments are positional-only and options keyword-only:
``rmse(forecast, observed, /, *, axis=None, weights=None)``, ``csi(f, o, threshold=1.0)``.

Accuracy: sums are blocked (pairwise) and second moments centred, so float32 scores match a
float64 computation to ~1e-5 relative or better for data of any offset (280 K, 5e4 m²/s²) and
up to ~1e8 points; float64 inputs (``jax_enable_x64``) are scored in float64.

Area weighting and aggregation (WeatherBench 2's conventions)
-------------------------------------------------------------
Gridded scores are weighted by latitude: ``climml.metrics.xr`` wrappers default to
``weights="cell_area"`` (exact spherical band areas; ``"cos"`` and ``"none"`` on request, see
``xr.latitude_weights``), and ``climml.tasks`` follow ``eval.area_weighting``. Over time, ACC
is computed per time over the grid and then averaged; RMSE is the square root of the time mean
of the spatially weighted MSE (``sqrt(mean_t Σ w e² / Σ w)``). The xarray wrappers refuse
forecast and observation coordinates that differ (``align="exact"``; ``"inner"`` opts in to
the intersection).

Input checks
------------
``forecast`` and ``observed`` (``x``/``y``, ``scores``/``labels``) must have the same number
of axes; size-1 axes broadcast, an extra (ensemble member) axis is a ``DataError`` instead of
being pooled. On concrete inputs (not traced under ``jit``/``vmap``, where values are
unknown) ``roc_auc`` and ``brier_score`` check that labels are 0/1 or boolean and
``brier_score`` that probabilities lie in [0, 1]; a violation is a ``DataError`` naming the
argument.

Conventions
-----------
* Event: ``x >= threshold`` (``op=">="``), or ``op`` in ``">"``, ``"<="``, ``"<"``.
* Many thresholds at once: a 1-D ``threshold`` adds a leading axis to the result (vmap).

NaN policy (the one place it is written down)
---------------------------------------------
1. NaN in the forecast or in the observation masks that point: it gets weight 0 in every
   statistic (mask-as-weights inside jit, never boolean indexing). A NaN weight masks too.
2. NaN ensemble members are omitted per point: the CRPS of a point uses its valid members
   only (and the fair CRPS needs at least two of them). Rank histograms and spread/skill
   need every member (M sets their bins and correction): a NaN member masks the point.
3. A score with no valid points (or a zero denominator, e.g. CSI with no events forecast or
   observed) is NaN, never an exception. Per-point scores (``crps_ensemble``,
   ``crps_gaussian``) are NaN at masked points; reductions then skip them.
4. Labels outside ``[0, num_classes)`` are missing in ``confusion_matrix``/``iou``.
5. Spectra (``radial_psd``) need complete fields: a field containing NaN gives a NaN spectrum
   (``nowcast_statistics`` leaves such fields out of its mean spectrum). A pooling window
   (``pool``) holding a NaN cell is NaN.
   In ``fss`` NaN cells count as non-events inside the windows and are left out of the sums.
6. ``bootstrap`` percentiles skip resamples whose metric is NaN (e.g. AUC with one class).
"""

from climml.metrics import xr
from climml.metrics._masking import merge, weighted_mean
from climml.metrics.bootstrap import bootstrap, resample_indices
from climml.metrics.categorical import (
    Contingency,
    accuracy,
    contingency,
    csi,
    ets,
    f1_score,
    far,
    frequency_bias,
    hss,
    pod,
    pofd,
    precision,
    recall,
)
from climml.metrics.continuous import (
    Comoments,
    ErrorSums,
    acc,
    bias,
    comoments,
    correlation,
    error_sums,
    latitude_weights,
    mae,
    mse,
    rmse,
)
from climml.metrics.ensemble import RankHistogram, SpreadSkill, rank_histogram, spread_skill
from climml.metrics.multiclass import confusion_matrix, iou, iou_from_confusion, mean_iou
from climml.metrics.nowcast import NowcastStats, nowcast_scores, nowcast_statistics, nowcast_table
from climml.metrics.pooling import pool
from climml.metrics.probabilistic import brier_score, crps_ensemble, crps_gaussian, pooled_crps
from climml.metrics.roc import RocHistogram, roc_auc, roc_curve, roc_histogram
from climml.metrics.spatial import FssSums, fss, fss_sums
from climml.metrics.spectral import radial_psd

__all__ = [
    "Comoments",
    "Contingency",
    "ErrorSums",
    "FssSums",
    "NowcastStats",
    "RankHistogram",
    "RocHistogram",
    "SpreadSkill",
    "acc",
    "accuracy",
    "bias",
    "bootstrap",
    "brier_score",
    "comoments",
    "confusion_matrix",
    "contingency",
    "correlation",
    "crps_ensemble",
    "crps_gaussian",
    "csi",
    "error_sums",
    "ets",
    "f1_score",
    "far",
    "frequency_bias",
    "fss",
    "fss_sums",
    "hss",
    "iou",
    "iou_from_confusion",
    "latitude_weights",
    "mae",
    "mean_iou",
    "merge",
    "mse",
    "nowcast_scores",
    "nowcast_statistics",
    "nowcast_table",
    "pod",
    "pofd",
    "pool",
    "pooled_crps",
    "precision",
    "radial_psd",
    "rank_histogram",
    "recall",
    "resample_indices",
    "rmse",
    "roc_auc",
    "roc_curve",
    "roc_histogram",
    "spread_skill",
    "weighted_mean",
    "xr",
]
