"""Regression evaluation: forecasts at each lead scored against baselines in physical units.

Writes ``predictions.zarr`` (dims ``time`` = initialization time, ``lead``, target dims; one
variable per predictor plus ``observed``, in the target's physical units) and
``skill_by_lead.png``; returns ``{"<predictor>": {"<metric>": {"<lead>": value}}}``.
Scores use anomalies (the normalizer's mean, or monthly climatology, removed), which is what the
anomaly correlation needs and leaves RMSE/MAE unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from climml import metrics as cm_metrics
from climml.models.linear import check_baseline, make_baseline
from climml.tasks._check import check_names
from climml.tasks._collect import collect

SCORES: dict[str, Callable[..., Any]] = {
    "rmse": cm_metrics.rmse,
    "mae": cm_metrics.mae,
    "bias": cm_metrics.bias,
    "acc": cm_metrics.acc,
    "correlation": cm_metrics.correlation,
}


def check(cfg: Any) -> None:
    """Reject unknown metric or baseline names before any training starts."""
    check_names("eval.metrics", cfg.eval.metrics, sorted(SCORES))
    for name in cfg.eval.baselines:
        check_baseline(name, cfg.data.input_steps)


def evaluate(exp: Any, model: Any, workdir: Path) -> dict:
    """Score ``model`` and the configured baselines on ``exp.cfg.eval.split``."""
    ds, scores = forecast_and_score(exp, model)
    if exp.cfg.output.save_predictions:
        ds.to_zarr(workdir / "predictions.zarr", mode="w")
    if exp.cfg.output.plots:
        from climml.viz.plots import plot_skill_by_lead

        plot_skill_by_lead(scores, workdir / "skill_by_lead.png")
    return scores


def forecast_and_score(exp: Any, model: Any) -> tuple[xr.Dataset, dict]:
    """Forecasts of ``model`` and the baselines on the eval split, and their scores by lead.

    Returns the predictions dataset (physical units, one variable per predictor plus
    ``observed``) and ``{predictor: {metric: {lead: value}}}``.
    """
    cfg = exp.cfg
    train = exp.loader("train")
    predictors = [model] + [
        make_baseline(name, exp.spec, cfg.data.leads).fit(train.epoch(0))  # a fresh pass each
        for name in cfg.eval.baselines
    ]
    outputs = collect(exp.loader(cfg.eval.split), {p.name: p.predict for p in predictors})
    target = cfg.data.target
    observed = np.where(outputs["valid"] > 0, outputs["observed"], np.nan)
    obs_anom = exp.normalizer.invert(observed, target, add_mean=False)
    scores = {
        p.name: score_by_lead(
            exp.normalizer.invert(outputs[p.name], target, add_mean=False),
            obs_anom,
            cfg.data.leads,
            cfg.eval.metrics,
        )
        for p in predictors
    }
    arrays = {p.name: outputs[p.name] for p in predictors} | {"observed": observed}
    return to_dataset(exp, arrays, outputs["anchor"]), scores


def predict(exp: Any, model: Any, split: str) -> xr.Dataset:
    """The model's forecasts for ``split`` in physical units (no scoring)."""
    outputs = collect(exp.loader(split), {model.name: model.predict})
    return to_dataset(exp, {model.name: outputs[model.name]}, outputs["anchor"])


def score_by_lead(
    forecast: np.ndarray, observed: np.ndarray, leads: Sequence[int], names: Sequence[str]
) -> dict[str, dict[str, float]]:
    """``{metric: {lead: value}}``; each score pools samples (and grid points) of one lead."""
    return {
        name: {
            str(lead): float(SCORES[name](forecast[:, i], observed[:, i], axis=None))
            for i, lead in enumerate(leads)
        }
        for name in names
    }


def to_dataset(exp: Any, arrays: dict[str, np.ndarray], anchor: np.ndarray) -> xr.Dataset:
    """Normalized ``(N, L, *target)`` arrays as a dataset in physical units with coords restored."""
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
    for name, values in arrays.items():
        physical = np.stack(
            [
                exp.normalizer.invert(values[:, i], cfg.data.target, time=valid_time[:, i])
                for i in range(len(leads))
            ],
            axis=1,
        )
        data_vars[name] = (
            dims,
            physical.astype(np.float32),
            {"units": target.attrs.get("units", "")},
        )
    return xr.Dataset(data_vars, coords, attrs={"description": f"forecasts of {cfg.data.target}"})
