"""Out-of-core regression evaluation: forecasts streamed into a zarr store, scores reduced from it.

With ``eval.out_of_core`` (``true``, or ``auto`` when the split's forecasts exceed
``eval.memory_budget_gb``) the regression task evaluates in two passes, neither of which holds
the split in memory:

1. **Forecast.** The split's initializations are cut into chunks of ``chunk_steps`` (a
   chunk's inputs and forecasts take about a quarter of the budget); for each, the model and
   the baselines predict from the chunk's windows and the chunk is written into its region of
   ``predictions.zarr`` (the layout of the in-memory path: one variable per predictor plus
   ``observed``, physical units), with ``climml.predict_stream.write_chunks``.
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

Continuous scores read anomalies, ``forecast - mean`` at the valid time (the normalizer's mean
or monthly climatology, in float64), as the in-memory path does; thresholded scores read the
physical values. The results equal the in-memory scores to float32 rounding.

Not out of core (``eval.out_of_core: true`` is a ``ConfigError`` naming the reason; ``auto``
falls back to memory): ``auc`` (an exact ROC area ranks every sample at once), ``bootstrap``
(resamples need every sample), ensembles (``train.ensemble_members > 1``) and targets with a
``data.transform`` (their anomalies live in the transformed space).
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
SCORED = ("rmse", "mae", "bias", "acc", "correlation", *CATEGORICAL, "fss")
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
    if cfg.train.ensemble_members > 1:
        reasons.append("train.ensemble_members > 1: ensembles are scored in memory")
    if cfg.data.transform not in (None, "none"):
        reasons.append(f"data.transform {cfg.data.transform!r}: anomalies in transformed units")
    return reasons


def forecast_bytes(exp: Experiment, n_predictors: int) -> int:
    """Bytes of the split's float32 forecasts of ``n_predictors`` plus the observations."""
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
    target = exp.raw[exp.cfg.data.target]
    grid = math.prod(s for d, s in target.sizes.items() if d != "time")
    return 4 * (n_predictors + 1) * len(exp.cfg.data.leads) * grid


# --------------------------------------------------------------------------- pass 1: forecasts


def forecast_and_score(
    exp: Experiment, predictors: Sequence[Predictor], workdir: Path, *, steps: int | None = None
) -> tuple[xr.Dataset, dict]:
    """Stream the forecasts of ``predictors`` (the model first) on the eval split into
    ``workdir/predictions.zarr`` (a scratch store, removed after scoring, when
    ``output.save_predictions`` is false) and score them out of core.

    Returns the store opened lazily (None when it was scratch) and
    ``{predictor: {metric: {lead: value}}}``. ``steps``: initializations per chunk (default
    ``chunk_steps``).
    """
    from climml.predict_stream import write_chunks
    from climml.tasks.regression import to_dataset

    cfg = exp.cfg
    keep = cfg.output.save_predictions
    path = Path(workdir) / ("predictions.zarr" if keep else SCRATCH)
    names = [p.name for p in predictors]
    functions = {p.name: p.predict for p in predictors}
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

    template = _template(exp, [*names, "observed"], anchors, steps)
    whole = {str(d): slice(None) for d in template.dims if d != "time"}
    regions = [{"time": r} | whole for r in rows]
    write_chunks(path, template, chunk, regions)
    store = xr.open_zarr(path)
    try:
        scores = score_dataset(
            store,
            names,
            specs=metric_specs.parse(cfg.eval.metrics),
            weights=metric_specs.grid_weights(cfg, exp.raw[cfg.data.target]),
            normalizer=exp.normalizer,
            target=cfg.data.target,
            dask_spec=cfg.data.dask,
        )
    finally:
        if not keep:
            store.close()
            shutil.rmtree(path, ignore_errors=True)
    return (store if keep else None), scores


def _template(exp: Experiment, names: Sequence[str], anchors: np.ndarray, steps: int):
    """The store without its data (dask zeros chunked ``steps`` along time): the coordinates
    and attributes ``regression.to_dataset`` gives the in-memory predictions."""
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
    zeros = da.zeros(shape, np.float32, chunks=(steps, *shape[1:]))
    data = {name: (("time", "lead", *space), zeros, units) for name in names}
    return xr.Dataset(data, coords, attrs={"description": f"forecasts of {cfg.data.target}"})


# --------------------------------------------------------------------------- pass 2: scores


class Plan(NamedTuple):
    """What a chunk is reduced to: the specs, grid weights and the anomaly reference.

    A plain, picklable value: it travels to the dask workers with every chunk's task."""

    specs: tuple[MetricSpec, ...]
    weights: np.ndarray | None  # broadcast against the grid dims (None: equal)
    normalizer: Normalizer | None  # None: the values are anomalies already
    target: str
    space: tuple[int, ...]  # grid axes of a (time, lead, *grid) chunk


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
        coordinate when ``normalizer`` has a monthly climatology.
    specs: the ``eval.metrics`` specs (names in ``SCORED``; others are a ``ConfigError``).
    weights: grid weights as ``metric_specs.grid_weights`` gives them.
    normalizer, target: anomalies are ``value - normalizer mean of target`` at the valid time
        (None: the values are anomalies already).
    dask_spec: a ``DaskConfig``: where the chunks are reduced (None: the threaded scheduler).
    """
    for spec in specs:
        if spec.name not in SCORED:
            want = f"scores with out-of-core statistics {list(SCORED)}"
            raise ConfigError(expected(spec.path, want, repr(spec.name)))
    observed = ds["observed"]
    plan = Plan(tuple(specs), weights, normalizer, target, tuple(range(2, observed.ndim)))
    # a task holds whole fields of the observations' time chunks (in memory: one chunk)
    steps = observed.chunks[0] if observed.chunks else -1
    layout = {d: (steps if d == "time" else -1) for d in observed.dims}
    chunked = {name: ds[name].chunk(layout) for name in (*names, "observed")}
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
    leads = [str(v) for v in ds["lead"].values] if "lead" in ds.coords else None
    return {name: _scores(plan, stats[name], leads) for name in names}


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
    """``{name: {spec index: statistics}}`` of one chunk ``(n, L, *grid)`` per variable."""
    *forecasts, observed = (np.asarray(a, np.float32) for a in arrays)  # no copy of float32
    mean = _mean_at(plan, observed.shape, valid_time)
    anom_o = _anomalies(observed, mean)
    out = {}
    for name, forecast in zip(names, forecasts, strict=True):
        anomalies = (_anomalies(forecast, mean), anom_o)
        stats = _statistics(
            anomalies, (forecast, observed), plan.weights, specs=plan.specs, space=plan.space
        )
        out[name] = dict(enumerate(_numpy(stats)))
    return out


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
    return out


def _correlation(s, centered: bool):
    return cm_metrics.Comoments(*(jnp.asarray(x) for x in s)).correlation(centered=centered)
