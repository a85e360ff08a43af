"""The stages of an experiment: prepare data → train → evaluate (→ explain) → report.

Every stage is a function of the config and a working directory, so the CLI, notebooks and batch
jobs run the same code. ``run`` chains them and is resumable: training continues from the last
checkpoint in ``workdir``, and the resolved config written there guards against resuming with a
different experiment.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
import xarray as xr
from flax import nnx

from climml import config as config_mod
from climml import data as cdata
from climml import models, native
from climml.config import Config
from climml.data import cluster
from climml.data.rain import rain_transform
from climml.errors import ConfigError, expected
from climml.experiment import Experiment, Predictor
from climml.jobs import LOG_FILE, JsonLog
from climml.train import distributed
from climml.train.loop import FitResult, fit, load_best
from climml.types import Batch


def _native_switch(stage):
    """``stage(cfg, ...)`` with the native LSTM kernel asked for when ``cfg.train.native_lstm``:
    the stage traces its models inside, and the kernel is chosen at trace time."""

    @functools.wraps(stage)
    def run_stage(cfg: Config, *args, **kwargs):
        with native.enabled(cfg.train.native_lstm):
            return stage(cfg, *args, **kwargs)

    return run_stage


def prepare(cfg: Config) -> Experiment:
    """Check the config, load and check the source, split it in time, fit the normalizer on the
    training split. Every config and data error surfaces here, before a stage writes anything.

    Only the variables the config reads (inputs and target) are loaded and checked; each must
    have finite, varying values in every split (class labels may be constant).
    """
    from climml import tasks
    from climml.tasks import out_of_core
    from climml.train.losses import loss_terms
    from climml.train.optimizer import build_optimizer
    from climml.train.steps import compute_dtype

    config_mod.check(cfg)  # again: a config edited with dataclasses.replace skipped load()
    tasks.get(cfg.eval.task).check(cfg)
    out_of_core.check(cfg)  # eval.out_of_core: true | false | auto, and true is possible
    if cfg.model.name == "nowcast_gan":
        from climml.train.adversarial import check as check_gan

        check_gan(cfg)
    build_optimizer(cfg.train, total_steps=1)  # names: optimizer, schedule
    loss_terms(cfg.train)
    compute_dtype(cfg.train.dtype)
    distributed.check(cfg.train.distributed)
    d = cfg.data
    transform = rain_transform(d.transform, d.transform_threshold)  # a bad name fails here
    if "train" not in d.splits or "val" not in d.splits:  # fit early-stops on 'val'
        raise ConfigError(expected("data.splits", "'train' and 'val' splits", sorted(d.splits)))
    if cfg.eval.split not in d.splits:
        want = f"one of {sorted(d.splits)}"
        raise ConfigError(expected("eval.split", want, repr(cfg.eval.split)))
    used = list(dict.fromkeys([*d.inputs, d.target]))
    raw = cdata.conform(cdata.load_source(d.source, **dict(d.source_args)), used, ("time",))
    tasks.get(cfg.eval.task).check_data(cfg, raw)  # e.g. a latitude for area weighting
    anchors = cdata.split_anchors(
        raw.indexes["time"],
        dict(d.splits),
        input_steps=d.input_steps,
        max_lead=max(d.leads),
        gap=d.gap,
    )
    labels = [d.target] if d.num_classes is not None else []
    variables = list(dict.fromkeys(d.inputs))
    if d.num_classes is None and d.target not in variables:
        variables.append(d.target)  # class labels are never normalized
    # the two passes over the data (checks of every split, training statistics) run on
    # data.dask's scheduler
    with cluster.compute_on(d.dask, nbytes=raw[used].nbytes):
        cdata.check_splits(raw, used, dict(d.splits), may_be_constant=labels)
        norm = cdata.Normalizer.fit(
            raw,
            variables=variables,
            dims=d.normalize.dims,
            climatology=d.normalize.climatology,
            time_range=tuple(d.splits["train"]),
            transform=transform,
        )
    normalized = norm.apply(raw[variables])
    if d.target not in variables:
        normalized[d.target] = raw[d.target]
    return Experiment(cfg, raw, normalized, norm, anchors)


def build_model(exp: Experiment) -> nnx.Module:
    """The configured model, initialized from ``cfg.seed``."""
    seed = exp.cfg.seed
    return models.build(exp.cfg.model, exp.spec, nnx.Rngs(params=seed, dropout=seed + 1))


def model_builder(exp: Experiment):
    """``build(rngs) -> nnx.Module``: the configured model from any ``nnx.Rngs`` (ensemble
    members and sweep settings are built from their own seeds, see ``climml.train.ensemble``)."""
    return lambda rngs: models.build(exp.cfg.model, exp.spec, rngs)


@_native_switch
def train(cfg: Config, workdir: str | Path, exp: Experiment | None = None) -> FitResult:
    """Train (or resume training) into ``workdir``; writes config, normalizer and history, and
    appends progress records to ``log.jsonl`` (``climml.jobs.JsonLog``).

    Over several processes (``train.distributed`` or a detected cluster) every process calls
    this with the same config and a ``workdir`` they share; process 0 writes the files.
    """
    distributed.initialize(cfg.train.distributed)  # before anything starts JAX's devices
    exp = exp or prepare(cfg)
    model = build_model(exp)  # a model or loader that cannot be built fails before any write
    loaders = exp.loader("train", training=True), exp.loader("val")
    workdir = _init_workdir(cfg, workdir)
    primary = distributed.is_primary()
    if primary:
        exp.normalizer.to_dataset().to_netcdf(workdir / "normalizer.nc")
    log = JsonLog(workdir / LOG_FILE, loaders[0].batch_size) if primary else None
    if cfg.model.name == "nowcast_gan":  # adversarial training (climml.train.adversarial)
        from climml.train import adversarial

        result = adversarial.fit_gan(
            model,
            *loaders,
            cfg.train,
            adversarial.RainCodec(exp.normalizer, cfg.data.target),
            seed=cfg.seed,
            workdir=workdir,
            progress=cfg.output.progress,
            log=log,
        )
    elif cfg.train.ensemble_members > 1:
        from climml.train import ensemble

        result = ensemble.fit_members(
            model_builder(exp),
            *loaders,
            cfg.train,
            seeds=ensemble.member_seeds(cfg.seed, cfg.train.ensemble_members),
            bootstrap=cfg.train.ensemble_bootstrap,
            workdir=workdir,
            progress=cfg.output.progress,
            log=log,
        )
    else:
        result = fit(
            model,
            *loaders,
            cfg.train,
            seed=cfg.seed,
            workdir=workdir,
            progress=cfg.output.progress,
            log=log,
        )
    if primary:
        write_json(workdir / "history.json", result.history)
    return result


def trained_model(exp: Experiment, workdir: str | Path) -> TrainedModel:
    """The best parameters saved in ``workdir`` wrapped with the baselines' predict interface
    (an ``EnsembleModel`` when ``train.ensemble_members > 1``)."""
    model = build_model(exp)
    if exp.cfg.model.name == "nowcast_gan":  # an ensemble of latent draws
        from climml.train import adversarial

        return adversarial.predictor(exp, model, workdir)
    loader = exp.loader("train")
    members = exp.cfg.train.ensemble_members
    if members > 1:
        from climml.train import ensemble

        result = ensemble.load_members(
            model_builder(exp),
            exp.cfg.train,
            Path(workdir),
            seeds=ensemble.member_seeds(exp.cfg.seed, members),
            steps_per_epoch=len(loader),
            batch_size=loader.batch_size,
        )
        return ensemble.EnsembleModel(model, result)
    result = load_best(
        model,
        exp.cfg.train,
        Path(workdir),
        steps_per_epoch=len(loader),
        batch_size=loader.batch_size,
    )
    return TrainedModel(model, result)


class TrainedModel:
    """The trained model as a ``DifferentiablePredictor``: ``predict(batch) -> (B,
    *output_shape)`` with the trained parameters (jitted once) and ``predict_fn()``."""

    name = "model"

    def __init__(self, model: nnx.Module, result: FitResult):
        from climml.train.steps import graphdefs, make_predict

        self.params, self.rest, self.history = result.params, result.rest, result.history
        self.eval_def = graphdefs(model)[1]
        self._predict = make_predict(self.eval_def)

    @classmethod
    def from_module(cls, model: nnx.Module) -> TrainedModel:
        """Wrap ``model`` with its current parameters (e.g. after ``climml.train.fit``).

        The parameters are a snapshot: training or editing ``model`` afterwards (its variables
        are updated in place) does not change this predictor, hence the clone.
        """
        _, params, rest = nnx.split(nnx.clone(model), nnx.Param, ...)
        return cls(model, FitResult(params, rest, history=[], stopped_early=False))

    def predict(self, batch: Batch) -> np.ndarray:
        return np.asarray(self._predict(self.params, self.rest, batch.x))

    def predict_fn(self):
        """A pure ``f(x) -> prediction`` for explanations and saliency."""
        return lambda x: self._predict(self.params, self.rest, x)


@_native_switch
def evaluate(cfg: Config, workdir: str | Path, exp: Experiment | None = None) -> dict:
    """Score the trained model and baselines on ``cfg.eval.split``; writes metrics.json etc."""
    from climml import tasks
    from climml.tasks.comparison import model_beats

    exp = exp or prepare(cfg)
    workdir = Path(workdir)
    metrics = _finite(tasks.get(cfg.eval.task).evaluate(exp, trained_model(exp, workdir), workdir))
    beats = model_beats(metrics)
    if beats:
        metrics["model_beats"] = beats
    return merge_metrics(workdir, metrics)


def merge_metrics(workdir: Path, new: dict) -> dict:
    """Merge ``new`` into ``workdir/metrics.json`` per predictor (so evaluating again keeps the
    explain stage's importance entries and vice versa); writes and returns the merged dict."""
    path = workdir / "metrics.json"
    merged = json.loads(path.read_text()) if path.is_file() else {}
    for key, values in new.items():
        old = merged.get(key)
        merged[key] = {**old, **values} if isinstance(old, dict) else values
    write_json(path, merged)
    return merged


@_native_switch
def explain(cfg: Config, workdir: str | Path, exp: Experiment | None = None) -> dict:
    """Permutation importance of a trained run's input channels (+ saliency maps if gridded).

    Writes importance.nc/.png (saliency.nc/.png) and importance.json (metrics.json's shape).
    """
    from climml.explain import stage

    stage.check(cfg)
    exp = exp or prepare(cfg)
    workdir = Path(workdir)
    summary = stage.explain_run(exp, trained_model(exp, workdir), workdir)
    write_json(workdir / "importance.json", summary)
    merge_metrics(workdir, summary)
    return summary


@dataclass
class RunResult:
    """What ``run`` produced: the working directory, the metrics and the training history."""

    workdir: Path
    metrics: dict
    history: list[dict]


def run(cfg: Config, workdir: str | Path | None = None) -> RunResult:
    """Train → evaluate (→ explain) → report in ``workdir`` (default: ``output.workdir``).

    Own data: ``cfg.data.source`` may be an ``xr.Dataset`` (``dataclasses.replace`` it in).

    Resumable: re-running continues from the last checkpoint in ``workdir``.
    """
    workdir = Path(workdir or cfg.output.workdir)
    if (processes := distributed.process_count(cfg.train.distributed)) > 1:
        want = "one process for `run` (`train` on every process, then `evaluate` on one)"
        raise ConfigError(expected("train.distributed", want, f"{processes} processes"))
    exp = prepare(cfg)  # all config and data errors surface before anything is written
    if cfg.eval.explain.enabled:
        from climml.explain import stage

        stage.check(cfg)
    result = train(cfg, workdir, exp)
    metrics = evaluate(cfg, workdir, exp)
    if cfg.eval.explain.enabled:
        explain(cfg, workdir, exp)  # merged into metrics.json
        metrics = json.loads((workdir / "metrics.json").read_text())
    if cfg.output.plots:
        from climml.viz.plots import plot_loss_curve

        plot_loss_curve(result.history, path=workdir / "loss_curve.png")
    return RunResult(workdir, metrics, result.history)


# --------------------------------------------------------------------------- files


def _init_workdir(cfg: Config, workdir: str | Path) -> Path:
    """Create ``workdir`` and write ``config.yaml``; refuse a workdir of another experiment.

    The saved config records ``workdir`` as ``output.workdir`` (the directory actually used, which
    ``--workdir`` may have changed) and an in-memory ``data.source`` by its content token.
    """
    workdir = Path(workdir)
    cfg = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, workdir=str(workdir)))
    saved = workdir / "config.yaml"
    if saved.is_file():
        previous = config_mod.load(saved)
        changed = config_mod.differences(previous, cfg)
        if changed:
            raise ConfigError(
                f"{workdir}: holds a run with a different config (differs at {', '.join(changed)});"
                " use another --workdir"
            )
    workdir.mkdir(parents=True, exist_ok=True)
    write_text(saved, config_mod.dump(cfg))
    return workdir


def write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically: a killed job never leaves a truncated file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    """Strict JSON (NaN, e.g. an undefined correlation, becomes null) written atomically."""
    write_text(
        path, json.dumps(_finite(data), indent=2, default=_json_default, allow_nan=False) + "\n"
    )


def _finite(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    if isinstance(data, float) and not np.isfinite(data):
        return None
    return data


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic | jax.Array):
        return np.asarray(value).item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


@_native_switch
def predict(
    cfg: Config, workdir: str | Path, *, split: str = "test", output: str | Path | None = None
) -> Path:
    """Write the trained model's output for ``split``; returns the path written.

    The format follows the suffix of ``output``: ``.nc`` netCDF, ``.zarr`` a zarr store (the
    default, ``WORKDIR/predictions_SPLIT.zarr``); any other is a ``ConfigError`` naming
    ``--output``, raised before any work.
    """
    path = Path(output) if output else Path(workdir) / f"predictions_{split}.zarr"
    writers = {".nc": "to_netcdf", ".zarr": "to_zarr"}
    if path.suffix not in writers:
        raise ConfigError(expected("--output", "a path ending in .nc or .zarr", str(path)))
    exp = prepare(cfg)
    predictions = forecast(trained_model(exp, workdir), exp, split=split)
    if path.suffix == ".zarr":
        predictions.to_zarr(path, mode="w")
    else:
        predictions.to_netcdf(path)
    return path


def forecast(model: nnx.Module | Predictor, exp: Experiment, *, split: str = "test") -> xr.Dataset:
    """The output of ``model`` on ``split`` of a prepared experiment, as an ``xr.Dataset``.

    ``model`` is a trained ``nnx.Module`` (e.g. after ``climml.train.fit``) or a
    ``TrainedModel``. The dataset is in the target's physical units with the input's
    coordinates (``time`` = initialization time, target grid), ``lead`` in time steps and
    ``lead_time`` as a timedelta: over ``lead`` when every initialization has the same
    ``valid_time - time`` (daily data), else over ``(time, lead)`` (calendar months differ in
    length). Exported as ``climml.predict``.
    """
    from climml import tasks

    if isinstance(model, nnx.Module):
        model = TrainedModel.from_module(model)
    return with_lead_time(tasks.get(exp.cfg.eval.task).predict(exp, model, split))


def with_lead_time(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with a timedelta ``lead_time`` coordinate (``valid_time - time``), 1-D over
    ``lead`` when it does not vary with ``time``; unchanged without ``valid_time``."""
    if "valid_time" not in ds.coords or "lead_time" in ds.coords:
        return ds
    delta = ds["valid_time"] - ds["time"]
    if bool((delta == delta.isel(time=0)).all()):
        delta = delta.isel(time=0, drop=True)
    return ds.assign_coords(lead_time=delta.variable)
