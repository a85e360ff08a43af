"""Out-of-core regression evaluation: forecasts streamed into a zarr store, scores reduced from it.

With ``eval.out_of_core`` (``true``, or ``auto`` when the split's forecasts exceed
``eval.memory_budget_gb``) the regression task evaluates in two passes, neither of which holds
the split in memory:

1. **Forecast.** The split's initializations are cut into chunks of ``chunk_steps`` (a
   chunk's inputs and forecasts take about a quarter of the budget); for each, the model and
   the baselines predict from the chunk's windows and the chunk is written into its region of
   ``predictions.zarr`` (the layout of the in-memory path: one variable per predictor plus
   ``observed``, physical units; an ensemble model's members along a ``member`` dimension,
   ``(time, member, lead, *grid)``), with ``climml.predict_stream.write_chunks``.
2. **Score.** Every zarr chunk is reduced to the sufficient statistics of the scores of
   ``eval.metrics``, by the kernels of ``climml.metrics`` (``error_sums``, ``acc``,
   ``comoments``, ``contingency``, ``fss_sums``), on ``data.dask``'s scheduler (a
   LocalCluster or a scheduler address when it selects one); the chunks' statistics are summed
   in a tree (each type's ``+``: plain sums, Chan's pairwise update for the centred moments)
   and the scores are formed last. At each lead:

   * RMSE, MAE, bias: per time the area-weighted ``ErrorSums`` over the grid; the chunk sums
     the per-time MSE (MAE, bias) and counts the times with a valid point (``MeanSums``);
     RMSE is the square root of the total over the count, as the in-memory ``nanmean``.
   * ACC: per-time ACC summed and counted likewise; for a point target the ``Comoments`` of
     the anomalies pooled over times (merged centred, so 280 K offsets do not cancel).
   * correlation: ``Comoments`` pooled over times and points.
   * categorical scores: one area-weighted ``Contingency`` table per threshold, summed.
   * FSS: ``FssSums`` pooled over times, summed.

   An ensemble (a variable with a ``member`` dimension) gets the scores above from its
   ensemble mean and, as ``regression.ensemble_scores`` gives them in memory:

   * CRPS (``crps_ensemble``, ``fair`` per the ``crps`` entry): per time the area-weighted
     mean of the per-point CRPS, summed and counted over times (``MeanSums``), as MAE;
   * spread, spread_skill: ``SpreadSkill`` sums pooled over times and area-weighted points
     (per point the members' centred variance and the ensemble mean's error);
   * rank_histogram: ``RankHistogram`` counts pooled likewise, frequencies last.

   The other variables (the baselines) then get the CRPS of a one-member ensemble (their MAE).

Continuous scores read anomalies, ``forecast - mean`` at the valid time (the normalizer's mean
or monthly climatology, in float64), as the in-memory path does; thresholded scores read the
physical values. The results equal the in-memory scores to float32 rounding.

Not out of core (``eval.out_of_core: true`` is a ``ConfigError`` naming the reason; ``auto``
falls back to memory): ``auc`` (an exact ROC area ranks every sample at once), ``bootstrap``
(resamples need every sample) and targets with a ``data.transform`` (their anomalies live in
the transformed space).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import dask
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from climml import metrics as cm_metrics
from climml.config import Config, DaskConfig
from climml.data import cluster
from climml.data.normalize import Normalizer
from climml.errors import ConfigError, expected
from climml.experiment import Experiment, Predictor
from climml.metrics.nowcast import MeanSums
from climml.tasks import metric_specs
from climml.tasks._collect import collect
from climml.tasks.metric_specs import CATEGORICAL, MetricSpec, threshold_key

CHOICES = (True, False, "auto")
SCORED = ("rmse", "mae", "bias", "acc", "correlation", *CATEGORICAL, "fss", "crps")
_NOT_MERGEABLE = {
    "auc": "an exact ROC area ranks every sample at once",
    "bootstrap": "resamples need every sample at once",
}
SCRATCH = ".predictions_scoring.zarr"  # the store when output.save_predictions is false


def check(cfg: Config) -> None:
    """``ConfigError`` for a bad ``eval.out_of_core`` or, when it is ``true``, for a run that
    cannot be scored out of core (see the module docstring)."""
    setting = cfg.eval.out_of_core
    if setting not in CHOICES or isinstance(setting, int) and not isinstance(setting, bool):
        raise ConfigError(expected("eval.out_of_core", "true, false or auto", repr(setting)))
    if setting is True:
        reasons = obstacles(cfg)
        if reasons:
            raise ConfigError(expected("eval.out_of_core", "false or auto", f"true; {reasons[0]}"))


def obstacles(cfg: Config) -> list[str]:
    """Why ``cfg`` cannot be scored out of core (empty: it can)."""
    reasons = []
    if cfg.eval.task != "regression":
        reasons.append(f"eval.task {cfg.eval.task!r} scores in memory (only regression streams)")
    for spec in metric_specs.parse(cfg.eval.metrics):
        if spec.name in _NOT_MERGEABLE:
            reasons.append(f"{spec.path} {spec.name!r}: {_NOT_MERGEABLE[spec.name]}")
        elif spec.name not in SCORED:
            reasons.append(f"{spec.path} {spec.name!r} has no out-of-core statistics")
    if cfg.data.transform not in (None, "none"):
        reasons.append(f"data.transform {cfg.data.transform!r}: anomalies in transformed units")
    return reasons


def forecast_bytes(exp: Experiment, n_predictors: int) -> int:
    """Bytes of the split's float32 forecasts of ``n_predictors`` plus the observations (an
    ensemble model's ``train.ensemble_members`` members each count as a forecast)."""
    return len(exp.anchors[exp.cfg.eval.split]) * _sample_bytes(exp, n_predictors)


def enabled(exp: Experiment) -> bool:
    """Whether ``exp`` is evaluated out of core (``auto``: when the forecasts of the model,
    the baselines and the observations exceed ``eval.memory_budget_gb`` and nothing stands
    in the way)."""
    cfg = exp.cfg
    if cfg.eval.out_of_core != "auto":
        return bool(cfg.eval.out_of_core)
    n = 1 + len(cfg.eval.baselines)
    return not obstacles(cfg) and forecast_bytes(exp, n) > cfg.eval.memory_budget_gb * 2**30


def chunk_steps(exp: Experiment, n_predictors: int) -> int:
    """Initializations per chunk: a chunk's input windows and forecasts take about a quarter
    of ``eval.memory_budget_gb`` (room for the zarr codecs, the scores' temporaries and a
    second chunk in flight); a multiple of ``data.batch_size``, at least one batch."""
    d = exp.cfg.data
    window = exp.loader(exp.cfg.eval.split).spec.input_shape
    per_sample = _sample_bytes(exp, n_predictors) + 4 * math.prod(window)
    batches = int(exp.cfg.eval.memory_budget_gb * 2**30 / 4 / per_sample) // d.batch_size
    return max(1, batches) * d.batch_size


def _sample_bytes(exp: Experiment, n_predictors: int) -> int:
    """Bytes of one initialization's float32 fields: the predictors' (the model's members)
    and the observations', every lead."""
    target = exp.raw[exp.cfg.data.target]
    grid = math.prod(s for d, s in target.sizes.items() if d != "time")
    forecasts = n_predictors - 1 + max(exp.cfg.train.ensemble_members, 1)  # M model fields
    return 4 * (forecasts + 1) * len(exp.cfg.data.leads) * grid


# --------------------------------------------------------------------------- pass 1: forecasts


class Evaluation(NamedTuple):
    """What ``forecast_and_score`` returns."""

    predictions: xr.Dataset | None  # the store opened lazily (None: it was scratch)
    scores: dict  # {predictor: {metric: {lead: value}}}
    rank_counts: np.ndarray | None  # an ensemble model's (M + 1,) rank counts, every lead
    # and point unweighted (what regression's rank_histogram.png draws; None: no ensemble)


def forecast_and_score(
    exp: Experiment, predictors: Sequence[Predictor], workdir: Path, *, steps: int | None = None
) -> Evaluation:
    """Stream the forecasts of ``predictors`` (the model first; an ensemble model's members,
    from its ``predict_members``) on the eval split into ``workdir/predictions.zarr`` (a
    scratch store, removed after scoring, when ``output.save_predictions`` is false) and score
    them out of core. ``steps``: initializations per chunk (default ``chunk_steps``).
    """
    from climml.predict_stream import write_chunks
    from climml.tasks.regression import to_dataset

    cfg = exp.cfg
    keep = cfg.output.save_predictions
    path = Path(workdir) / ("predictions.zarr" if keep else SCRATCH)
    names = [p.name for p in predictors]
    # an ensemble model streams its members (B, M, L, *grid), as the in-memory path keeps them
    functions = {p.name: getattr(p, "predict_members", p.predict) for p in predictors}
    members = {
        p.name: cfg.train.ensemble_members for p in predictors if hasattr(p, "predict_members")
    }
    anchors = exp.anchors[cfg.eval.split]
    steps = steps or chunk_steps(exp, len(predictors))
    rows = [slice(lo, min(lo + steps, len(anchors))) for lo in range(0, len(anchors), steps)]

    def chunk(k: int) -> xr.Dataset:
        """Chunk ``k``'s forecasts and observations (NaN where missing), physical units."""
        part = dataclasses.replace(exp, anchors={"chunk": anchors[rows[k]]})
        outputs = collect(part.loader("chunk"), functions)
        observed = np.where(outputs["valid"] > 0, outputs["observed"], np.nan)
        arrays = {name: outputs[name] for name in names} | {"observed": observed}
        ds = to_dataset(exp, arrays, outputs["anchor"])
        return ds.drop_vars(list(ds.coords))  # the template holds them

    template = _template(exp, [*names, "observed"], anchors, steps, members)
    whole = {str(d): slice(None) for d in template.dims if d != "time"}
    regions = [{"time": r} | whole for r in rows]
    write_chunks(path, template, chunk, regions)
    store = xr.open_zarr(path)
    try:
        plan = _plan(
            store,
            names,
            metric_specs.parse(cfg.eval.metrics),
            metric_specs.grid_weights(cfg, exp.raw[cfg.data.target]),
            exp.normalizer,
            cfg.data.target,
            pooled_ranks=cfg.output.plots,
        )
        stats = _reduce(store, names, plan, cfg.data.dask)
        leads = [str(v) for v in store["lead"].values]
    finally:
        if not keep:
            store.close()
            shutil.rmtree(path, ignore_errors=True)
    scores = {name: _scores(plan, stats[name], leads) for name in names}
    pooled = stats[names[0]].get("rank_pooled")
    counts = None if pooled is None else np.asarray(pooled.counts)
    return Evaluation(store if keep else None, scores, counts)


def _template(
    exp: Experiment,
    names: Sequence[str],
    anchors: np.ndarray,
    steps: int,
    members: Mapping[str, int],
) -> xr.Dataset:
    """The store without its data (dask zeros chunked ``steps`` along time): the coordinates
    and attributes ``regression.to_dataset`` gives the in-memory predictions; the variables
    in ``members`` (name: M) are ensembles ``(time, member, lead, *grid)``, whole members in
    each chunk."""
    import dask.array as da

    cfg = exp.cfg
    target = exp.raw[cfg.data.target]
    leads = np.asarray(cfg.data.leads)
    space = [str(d) for d in target.dims if d != "time"]
    shape = (len(anchors), len(leads), *(target.sizes[d] for d in space))
    coords = {
        "time": exp.time[anchors],
        "lead": leads,
        "valid_time": (("time", "lead"), exp.time[anchors[:, None] + leads[None, :]]),
        **{d: target[d].values for d in space if d in target.coords},
    }
    units = {"units": target.attrs.get("units", "")}
    data = {}
    for name in names:
        dims, size = ("time", "lead", *space), shape
        if name in members:  # (time, member, lead, *grid)
            dims, size = (dims[0], "member", *dims[1:]), (shape[0], members[name], *shape[1:])
        # dtype by keyword: dask.array.zeros takes no positional dtype (it would be float64)
        zeros = da.zeros(size, dtype=np.float32, chunks=(steps, *size[1:]))
        data[name] = (dims, zeros, units)
    if members:
        coords["member"] = np.arange(max(members.values()))
    return xr.Dataset(data, coords, attrs={"description": f"forecasts of {cfg.data.target}"})


# --------------------------------------------------------------------------- pass 2: scores


class Plan(NamedTuple):
    """What a chunk is reduced to: the specs, grid weights and the anomaly reference.

    A plain, picklable value: it travels to the dask workers with every chunk's task."""

    specs: tuple[MetricSpec, ...]  # the per-forecast scores (``crps`` is the ensembles')
    weights: np.ndarray | None  # broadcast against the grid dims (None: equal)
    normalizer: Normalizer | None  # None: the values are anomalies already
    target: str
    space: tuple[int, ...]  # grid axes of a (time, lead, *grid) chunk
    ensemble: bool = False  # an ensemble is scored: every variable gets its CRPS
    fair: bool = False  # the fair CRPS (the ``crps`` entry's ``fair``)
    pooled_ranks: bool = False  # also an ensemble's rank histogram over every lead, unweighted


def score_dataset(
    ds: xr.Dataset,
    names: Sequence[str],
    *,
    specs: Sequence[MetricSpec],
    weights: np.ndarray | None = None,
    normalizer: Normalizer | None = None,
    target: str = "",
    dask_spec: DaskConfig | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """``{name: {metric: {lead: value}}}`` of the variables ``names`` of ``ds`` scored against
    ``ds["observed"]`` out of core (see the module docstring).

    ds: ``(time, lead, *grid)`` variables in physical units, dask-backed (one task per chunk
        along ``time``; in-memory data is one chunk) with a ``valid_time`` ``(time, lead)``
        coordinate when ``normalizer`` has a monthly climatology. A variable
        ``(time, member, lead, *grid)`` is an ensemble: ``specs`` score its ensemble mean and
        it gets ``crps``, ``spread``, ``spread_skill`` and ``rank_histogram`` (M + 1
        frequencies per lead); the other variables then get ``crps`` too (one member).
    specs: the ``eval.metrics`` specs (names in ``SCORED``; others are a ``ConfigError``;
        ``crps``, whose ``fair`` selects the estimator, needs an ensemble).
    weights: grid weights as ``metric_specs.grid_weights`` gives them.
    normalizer, target: anomalies are ``value - normalizer mean of target`` at the valid time
        (None: the values are anomalies already).
    dask_spec: a ``DaskConfig``: where the chunks are reduced (None: the threaded scheduler).
    """
    plan = _plan(ds, names, specs, weights, normalizer, target)
    stats = _reduce(ds, names, plan, dask_spec)
    leads = [str(v) for v in ds["lead"].values] if "lead" in ds.coords else None
    return {name: _scores(plan, stats[name], leads) for name in names}


def _plan(
    ds: xr.Dataset,
    names: Sequence[str],
    specs: Sequence[MetricSpec],
    weights: np.ndarray | None,
    normalizer: Normalizer | None,
    target: str,
    *,
    pooled_ranks: bool = False,
) -> Plan:
    """The ``Plan`` of ``score_dataset``'s arguments; ``ConfigError`` for a spec without
    out-of-core statistics, or ``crps`` without an ensemble."""
    for spec in specs:
        if spec.name not in SCORED:
            want = f"scores with out-of-core statistics {list(SCORED)}"
            raise ConfigError(expected(spec.path, want, repr(spec.name)))
    ensemble = any("member" in ds[name].dims for name in names)
    crps = [spec for spec in specs if spec.name == "crps"]
    if crps and not ensemble:
        want = "an ensemble (a variable with a 'member' dimension) for 'crps'"
        raise ConfigError(expected(crps[0].path, want, f"no member dimension in {list(names)}"))
    per_forecast = tuple(spec for spec in specs if spec.name != "crps")
    space = tuple(range(2, ds["observed"].ndim))
    fair = bool(crps and crps[0].params.fair)
    return Plan(per_forecast, weights, normalizer, target, space, ensemble, fair, pooled_ranks)


def _reduce(ds: xr.Dataset, names: Sequence[str], plan: Plan, dask_spec: DaskConfig | None):
    """``{name: statistics}`` of ``ds`` summed over its time chunks on ``dask_spec``'s
    scheduler (host float64 NumPy)."""
    observed = ds["observed"]
    # a task holds whole fields (and all members) of the observations' time chunks
    steps = observed.chunks[0] if observed.chunks else -1
    chunked = {
        name: ds[name].chunk({d: (steps if d == "time" else -1) for d in ds[name].dims})
        for name in (*names, "observed")
    }
    bounds = np.cumsum((0, *chunked["observed"].chunks[0]))
    valid_time = np.asarray(ds["valid_time"].values) if "valid_time" in ds.coords else None
    # one delayed object per chunk, all sharing one graph; the plan is one task, sent once
    blocks = [chunked[name].data.to_delayed().ravel() for name in (*names, "observed")]
    shared = dask.delayed(plan, pure=True)
    parts = []
    for k in range(len(bounds) - 1):
        vt = None if valid_time is None else valid_time[int(bounds[k]) : int(bounds[k + 1])]
        arrays = [b[k] for b in blocks]
        parts.append(dask.delayed(_chunk_statistics)(shared, list(names), vt, *arrays))
    total = _tree_sum(parts)
    nbytes = sum(ds[name].nbytes for name in (*names, "observed"))
    with cluster.compute_on(dask_spec, nbytes=nbytes):
        (stats,) = dask.compute(total)
    return stats


def _tree_sum(parts: list):
    """Pairwise sums of delayed statistics: a tree of depth log2(chunks), so that no task
    waits for every chunk."""
    while len(parts) > 1:
        pairs = [dask.delayed(_merge)(a, b) for a, b in zip(parts[::2], parts[1::2], strict=False)]
        parts = pairs + ([parts[-1]] if len(parts) % 2 else [])
    return parts[0]


def _merge(a: Any, b: Any) -> Any:
    """Sum two chunks' statistics: dicts key by key, the kernels' NamedTuples by their ``+``."""
    if isinstance(a, Mapping):
        return {k: _merge(a[k], b[k]) for k in a}
    return _numpy(a + b)


def _numpy(stats: Any) -> Any:
    """Host float64 copies (what crosses processes, and what sums without float32 drift)."""
    return jax.tree.map(lambda x: np.asarray(x, np.float64), stats)


def _chunk_statistics(plan: Plan, names: list[str], valid_time, *arrays) -> dict:
    """``{name: {spec index: statistics} | ensemble statistics}`` of one chunk: per variable
    ``(n, L, *grid)``, or ``(n, M, L, *grid)`` for an ensemble."""
    *forecasts, observed = (np.asarray(a, np.float32) for a in arrays)  # no copy of float32
    mean = _mean_at(plan, observed.shape, valid_time)
    anom_o = _anomalies(observed, mean)
    out = {}
    for name, forecast in zip(names, forecasts, strict=True):
        members = forecast if forecast.ndim > observed.ndim else None
        if members is None:
            anom_f = _anomalies(forecast, mean)
        else:
            forecast, anom_f = _ensemble_mean(members, mean)
        stats = _statistics(
            (anom_f, anom_o), (forecast, observed), plan.weights, specs=plan.specs, space=plan.space
        )
        out[name] = dict(enumerate(_numpy(stats)))
        if plan.ensemble:
            ens = anom_f[:, None] if members is None else _member_anomalies(members, mean)
            calibration = members is not None and members.shape[1] >= 2
            flags = {"fair": plan.fair, "calibration": calibration, "pooled": plan.pooled_ranks}
            stats = _ensemble_statistics(ens, anom_o, plan.weights, space=plan.space, **flags)
            out[name] |= _numpy(stats)
    return out


def _ensemble_mean(members: np.ndarray, mean: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The ensemble mean ``(n, L, *grid)`` of float32 ``members`` ``(n, M, L, *grid)``, in
    physical units and as anomalies (both averaged in float64, then float32)."""
    average = members.mean(axis=1, dtype=np.float64)
    anomalies = average if mean is None else average - mean
    return average.astype(np.float32), anomalies.astype(np.float32)


def _member_anomalies(members: np.ndarray, mean: np.ndarray | None) -> np.ndarray:
    """``members`` ``(n, M, L, *grid)`` minus the mean ``(n, L, *grid)``: float32 anomalies."""
    return _anomalies(members, None if mean is None else mean[:, None])


def _mean_at(plan: Plan, shape: tuple[int, ...], valid_time) -> np.ndarray | None:
    """The normalizer's float64 mean of the target at each value's valid time, ``shape``
    (None without a normalizer)."""
    if plan.normalizer is None:
        return None
    return plan.normalizer.invert(np.zeros(shape, np.float64), plan.target, time=valid_time)


def _anomalies(values: np.ndarray, mean: np.ndarray | None) -> np.ndarray:
    """``values - mean`` in float64 (exact anomalies of float32 values of any offset), then
    float32 as the in-memory path scores them."""
    return values if mean is None else (values - mean).astype(np.float32)


# One program per chunk shape: the kernels called eagerly would dispatch (and some compile)
# op by op for every chunk.
@functools.partial(jax.jit, static_argnames=("specs", "space"))
def _statistics(anomalies, values, weights, *, specs, space) -> list:
    """The additive statistics of each spec over one chunk, one entry per lead."""
    return [_spec_statistics(spec, space, weights, anomalies, values) for spec in specs]


def _spec_statistics(spec: MetricSpec, space: tuple[int, ...], w, anomalies, values):
    name, p = spec.name, spec.params
    if name in ("rmse", "mae", "bias"):
        per_time = cm_metrics.error_sums(*anomalies, axis=space, weights=w)
        return _time_sums(getattr(per_time, "mse" if name == "rmse" else name)())
    if name == "acc" and space:
        return _time_sums(cm_metrics.acc(*anomalies, axis=space, weights=w, centered=p.centered))
    if name in ("acc", "correlation"):  # pooled over times (and points)
        return cm_metrics.comoments(*anomalies, axis=(0, *space), weights=w)
    t = np.asarray(p.thresholds, np.float32)
    if name in CATEGORICAL:
        return cm_metrics.contingency(*values, threshold=t, op=p.op, axis=(0, *space), weights=w)
    # fss: (K, L) sums per scale
    return {
        s: cm_metrics.fss_sums(*values, threshold=t, window=s, op=p.op, axis=0) for s in p.scales
    }


@functools.partial(jax.jit, static_argnames=("space", "fair", "calibration", "pooled"))
def _ensemble_statistics(members, observed, weights, *, space, fair, calibration, pooled) -> dict:
    """The additive ensemble statistics of one chunk of anomalies, members ``(n, M, L,
    *grid)`` and observations ``(n, L, *grid)`` (data units):

    * ``crps``: ``MeanSums`` ``(L,)`` over times of the area-weighted mean CRPS per time;
    * with ``calibration``: ``spread`` (``SpreadSkill`` ``(L,)``) and ``rank``
      (``RankHistogram`` ``(L, M + 1)``), area-weighted over times and points; with
      ``pooled`` ``rank_pooled`` (``(M + 1,)``, unweighted over leads too: the plot's).
    """
    crps = cm_metrics.crps_ensemble(members, observed, ensemble_axis=1, fair=fair)
    per_time = cm_metrics.weighted_mean(crps, axis=space, weights=weights) if space else crps
    out = {"crps": _time_sums(per_time)}
    if calibration:
        points = dict(ensemble_axis=1, axis=(0, *space), weights=weights)
        out["spread"] = cm_metrics.spread_skill(members, observed, **points)
        out["rank"] = cm_metrics.rank_histogram(members, observed, **points)
    if calibration and pooled:
        out["rank_pooled"] = cm_metrics.rank_histogram(members, observed, ensemble_axis=1)
    return out


def _time_sums(per_time) -> MeanSums:
    """Sum and count over the chunk's times of the finite per-time scores ``(n, L)``."""
    finite = jnp.isfinite(per_time)
    return MeanSums(jnp.where(finite, per_time, 0).sum(0), finite.sum(0))


def _scores(plan: Plan, stats: dict, leads: list[str] | None) -> dict[str, dict[str, float]]:
    """The scores (ratios last) from the summed statistics of one predictor."""
    out: dict[str, dict[str, float]] = {}

    def put(key: str, values) -> None:
        values = np.asarray(values, np.float64).reshape(-1)
        keys = leads or [str(i) for i in range(values.size)]
        out[key] = dict(zip(keys, values.tolist(), strict=True))

    for i, spec in enumerate(plan.specs):
        s, name, p = stats[i], spec.name, spec.params
        if name == "rmse":
            put(name, np.sqrt(s.mean()))
        elif name in ("mae", "bias") or (name == "acc" and plan.space):
            put(name, s.mean())
        elif name == "acc":
            put(name, _correlation(s, p.centered))
        elif name == "correlation":
            put(name, _correlation(s, True))
        elif name in CATEGORICAL:
            table = cm_metrics.Contingency(*(jnp.asarray(x) for x in s))
            for k, t in enumerate(p.thresholds):
                put(threshold_key(name, t), np.asarray(getattr(table, name)())[k])
        else:
            for scale in p.scales:
                sums = cm_metrics.FssSums(*(jnp.asarray(x) for x in s[scale]))
                for k, t in enumerate(p.thresholds):
                    put(f"fss@{t:g}/{scale}", np.asarray(sums.fss())[k])
    if "crps" in stats:
        out |= _ensemble_scores(stats, leads)
    return out


def _ensemble_scores(stats: dict, leads: list[str] | None) -> dict[str, dict[str, Any]]:
    """``crps`` and, for an ensemble of M >= 2, ``spread``, ``spread_skill`` and
    ``rank_histogram`` (a list of M + 1 frequencies) per lead, from summed statistics."""
    crps = np.asarray(stats["crps"].mean(), np.float64)
    keys = leads or [str(i) for i in range(crps.size)]

    def by_lead(values) -> dict[str, Any]:
        return dict(zip(keys, np.asarray(values, np.float64).tolist(), strict=True))

    out = {"crps": by_lead(crps)}
    if "spread" in stats:
        sums = cm_metrics.SpreadSkill(*(jnp.asarray(x) for x in stats["spread"]))
        out["spread"] = by_lead(sums.spread())
        out["spread_skill"] = by_lead(sums.ratio())
        ranks = cm_metrics.RankHistogram(jnp.asarray(stats["rank"].counts))
        out["rank_histogram"] = by_lead(ranks.frequencies())
    return out


def _correlation(s, centered: bool):
    return cm_metrics.Comoments(*(jnp.asarray(x) for x in s)).correlation(centered=centered)
