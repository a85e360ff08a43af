"""Segmentation evaluation: per-pixel classes scored against truth and a majority-class baseline.

Returns ``{"<predictor>": {"<metric>": {"<key>": value}}}`` with keys the class names (from the
target's ``flag_meanings`` attribute, else the class ids), ``"all"`` for single numbers, and
``"<true>-><predicted>"`` for confusion-matrix cells (pixel counts). Writes ``predictions.zarr``
(int8 masks on dims ``time`` = initialization time, ``lead``, target dims; ``observed`` is -1
where the truth is missing) and ``segmentation_map.png`` (input / truth / prediction on a map).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from climml import metrics as cm_metrics
from climml.errors import ConfigError, expected
from climml.tasks._check import check_names
from climml.tasks._collect import collect

METRICS = ("iou", "mean_iou", "precision", "recall", "accuracy", "confusion_matrix")
BASELINES = ("majority",)


def check(cfg: Any) -> None:
    """Reject unknown metrics/baselines and a missing ``data.num_classes`` before training."""
    if not cfg.data.num_classes or cfg.data.num_classes < 2:
        raise ConfigError(expected("data.num_classes", "an int >= 2", cfg.data.num_classes))
    check_names("eval.metrics", cfg.eval.metrics, METRICS)
    check_names("eval.baselines", cfg.eval.baselines, BASELINES)


def evaluate(exp: Any, model: Any, workdir: Path) -> dict:
    """Score ``model`` (and the baselines) on ``exp.cfg.eval.split``; write masks and a map."""
    cfg = exp.cfg
    k = cfg.data.num_classes
    names = class_names(exp.raw[cfg.data.target], k)
    predictors: dict[str, Callable[[Any], np.ndarray]] = {model.name: _classes(model)}
    if "majority" in cfg.eval.baselines:
        majority = majority_class(exp.loader("train").epoch(0), k)
        predictors["majority"] = lambda batch: np.full(np.shape(batch.y), majority, np.int8)
    masks = collect(exp.loader(cfg.eval.split), predictors)
    observed = np.where(masks["valid"] > 0, masks["observed"], -1).astype(np.int8)
    scores = {
        name: class_scores(masks[name], observed, names, cfg.eval.metrics) for name in predictors
    }
    if cfg.output.save_predictions:
        arrays = {name: masks[name] for name in predictors} | {"observed": observed}
        to_dataset(exp, arrays, masks["anchor"]).to_zarr(workdir / "predictions.zarr", mode="w")
    if cfg.output.plots:
        plot_example(
            exp,
            masks["anchor"],
            observed,
            masks[model.name],
            names,
            workdir / "segmentation_map.png",
        )
    return scores


def predict(exp: Any, model: Any, split: str) -> xr.Dataset:
    """The model's class masks (argmax of its logits) for ``split``."""
    masks = collect(exp.loader(split), {model.name: _classes(model)})
    return to_dataset(exp, {model.name: masks[model.name]}, masks["anchor"])


def _classes(model: Any) -> Callable[[Any], np.ndarray]:
    """``batch -> (B, L, *grid)`` int8 class mask: the argmax of the model's logits."""
    return lambda batch: np.argmax(model.predict(batch), axis=-1).astype(np.int8)


def class_names(target: xr.DataArray, num_classes: int) -> list[str]:
    """The CF ``flag_meanings`` of ``target`` when they name every class, else ``"0".."K-1"``."""
    meanings = str(target.attrs.get("flag_meanings", "")).split()
    return meanings if len(meanings) == num_classes else [str(i) for i in range(num_classes)]


def majority_class(batches: Any, num_classes: int) -> int:
    """The most frequent valid class over ``batches`` (the all-background predictor)."""
    counts = np.zeros(num_classes, np.int64)
    for batch in batches:
        valid = (np.asarray(batch.y_valid) > 0) & (np.asarray(batch.weight) > 0).reshape(
            (-1,) + (1,) * (np.ndim(batch.y) - 1)
        )
        labels = np.asarray(batch.y)[valid].astype(np.int64)
        counts += np.bincount(labels[(labels >= 0) & (labels < num_classes)], minlength=num_classes)
    return int(np.argmax(counts))


def class_scores(
    pred: np.ndarray, observed: np.ndarray, names: Sequence[str], metrics: Sequence[str]
) -> dict[str, dict[str, float]]:
    """``{metric: {key: value}}`` from the confusion matrix (``observed`` -1 = missing)."""
    k = len(names)
    matrix = np.asarray(cm_metrics.confusion_matrix(pred, observed, k), np.float64)
    hits = np.diag(matrix)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = {
            "iou": np.asarray(cm_metrics.iou_from_confusion(matrix)),
            "precision": hits / matrix.sum(axis=0),  # of the pixels predicted k, truly k
            "recall": hits / matrix.sum(axis=1),  # of the pixels truly k, found
        }
    out: dict[str, dict[str, float]] = {}
    for metric in metrics:
        if metric in per_class:
            out[metric] = {n: float(v) for n, v in zip(names, per_class[metric], strict=True)}
        elif metric == "mean_iou":
            out[metric] = {"all": float(np.nanmean(per_class["iou"]))}
        elif metric == "accuracy":
            out[metric] = {"all": float(hits.sum() / matrix.sum())}
        elif metric == "confusion_matrix":
            out[metric] = {
                f"{t}->{p}": float(matrix[i, j])
                for i, t in enumerate(names)
                for j, p in enumerate(names)
            }
    return out


def to_dataset(exp: Any, masks: dict[str, np.ndarray], anchor: np.ndarray) -> xr.Dataset:
    """``(N, L, *grid)`` class masks as an int8 dataset with time, lead and grid coords."""
    cfg = exp.cfg
    target = exp.raw[cfg.data.target]
    leads = np.asarray(cfg.data.leads)
    space = [d for d in target.dims if d != "time"]
    coords = {
        "time": exp.time[anchor],
        "lead": leads,
        "valid_time": (("time", "lead"), exp.time[anchor[:, None] + leads[None, :]]),
        **{d: target[d].values for d in space if d in target.coords},
    }
    attrs = {k: v for k, v in target.attrs.items() if k in ("flag_values", "flag_meanings")}
    data = {name: (("time", "lead", *space), m.astype(np.int8), attrs) for name, m in masks.items()}
    return xr.Dataset(data, coords, attrs={"description": f"class masks of {cfg.data.target}"})


def plot_example(exp, anchor, observed, predicted, names, path: Path) -> None:
    """Input / truth / prediction maps for the sample with most pixels of the rarest class."""
    from climml.viz.maps import Panel, plot_panels

    cfg = exp.cfg
    counts = np.bincount(observed[observed >= 0].ravel(), minlength=len(names))
    rare = int(np.argmin(np.where(counts > 0, counts, np.iinfo(np.int64).max)))
    i = int(np.argmax((observed[:, 0] == rare).sum(axis=(1, 2))))
    t = int(anchor[i]) + int(cfg.data.leads[0])
    field = exp.raw[cfg.data.inputs[0]].isel(time=int(anchor[i]))
    target = exp.raw[cfg.data.target]
    panels = [
        Panel(f"input: {cfg.data.inputs[0]}", np.asarray(field)),
        Panel("truth", observed[i, 0], "classes", tuple(names)),
        Panel("prediction", predicted[i, 0], "classes", tuple(names)),
    ]
    when = np.datetime_as_string(exp.time[t], unit="h")
    plot_panels(panels, target["lat"].values, target["lon"].values, path, title=str(when))
