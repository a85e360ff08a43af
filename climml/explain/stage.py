"""The explain stage of a run: which input channels a trained model relies on, and where.

On the evaluation split (at most ``eval.explain.max_samples`` samples, drawn with the run's seed)
it computes single- and multi-pass permutation importance of every input channel (all input steps
and grid points of a channel permuted together) and, for gridded inputs, the mean gradient
saliency of the forecast. Scores are in normalized units, which ranks channels the same way.

Writes into the run directory: ``importance.nc`` (the ``permutation_importance`` Dataset),
``importance.png`` and, for gridded inputs, ``saliency.nc`` / ``saliency.png``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from climml import metrics
from climml.config import Config
from climml.data.loader import CHANNEL_DIMS, WindowLoader
from climml.errors import ConfigError, expected
from climml.experiment import DifferentiablePredictor, Experiment
from climml.explain.gradients import saliency
from climml.explain.permutation import permutation_importance

# name -> (score(pred, target) with NaN targets masked, higher_is_better)
SCORES = {
    "rmse": (metrics.rmse, False),
    "mae": (metrics.mae, False),
    "correlation": (metrics.correlation, True),
}


def check(cfg: Config) -> None:
    """Fail before training if the ``eval.explain`` section cannot be honoured."""
    ecfg = cfg.eval.explain
    if cfg.eval.task != "regression":
        raise ConfigError(expected("eval.explain.enabled", "a regression task", cfg.eval.task))
    if ecfg.score not in SCORES:
        raise ConfigError(
            expected("eval.explain.score", f"one of {sorted(SCORES)}", repr(ecfg.score))
        )
    if ecfg.n_repeats < 1:
        raise ConfigError(expected("eval.explain.n_repeats", "an integer >= 1", ecfg.n_repeats))
    if ecfg.max_samples is not None and ecfg.max_samples < 2:
        raise ConfigError(expected("eval.explain.max_samples", "None or >= 2", ecfg.max_samples))
    if ecfg.max_passes is not None and ecfg.max_passes < 1:
        raise ConfigError(expected("eval.explain.max_passes", "None or >= 1", ecfg.max_passes))
    if ecfg.n_bootstrap < 0:
        raise ConfigError(expected("eval.explain.n_bootstrap", "an integer >= 0", ecfg.n_bootstrap))


def explain_run(exp: Experiment, model: DifferentiablePredictor, workdir: Path) -> dict:
    """Run the stage on a prepared experiment and trained model (``pipeline.TrainedModel``).

    Returns ``{"model": {"singlepass_importance" | "multipass_importance" | "multipass_rank":
    {channel: value}}}``, the shape of ``metrics.json``.
    """
    cfg = exp.cfg
    check(cfg)
    ecfg = cfg.eval.explain
    x, y = _samples(exp.loader(cfg.eval.split), ecfg.max_samples, cfg.seed)
    score_fn, higher_is_better = SCORES[ecfg.score]
    names = channel_names(exp)
    predict_fn = model.predict_fn()
    result = permutation_importance(
        predict_fn,
        x,
        y,
        score_fn,
        key=jax.random.key(cfg.seed),
        feature_names=names,
        n_repeats=ecfg.n_repeats,
        multipass=ecfg.multipass,
        max_passes=ecfg.max_passes,
        higher_is_better=higher_is_better,
        n_bootstrap=ecfg.n_bootstrap,
    )
    result.attrs.update(score=ecfg.score, split=cfg.eval.split, units="normalized")
    result.to_netcdf(workdir / "importance.nc")
    gridded = x.ndim == 5  # (N, steps, lat, lon, channels)
    if gridded:
        maps = saliency_map(exp, predict_fn, x, names)
        maps.to_netcdf(workdir / "saliency.nc")
    if cfg.output.plots:
        _plot(exp, result, maps if gridded else None, workdir)
    return {"model": _summary(result)}


def channel_names(exp: Experiment) -> list[str]:
    """Names of the loader's input channels: each input variable (one per entry of a
    ``feature``/``channel`` dim), then ``mask`` if a validity channel is appended."""
    names = []
    for var in exp.cfg.data.inputs:
        extra = [d for d in exp.raw[var].dims if d in CHANNEL_DIMS]
        size = int(np.prod([exp.raw[var].sizes[d] for d in extra], dtype=np.int64))
        names += [var] if not extra else [f"{var}[{i}]" for i in range(size)]
    return names + (["mask"] if exp.cfg.data.mask_channel else [])


def saliency_map(
    exp: Experiment, predict_fn: Callable[[jax.Array], jax.Array], x: np.ndarray, names: list[str]
) -> xr.DataArray:
    """Mean over samples of d(mean forecast)/d(input), summed over steps: (lat, lon, channel).

    The forecast is averaged over leads and target points, so a positive value marks where a
    positive anomaly of that channel (at any input step) raises the forecast.
    """
    grads = saliency(predict_fn, x, output_fn=jnp.mean, chunk_size=64)
    values = np.asarray(grads).mean(axis=0).sum(axis=0)
    first = exp.raw[exp.cfg.data.inputs[0]]
    dims = [d for d in first.dims if d != "time" and d not in CHANNEL_DIMS]
    coords = {d: first[d].values for d in dims if d in first.coords}
    units = {"units": "normalized forecast per normalized input"}
    return xr.DataArray(
        values,
        dims=(*dims, "channel"),
        coords={**coords, "channel": names},
        name="saliency",
        attrs=units,
    )


def _samples(
    loader: WindowLoader, max_samples: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """All real samples of ``loader`` (padding dropped), at most ``max_samples`` drawn with
    ``seed`` (kept in time order); targets NaN where missing, which the scores mask."""
    xs, ys = [], []
    for batch in loader.epoch(0):
        keep = np.asarray(batch.weight) > 0
        xs.append(np.asarray(batch.x)[keep])
        ys.append(np.where(np.asarray(batch.y_valid) > 0, batch.y, np.nan)[keep])
    x, y = np.concatenate(xs), np.concatenate(ys).astype(np.float32)
    if max_samples is not None and x.shape[0] > max_samples:
        rows = np.sort(np.random.default_rng(seed).choice(x.shape[0], max_samples, replace=False))
        x, y = x[rows], y[rows]
    return x, y


def _summary(result: xr.Dataset) -> dict[str, dict[str, float]]:
    keys = ["singlepass_importance", "multipass_importance", "multipass_rank"]
    return {
        key: {
            str(f): float(v) for f, v in zip(result.feature.values, result[key].values, strict=True)
        }
        for key in keys
        if key in result
    }


def _plot(exp: Experiment, result: xr.Dataset, maps: xr.DataArray | None, workdir: Path) -> None:
    from climml.viz.importance import plot_importance, plot_saliency
    from climml.viz.style import time_step_unit

    score = exp.cfg.eval.explain.score
    plot_importance(result, score_name=f"{score} (normalized)", path=workdir / "importance.png")
    if maps is not None:
        lat, lon = (maps[d].values if d in maps.coords else None for d in maps.dims[:2])
        leads = ", ".join(str(lead) for lead in exp.cfg.data.leads)
        plot_saliency(
            maps.values,
            lat=lat,
            lon=lon,
            names=list(maps.channel.values),
            lead=f"mean over leads {leads} {time_step_unit(exp.time)}",
            units=maps.attrs["units"],
            title="Saliency of the forecast (summed over input steps)",
            path=workdir / "saliency.png",
        )
