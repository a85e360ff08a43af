"""Reconstruction evaluation (autoencoders): reconstruction skill and anomaly maps.

Scores the reconstruction like a regression forecast (``eval.metrics`` per lead, against the
``eval.baselines``; see :mod:`climml.tasks.regression`). ``predictions.zarr`` holds, in the
target's physical units, the reconstruction, the baselines, ``observed``, the per-pixel squared
error ``error`` (the anomaly map) and its area-weighted spatial mean ``anomaly_score`` per
sample; ``reconstruction_map.png`` shows input / reconstruction / error for the most anomalous
sample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from climml.experiment import Experiment, Predictor
from climml.tasks import metric_specs, regression

check = regression.check  # same metric and baseline names as regression
check_data = regression.check_data
predict = regression.predict  # reconstructions are fields in the target's physical units


def evaluate(exp: Experiment, model: Predictor, workdir: Path) -> dict:
    """Score ``model`` and the baselines on ``exp.cfg.eval.split``; write error maps and a map."""
    cfg = exp.cfg
    ds, scores = regression.forecast_and_score(exp, model)
    space = [d for d in ds["observed"].dims if d not in ("time", "lead")]
    ds["error"] = np.square(ds[model.name] - ds["observed"])
    ds["error"].attrs["description"] = "squared reconstruction error (anomaly map)"
    weights = metric_specs.grid_weights(cfg, exp.raw[cfg.data.target])
    if weights is None:
        ds["anomaly_score"] = ds["error"].mean(space)
    else:  # the area-weighted mean, as the scores
        grid = xr.DataArray(np.broadcast_to(weights, ds["error"].shape[2:]), dims=space)
        ds["anomaly_score"] = ds["error"].weighted(grid).mean(space)
    if cfg.output.save_predictions:
        ds.to_zarr(workdir / "predictions.zarr", mode="w")
    if cfg.output.plots and len(space) == 2:
        plot_most_anomalous(ds, model.name, workdir / "reconstruction_map.png")
    return scores


def plot_most_anomalous(ds, name: str, path: Path) -> None:
    """Observed / reconstructed / squared-error maps of the sample with the largest score."""
    from climml.viz.maps import Panel, plot_panels

    score = ds["anomaly_score"].isel(lead=0).fillna(-np.inf).values
    sample = ds.isel(time=int(np.argmax(score)), lead=0)
    units = str(ds["observed"].attrs.get("units", ""))
    squared = f"({units})²" if units else ""
    panels = [  # observed and reconstructed in one colour range: equal colours, equal values
        Panel("observed", sample["observed"].values, units=units, group="field"),
        Panel("reconstruction", sample[name].values, units=units, group="field"),
        Panel("squared error", sample["error"].values, "error", units=squared),
    ]
    when = np.datetime_as_string(sample["valid_time"].values, unit="h")
    title = f"most anomalous: {when}"
    plot_panels(panels, ds["lat"].values, ds["lon"].values, title=title, path=path)
