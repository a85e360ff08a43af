"""Segmentation evaluation: per-pixel classes scored against truth and a majority-class baseline.

Returns ``{"<predictor>": {"<metric>": {"<key>": value}}}`` with keys the class names (from the
target's ``flag_meanings`` attribute, else the class ids), ``"all"`` for single numbers, and
``"<true>-><predicted>"`` for confusion-matrix cells. Every score pools all samples, leads and
grid points, weighted by latitude (``eval.area_weighting``; weights of mean 1, so the
confusion matrix still sums to the number of valid pixels). ``brier`` and ``auc`` score the
class probabilities (softmax of the logits) one class against the rest. Writes
``predictions.zarr`` (int8 masks on dims ``time`` = initialization time, ``lead``, target dims;
``observed`` is -1 where the truth is missing) and ``segmentation_map.png`` (input / truth /
prediction on a map; with a ``sea_ice`` class also ``sea_ice_map.png``, the two poles).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from climml import metrics as cm_metrics
from climml.config import Config
from climml.errors import ConfigError, expected
from climml.experiment import Experiment, Predictor
from climml.tasks import metric_specs
from climml.tasks._check import check_names
from climml.tasks._collect import collect
from climml.tasks.metric_specs import CATEGORICAL, MetricSpec, Score
from climml.types import Batch

CLASS_SCORES = ("iou", "mean_iou", "precision", "recall", "accuracy", "confusion_matrix")
PROBABILITY_SCORES = ("brier", "auc")
_REGRESSION = "a score of continuous fields; segmentation targets are class labels"
SUPPORTED: dict[str, str | None] = {
    **dict.fromkeys((*CLASS_SCORES, *PROBABILITY_SCORES, "bootstrap"), None),
    **dict.fromkeys(("rmse", "mae", "bias", "correlation", "acc", "fss", "crps"), _REGRESSION),
    **dict.fromkeys(CATEGORICAL, "per class use iou (the CSI of the class), precision, recall"),
}
BASELINES = ("majority",)


def check(cfg: Config) -> None:
    """Reject unknown metrics/baselines and a missing ``data.num_classes`` before training."""
    if not cfg.data.num_classes or cfg.data.num_classes < 2:
        raise ConfigError(expected("data.num_classes", "an int >= 2", cfg.data.num_classes))
    metric_specs.check(cfg, SUPPORTED)
    check_names("eval.baselines", cfg.eval.baselines, BASELINES)


def check_data(cfg: Config, raw: xr.Dataset) -> None:
    """A gridded target needs a latitude to weight by (unless ``eval.area_weighting: none``)."""
    metric_specs.grid_weights(cfg, raw[cfg.data.target])


def evaluate(exp: Experiment, model: Predictor, workdir: Path) -> dict:
    """Score ``model`` (and the baselines) on ``exp.cfg.eval.split``; write masks and a map."""
    cfg = exp.cfg
    k = cfg.data.num_classes
    names = class_names(exp.raw[cfg.data.target], k)
    specs = metric_specs.parse(cfg.eval.metrics)
    with_probability = any(s.name in PROBABILITY_SCORES for s in specs)
    predictors: dict[str, Callable[[Batch], np.ndarray]] = {model.name: _classes(model)}
    if with_probability:
        predictors[f"{model.name}/probability"] = _probabilities(model)
    if "majority" in cfg.eval.baselines:
        majority = majority_class(exp.loader("train").epoch(0), k)
        predictors["majority"] = lambda batch: np.full(np.shape(batch.y), majority, np.int8)
        if with_probability:
            certain = np.eye(k, dtype=np.float32)[majority]
            predictors["majority/probability"] = lambda batch: np.broadcast_to(
                certain, (*np.shape(batch.y), k)
            )
    masks = collect(exp.loader(cfg.eval.split), predictors)
    observed = np.where(masks["valid"] > 0, masks["observed"], -1).astype(np.int8)
    weights = metric_specs.grid_weights(cfg, exp.raw[cfg.data.target])
    scorer = metric_specs.Scorer(class_scores(specs, names, weights), specs, cfg.seed)
    results = {}
    for name in [n for n in predictors if "/" not in n]:
        arrays = {"masks": (masks[name], observed)}
        if with_probability:
            arrays["probabilities"] = (masks[f"{name}/probability"], observed)
        results[name] = scorer(arrays)
    if cfg.output.save_predictions:
        arrays = {name: masks[name] for name in results} | {"observed": observed}
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
    return results


def predict(exp: Experiment, model: Predictor, split: str) -> xr.Dataset:
    """The model's class masks (argmax of its logits) for ``split``."""
    masks = collect(exp.loader(split), {model.name: _classes(model)})
    return to_dataset(exp, {model.name: masks[model.name]}, masks["anchor"])


def _classes(model: Predictor) -> Callable[[Batch], np.ndarray]:
    """``batch -> (B, L, *grid)`` int8 class mask: the argmax of the model's logits."""
    return lambda batch: np.argmax(model.predict(batch), axis=-1).astype(np.int8)


def _probabilities(model: Predictor) -> Callable[[Batch], np.ndarray]:
    """``batch -> (B, L, *grid, K)`` class probabilities: the softmax of the model's logits."""
    return lambda batch: np.asarray(jax.nn.softmax(model.predict(batch), axis=-1), np.float32)


def class_names(target: xr.DataArray, num_classes: int) -> list[str]:
    """The CF ``flag_meanings`` of ``target`` when they name every class, else ``"0".."K-1"``."""
    meanings = str(target.attrs.get("flag_meanings", "")).split()
    return meanings if len(meanings) == num_classes else [str(i) for i in range(num_classes)]


def majority_class(batches: Iterable[Batch], num_classes: int) -> int:
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
    specs: Sequence[MetricSpec], names: Sequence[str], weights: np.ndarray | None
) -> list[Score]:
    """The ``Score`` of each spec: pure functions of ``(predicted, observed)`` class masks
    ``(N, L, *grid)`` (observed -1 = missing), or of ``(probabilities (N, L, *grid, K),
    observed)`` for ``brier``/``auc``; ``weights`` broadcast against ``grid``."""
    k = len(names)
    w = None if weights is None else jnp.asarray(weights)

    def matrix(pred, observed):
        counts = cm_metrics.confusion_matrix(pred, observed, num_classes=k, weights=w)
        return counts.astype(jnp.float32)

    def per_class(name: str):
        def fn(pred, observed):
            m = matrix(pred, observed)
            hits = jnp.diagonal(m)
            if name == "iou":
                return cm_metrics.iou_from_confusion(m)
            if name == "precision":  # of the pixels predicted k, truly k
                return _ratio(hits, m.sum(axis=0))
            return _ratio(hits, m.sum(axis=1))  # recall: of the pixels truly k, found

        return fn

    def mean_iou(pred, observed):
        return jnp.nanmean(cm_metrics.iou_from_confusion(matrix(pred, observed)))[None]

    def accuracy(pred, observed):
        m = matrix(pred, observed)
        return _ratio(jnp.trace(m), m.sum())[None]

    def confusion(pred, observed):
        return matrix(pred, observed).reshape(-1)

    def one_hot(observed, dtype):
        hot = (observed[..., None] == jnp.arange(k)).astype(dtype)
        return jnp.where(observed[..., None] >= 0, hot, jnp.nan)

    def brier(probability, observed):
        axes = tuple(range(probability.ndim - 1))
        truth = one_hot(observed, probability.dtype)
        class_w = None if w is None else w[..., None]
        return cm_metrics.brier_score(probability, truth, axis=axes, weights=class_w)

    def auc(probability, observed):
        truth = one_hot(observed, probability.dtype)
        one_class = lambda s, y: cm_metrics.roc_auc(s, y, weights=w)  # noqa: E731
        return jax.vmap(one_class, in_axes=(-1, -1))(probability, truth)

    scores = []
    for spec in specs:
        name = spec.name
        if name in ("iou", "precision", "recall"):
            scores.append(Score([(name, c) for c in names], per_class(name), "masks"))
        elif name in ("mean_iou", "accuracy"):
            fn = mean_iou if name == "mean_iou" else accuracy
            scores.append(Score([(name, "all")], fn, "masks"))
        elif name == "confusion_matrix":
            keys = [(name, f"{t}->{p}") for t in names for p in names]
            scores.append(Score(keys, confusion, "masks"))
        elif name in PROBABILITY_SCORES:
            fn = brier if name == "brier" else auc
            scores.append(Score([(name, c) for c in names], fn, "probabilities"))
    return scores


def _ratio(numerator, denominator):
    """``numerator / denominator``, NaN where the denominator is 0."""
    safe = jnp.where(denominator > 0, denominator, 1)
    return jnp.where(denominator > 0, numerator / safe, jnp.nan)


def to_dataset(exp: Experiment, masks: dict[str, np.ndarray], anchor: np.ndarray) -> xr.Dataset:
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


def plot_example(exp: Experiment, anchor, observed, predicted, names, path: Path) -> None:
    """Input / truth / prediction maps for the sample with most pixels of the rarest class;
    with a ``sea_ice`` class also truth / prediction on polar maps (``sea_ice_map.png``)."""
    from climml.viz.maps import Panel, plot_panels, plot_polar

    cfg = exp.cfg
    counts = np.bincount(observed[observed >= 0].ravel(), minlength=len(names))
    rare = int(np.argmin(np.where(counts > 0, counts, np.iinfo(np.int64).max)))
    i = int(np.argmax((observed[:, 0] == rare).sum(axis=(1, 2))))
    t = int(anchor[i]) + int(cfg.data.leads[0])
    field = exp.raw[cfg.data.inputs[0]].isel(time=int(anchor[i]))
    target = exp.raw[cfg.data.target]
    maps = [np.asarray(field), observed[i, 0], predicted[i, 0]]
    if "lon_shift" in exp.raw.coords:  # samples rotated in longitude (real.hadisst_ice):
        shift = int(exp.raw["lon_shift"].values[int(anchor[i])])  # undone, so coasts line up
        maps = [np.roll(m, -shift, axis=-1) for m in maps]
    units = str(field.attrs.get("units", ""))
    panels = [
        Panel(f"input: {cfg.data.inputs[0]}", maps[0], units=units, label=cfg.data.inputs[0]),
        Panel("truth", maps[1], "classes", tuple(names)),
        Panel("prediction", maps[2], "classes", tuple(names)),
    ]
    when = str(np.datetime_as_string(exp.time[t], unit="h"))
    lat, lon = target["lat"].values, target["lon"].values
    plot_panels(panels, lat, lon, title=when, path=path)
    if "sea_ice" in names:
        plot_polar(panels[1:], lat, lon, title=when, path=path.with_name("sea_ice_map.png"))
