"""Regression evaluation: forecasts at each lead scored against baselines in physical units.

Writes ``predictions.zarr`` (dims ``time`` = initialization time, ``lead``, target dims; one
variable per predictor plus ``observed``, in the target's physical units) and
``skill_by_lead.png``; returns ``{"<predictor>": {"<metric>": {"<lead>": value}}}`` for the
``eval.metrics`` entries (see :mod:`climml.tasks.metric_specs`).

Verification as WeatherBench 2 does it. Gridded targets are weighted by latitude
(``eval.area_weighting``, default ``cell_area``); at each lead:

* RMSE: ``sqrt`` of the mean over forecast times of the spatially weighted MSE; MAE and bias:
  the mean over times of the spatially weighted means.
* ACC: the spatially weighted (uncentred) anomaly correlation per time, then the mean over
  times; for a point target (one value per time) the correlation of the anomalies over times.
* correlation: Pearson correlation pooled over times and grid points (area-weighted).
* categorical scores and AUC: one area-weighted contingency table / ROC over all times and
  points; FSS: pooled over times (neighbourhoods in grid cells, not weighted).

Continuous scores use anomalies (the normalizer's mean, or monthly climatology, removed), which
is what the anomaly correlation needs and leaves RMSE/MAE unchanged; thresholded scores use the
physical values, so thresholds are in the target's units. Times with no valid point are left
out of the time means.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from climml import metrics as cm_metrics
from climml.config import Config
from climml.data import cluster
from climml.errors import ConfigError
from climml.experiment import Experiment, Predictor
from climml.metrics.categorical import COMPARISONS
from climml.models.linear import Climatology, check_baseline, make_baseline
from climml.tasks import metric_specs
from climml.tasks._collect import collect
from climml.tasks.metric_specs import CATEGORICAL, MetricSpec, Score, threshold_key

_SEGMENTATION = "a segmentation score; for thresholded events use csi, pod, far or auc"
SUPPORTED: dict[str, str | None] = {
    **dict.fromkeys(("rmse", "mae", "bias", "correlation", "acc"), None),
    **dict.fromkeys(CATEGORICAL, None),
    "auc": None,
    "fss": None,
    "bootstrap": None,
    "brier": "it needs probability forecasts; task 'segmentation' scores class probabilities",
    "crps": "it needs ensemble members: set train.ensemble_members > 1",
    **dict.fromkeys(
        ("iou", "mean_iou", "precision", "recall", "accuracy", "confusion_matrix"), _SEGMENTATION
    ),
}


def check(cfg: Config) -> None:
    """Reject unknown or inapplicable metrics and unknown baselines before any training."""
    supported = dict(SUPPORTED)
    if cfg.train.ensemble_members > 1:
        supported["crps"] = None  # an ensemble forecasts members
    metric_specs.check(cfg, supported, thresholds=(*CATEGORICAL, "auc"))
    for name in cfg.eval.baselines:
        check_baseline(name, cfg.data.input_steps)


def check_data(cfg: Config, raw: xr.Dataset) -> None:
    """Checks that need the data: a latitude to weight by, a 2-D grid for FSS."""
    target = raw[cfg.data.target]
    metric_specs.grid_weights(cfg, target)
    space = [d for d in target.dims if d != "time"]
    for spec in metric_specs.parse(cfg.eval.metrics):
        if spec.name == "fss" and len(space) != 2:
            raise ConfigError(
                f"{spec.path}.fss: needs a target on a 2-D grid; data.target"
                f" {cfg.data.target!r} has dims {space}"
            )


def evaluate(exp: Experiment, model: Predictor, workdir: Path) -> dict:
    """Score ``model`` and the configured baselines on ``exp.cfg.eval.split``; out of core
    (forecasts streamed to ``predictions.zarr``, scores reduced from it chunk by chunk) when
    ``eval.out_of_core`` selects it (``climml.tasks.out_of_core``)."""
    from climml.tasks import out_of_core

    rank_counts = None
    if out_of_core.enabled(exp):
        predictors = [model] + [fit_baseline(exp, name) for name in exp.cfg.eval.baselines]
        _, scores, rank_counts = out_of_core.forecast_and_score(exp, predictors, workdir)
    else:
        ds, scores = forecast_and_score(exp, model)
        if exp.cfg.output.save_predictions:
            ds.to_zarr(workdir / "predictions.zarr", mode="w")
        if exp.cfg.output.plots and "member" in ds.dims:
            rank_counts = cm_metrics.rank_histogram(
                ds["model"].values, ds["observed"].values, ensemble_axis=1
            ).counts
    if exp.cfg.output.plots:
        _plot(exp, scores, rank_counts, workdir)
    return scores


def _plot(exp: Experiment, scores: dict, rank_counts, workdir: Path) -> None:
    """``skill_by_lead.png``, and for an ensemble ``rank_histogram.png`` from the model's
    ``(M + 1,)`` rank counts over every lead and point (None: no ensemble)."""
    from climml.viz.plots import plot_rank_counts, plot_skill_by_lead
    from climml.viz.style import time_step_unit

    plot_skill_by_lead(
        _common_scores(scores),
        lead_unit=time_step_unit(exp.time),
        units=exp.raw[exp.cfg.data.target].attrs.get("units"),
        path=workdir / "skill_by_lead.png",
    )
    if rank_counts is not None:
        path = workdir / "rank_histogram.png"
        plot_rank_counts(rank_counts, name="model (all leads)", path=path)


def _common_scores(scores: dict) -> dict:
    """The scores every predictor has, one number per lead (what ``plot_skill_by_lead`` draws;
    an ensemble's spread and rank histograms are the model's alone)."""
    names = set.intersection(*(set(by_metric) for by_metric in scores.values()))
    return {
        p: {m: v for m, v in by_metric.items() if m in names and m != "rank_histogram"}
        for p, by_metric in scores.items()
    }


def forecast_and_score(exp: Experiment, model: Predictor) -> tuple[xr.Dataset, dict]:
    """Forecasts of ``model`` and the baselines on the eval split, and their scores by lead.

    Returns the predictions dataset (physical units, one variable per predictor plus
    ``observed``) and ``{predictor: {metric: {lead: value}}}``.

    An ensemble ``model`` (one with ``predict_members``, e.g. ``climml.train.ensemble.
    EnsembleModel``) is written with a ``member`` dimension; the scores of ``eval.metrics`` are
    those of its ensemble mean, and ``ensemble_scores`` adds CRPS, spread, spread/skill and the
    rank histogram per lead. The baselines then get a CRPS too: that of a one-member ensemble
    (their MAE), so that ``model_beats`` compares them.
    """
    cfg = exp.cfg
    predictors = [model] + [fit_baseline(exp, name) for name in cfg.eval.baselines]
    functions = {p.name: p.predict for p in predictors}
    predict_members = getattr(model, "predict_members", None)
    if predict_members is not None:
        functions[model.name] = predict_members  # (B, M, L, *grid)
    outputs = collect(exp.loader(cfg.eval.split), functions)
    members = outputs[model.name] if predict_members is not None else None
    if members is not None:
        outputs[model.name] = members.mean(axis=1)  # the ensemble mean is scored as the model
    target = cfg.data.target
    observed = np.where(outputs["valid"] > 0, outputs["observed"], np.nan)
    arrays = {p.name: outputs[p.name] for p in predictors} | {"observed": observed}
    if members is not None:
        arrays[model.name] = members
    ds = to_dataset(exp, arrays, outputs["anchor"])
    specs = metric_specs.parse(cfg.eval.metrics)
    weights = metric_specs.grid_weights(cfg, exp.raw[target])
    scores = lead_scores(specs, observed.ndim - 2, weights)
    scorer = metric_specs.Scorer(scores, specs, cfg.seed)  # compiled once for all predictors
    obs_anom = exp.normalizer.invert(observed, target, add_mean=False)
    scores = {}
    for p in predictors:
        anomalies = exp.normalizer.invert(outputs[p.name], target, add_mean=False)
        values = ds[p.name].mean("member") if "member" in ds[p.name].dims else ds[p.name]
        arrays = {
            "anomalies": (anomalies, obs_anom),
            "values": (values.values, ds["observed"].values),
        }
        scores[p.name] = score_by_lead(scorer, arrays, cfg.data.leads)
    if members is not None:
        fair = next((s.params.fair for s in specs if s.name == "crps"), False)
        for p in predictors:
            ens = members if p is model else outputs[p.name][:, None]  # a baseline: 1 member
            ens = exp.normalizer.invert(ens, target, add_mean=False)
            scores[p.name] |= ensemble_scores(
                ens, obs_anom, cfg.data.leads, weights, fair=fair, calibration=p is model
            )
    return ds, scores


def fit_baseline(exp: Experiment, name: str) -> Predictor:
    """The baseline ``name`` fitted on the training split. The climatology is one reduction of
    the training data (per-season sums, ratio last) on ``data.dask``'s scheduler, out of core;
    persistence and AR(p) fit on the loader's windows (an AR fit needs the input history)."""
    cfg = exp.cfg
    baseline = make_baseline(name, exp.spec, cfg.data.leads, time=exp.time)
    if isinstance(baseline, Climatology):
        target = exp.dataset[cfg.data.target]
        with cluster.compute_on(cfg.data.dask, nbytes=target.nbytes):
            return baseline.fit_dataset(target, exp.anchors["train"])
    return baseline.fit(exp.loader("train").epoch(0))


def ensemble_scores(
    members: np.ndarray,
    observed: np.ndarray,
    leads: Sequence[int],
    weights: np.ndarray | None,
    *,
    fair: bool = False,
    calibration: bool = True,
) -> dict[str, dict[str, object]]:
    """``{metric: {lead: value}}`` of an ensemble ``(N, M, L, *grid)`` against ``observed``
    ``(N, L, *grid)`` (NaN = missing), in the data's units:

    * ``crps``: ensemble CRPS (``fair``: Ferro's estimator) per point, area-weighted mean over
      the grid per time, then the mean over times (as MAE, which it equals for one member);
    * with ``calibration`` (M >= 2): ``spread`` (with the (M + 1) / M finite-ensemble factor)
      and ``spread_skill`` (spread / RMSE of the ensemble mean, ~1 when calibrated), pooled
      over times and area-weighted points; ``rank_histogram``: the M + 1 relative frequencies
      of the observation's rank among the members (flat when calibrated).
    """
    space = tuple(range(1, observed.ndim - 1))  # grid axes of (N, *grid)
    w = None if weights is None else jnp.asarray(weights)
    out: dict[str, dict[str, object]] = {}
    for i, lead in enumerate(leads):
        ens, obs = jnp.asarray(members[:, :, i]), jnp.asarray(observed[:, i])
        crps = cm_metrics.crps_ensemble(ens, obs, ensemble_axis=1, fair=fair)
        per_time = cm_metrics.weighted_mean(crps, axis=space, weights=w) if space else crps
        out.setdefault("crps", {})[str(lead)] = float(jnp.nanmean(per_time))
        if not calibration:
            continue
        sums = cm_metrics.spread_skill(ens, obs, ensemble_axis=1, weights=w)
        out.setdefault("spread", {})[str(lead)] = float(sums.spread())
        out.setdefault("spread_skill", {})[str(lead)] = float(sums.ratio())
        ranks = cm_metrics.rank_histogram(ens, obs, ensemble_axis=1, weights=w).frequencies()
        out.setdefault("rank_histogram", {})[str(lead)] = np.asarray(ranks).tolist()
    return out


def predict(exp: Experiment, model: Predictor, split: str) -> xr.Dataset:
    """The model's forecasts for ``split`` in physical units (no scoring); an ensemble's with a
    ``member`` dimension."""
    outputs = collect(
        exp.loader(split), {model.name: getattr(model, "predict_members", model.predict)}
    )
    return to_dataset(exp, {model.name: outputs[model.name]}, outputs["anchor"])


def score_by_lead(
    scorer: metric_specs.Scorer,
    arrays: dict[str, tuple[np.ndarray, np.ndarray]],
    leads: Sequence[int],
) -> dict[str, dict[str, float]]:
    """``{metric: {lead: value}}`` of the ``lead_scores`` in ``scorer`` at each lead.

    ``arrays`` holds ``(forecast, observed)`` pairs of shape ``(N, L, *grid)`` (NaN = missing):
    ``"anomalies"`` for the continuous scores, ``"values"`` (physical) for thresholded ones.
    """
    out: dict[str, dict[str, float]] = {}
    for i, lead in enumerate(leads):
        at_lead = {kind: tuple(a[:, i] for a in pair) for kind, pair in arrays.items()}
        for metric, values in scorer(at_lead).items():
            out.setdefault(metric, {})[str(lead)] = values[""]
    return out


def lead_scores(
    specs: Sequence[MetricSpec], ndim_space: int, weights: np.ndarray | None
) -> list[Score]:
    """The ``Score`` of each spec at a lead: pure functions of ``(forecast, observed)`` arrays
    ``(N, *grid)``, vectors with one value per metric key (inner keys ``""``: the lead).

    ``weights`` broadcast against ``grid`` (None: equal)."""
    lead = ""
    space = tuple(range(1, 1 + ndim_space))  # the grid axes of (N, *grid)
    w = None if weights is None else jnp.asarray(weights)
    scores = []
    for spec in specs:
        name, p = spec.name, spec.params
        if name in ("rmse", "mae", "bias"):
            fn = _time_mean_error(name, space, w)
            scores.append(Score([(name, lead)], fn, "anomalies"))
        elif name == "acc":
            scores.append(Score([(name, lead)], _acc(space, w, p.centered), "anomalies"))
        elif name == "correlation":

            def correlation(f, o):
                return cm_metrics.correlation(f, o, weights=w)[None]

            scores.append(Score([(name, lead)], correlation, "anomalies"))
        elif name in CATEGORICAL:
            keys = [(threshold_key(name, t), lead) for t in p.thresholds]
            scores.append(Score(keys, _categorical(name, p.thresholds, p.op, w), "values"))
        elif name == "auc":
            keys = [(threshold_key(name, t), lead) for t in p.thresholds]
            scores.append(Score(keys, _auc(p.thresholds, p.op, w), "values"))
        elif name == "fss":
            keys = [(f"fss@{t:g}/{s}", lead) for s in p.scales for t in p.thresholds]
            scores.append(Score(keys, _fss(p.thresholds, p.scales, p.op), "values"))
    return scores


def _time_mean_error(name: str, space: tuple[int, ...], w):
    """RMSE (sqrt of the time-mean weighted MSE), MAE or bias (time means)."""

    def fn(f, o):
        per_time = cm_metrics.error_sums(f, o, axis=space, weights=w)
        if name == "rmse":
            return jnp.sqrt(jnp.nanmean(per_time.mse()))[None]
        return jnp.nanmean(getattr(per_time, name)())[None]

    return fn


def _acc(space: tuple[int, ...], w, centered: bool):
    """Per-time ACC over the grid averaged over times; pooled over times for point targets."""

    def fn(f, o):
        if not space:
            return cm_metrics.acc(f, o, centered=centered)[None]
        return jnp.nanmean(cm_metrics.acc(f, o, axis=space, weights=w, centered=centered))[None]

    return fn


def _categorical(name: str, thresholds: Sequence[float], op: str, w):
    t = np.asarray(thresholds, np.float32)

    def fn(f, o):
        table = cm_metrics.contingency(f, o, threshold=t, op=op, weights=w)
        return getattr(table, name)()

    return fn


def _auc(thresholds: Sequence[float], op: str, w):
    """AUC of the forecast value as a score for the observed event, one per threshold."""
    t = jnp.asarray(thresholds, jnp.float32)
    compare = COMPARISONS[op]

    def fn(f, o):
        def one(threshold):
            labels = jnp.where(jnp.isnan(o), jnp.nan, compare(o, threshold).astype(o.dtype))
            return cm_metrics.roc_auc(f, labels, weights=w)

        return jax.vmap(one)(t.astype(o.dtype))

    return fn


def _fss(thresholds: Sequence[float], scales: Sequence[int], op: str):
    t = np.asarray(thresholds, np.float32)

    def fn(f, o):
        return jnp.concatenate([cm_metrics.fss(f, o, threshold=t, window=s, op=op) for s in scales])

    return fn


def to_dataset(exp: Experiment, arrays: dict[str, np.ndarray], anchor: np.ndarray) -> xr.Dataset:
    """Normalized ``(N, L, *target)`` arrays as a dataset in physical units with coords restored;
    ensemble arrays ``(N, M, L, *target)`` get a ``member`` dimension."""
    cfg = exp.cfg
    target = exp.raw[cfg.data.target]
    leads = np.asarray(cfg.data.leads)
    valid_index = anchor[:, None] + leads[None, :]
    valid_time = exp.time[valid_index]
    space_dims = [d for d in target.dims if d != "time"]
    dims = ("time", "lead", *space_dims)
    coords = {
        "time": exp.time[anchor],
        "lead": leads,
        "valid_time": (("time", "lead"), valid_time),
        **{d: target[d].values for d in space_dims if d in target.coords},
    }
    data_vars = {}

    def physical(values: np.ndarray) -> np.ndarray:  # (N, L, *target)
        return np.stack(
            [
                exp.normalizer.invert(values[:, i], cfg.data.target, time=valid_time[:, i])
                for i in range(len(leads))
            ],
            axis=1,
        )

    for name, values in arrays.items():
        if values.ndim == len(dims) + 1:  # members on axis 1
            coords["member"] = np.arange(values.shape[1])
            stacked = np.stack([physical(values[:, m]) for m in range(values.shape[1])], axis=1)
            var = (("time", "member", *dims[1:]), stacked)
        else:
            var = (dims, physical(values))
        data_vars[name] = (
            var[0],
            var[1].astype(np.float32),
            {"units": target.attrs.get("units", "")},
        )
    return xr.Dataset(data_vars, coords, attrs={"description": f"forecasts of {cfg.data.target}"})
