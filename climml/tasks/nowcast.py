"""Radar nowcast evaluation: the trained model and the field's baselines on the same windows.

Every predictor forecasts the rain of each evaluation window at each lead; the scores are those
radar nowcasting papers report (``climml.metrics.nowcast``), accumulated batch by batch as
sufficient statistics and formed once at the end:

* ``metrics.json``: ``{predictor: {metric: {lead_minutes: value}}}`` with the scores that
  ``eval.metrics`` asks for (``climml.tasks.metric_specs``): CSI/POD/FAR at each threshold
  (``csi@1``; after max pooling ``csi@1/max4``), FSS (``fss@1/16``), CRPS per pixel and pooled
  (``crps``, ``crps/avg4``, ``crps/max16``; a deterministic forecast's CRPS is its MAE) and,
  for ensembles, ``spread``, ``skill``, ``spread_skill`` and ``rank_histogram`` (the M + 1
  rank frequencies per lead, ties shared among the tied ranks). Leads are keyed in minutes
  (``"30"``), from the data's time step. A bare name takes the defaults of radar nowcasting
  (``DEFAULTS``: thresholds 1, 2, 4, 8 mm/h, pools and FSS scales 1, 4, 16 cells); an entry
  with parameters is scored exactly as written: ``{csi: {thresholds: [2], pool: [1, 4]}}``
  gives ``csi@2`` and ``csi@2/max4``.
* ``spectra.nc``: radially averaged power spectra per predictor and lead, and observed.
* ``predictions.zarr`` (``output.save_predictions``): every forecast in mm/h, dims ``time``
  (initialization), ``lead`` (steps), the grid, and ``member`` for ensembles.
* figures (``output.plots``): ``skill_by_lead.png``, ``spectra.png``, ``example.png``.

Predictors. The trained model (a ``climml.experiment.Predictor``, normalized units, inverted
here) and the ``eval.baselines``: ``persistence`` (Eulerian), ``advection`` (JAX optical flow,
``climml.models.advection``), ``pysteps_flow`` and the ``steps`` ensemble
(``climml.models.pysteps_nowcast``, with the ``[radar]`` extra). A baseline is a
``Nowcaster``: ``forecast(history)`` from the target's last input frames in physical units.
A predictor is deterministic (``members`` None: ``(B, L, H, W)``) or an ensemble
(``members`` an int: ``(B, M, L, H, W)``, member axis second); ensembles get CRPS over their
members, rank histograms and spread/skill, deterministic ones are scored as one member.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import jax
import numpy as np
import xarray as xr

from climml import metrics as cm_metrics
from climml.config import Config
from climml.errors import ConfigError, DataError, expected
from climml.experiment import Experiment, Predictor
from climml.tasks import metric_specs
from climml.tasks.metric_specs import MetricSpec
from climml.types import Batch

BASELINES = ("persistence", "advection", "pysteps_flow", "steps")
CATEGORICAL = ("csi", "pod", "far")
_PER_SAMPLE = "the nowcast scores are accumulated statistics, not per-sample values"
SUPPORTED: dict[str, str | None] = {
    **dict.fromkeys((*CATEGORICAL, "fss", "crps", "spread_skill", "rank_histogram"), None),
    "psd": None,  # the spectra (spectra.nc, spectra.png), written for every run
    **dict.fromkeys(("rmse", "mae"), "CRPS of a deterministic forecast is its MAE: use crps"),
    "bootstrap": _PER_SAMPLE,
}
_THRESHOLDS = (1.0, 2.0, 4.0, 8.0)  # mm/h
_SCALES = (1, 4, 16)  # cells
DEFAULTS = {
    **dict.fromkeys(CATEGORICAL, {"thresholds": _THRESHOLDS, "pool": _SCALES}),
    "fss": {"thresholds": _THRESHOLDS, "scales": _SCALES},
    "crps": {"pool": _SCALES, "pooling": ("avg", "max")},
}
"""Parameters of an ``eval.metrics`` entry given as a bare name (DGMR's scores)."""


class Nowcaster(Protocol):
    """A baseline: ``forecast((B, T, H, W) physical history) -> (B, L, H, W)`` or, with
    ``members`` set, ``(B, members, L, H, W)``."""

    name: str
    members: int | None

    def forecast(self, history: np.ndarray) -> np.ndarray: ...


def check(cfg: Config) -> None:
    """Reject what the nowcast task cannot score, before any training."""
    d, e = cfg.data, cfg.eval
    if d.num_classes is not None:
        raise ConfigError(expected("data.num_classes", "null for task 'nowcast'", d.num_classes))
    if min(d.leads) < 1:
        raise ConfigError(expected("data.leads", "lead steps >= 1 for task 'nowcast'", d.leads))
    specs(cfg)
    frames = e.nowcast.motion_frames
    for name in e.baselines:
        if name not in BASELINES:
            raise ConfigError(expected("eval.baselines", f"names from {list(BASELINES)}", name))
        need = 3 if name == "steps" else frames if name != "persistence" else 1
        if d.input_steps < need:
            want = f">= {need} for baseline {name!r} (eval.nowcast.motion_frames)"
            raise ConfigError(expected("data.input_steps", want, d.input_steps))
        if name in ("pysteps_flow", "steps"):
            from climml.models.pysteps_nowcast import require_pysteps

            require_pysteps(name)  # ConfigError naming the extra to install


def check_data(cfg: Config, raw: xr.Dataset) -> None:
    """The target must be a 2-D field large enough for the largest pooling window."""
    target = raw[cfg.data.target]
    space = [d for d in target.dims if d != "time"]
    smallest = max(2, *settings(specs(cfg))["pools"])
    if len(space) != 2 or min(target.sizes[d] for d in space) < smallest:
        shape = {d: target.sizes[d] for d in space}
        want = f"a (time, y, x) field with y, x >= {smallest} (eval.metrics pool)"
        raise ConfigError(expected(f"data.target {cfg.data.target!r}", want, shape))


def specs(cfg: Config) -> tuple[MetricSpec, ...]:
    """The checked ``eval.metrics`` specs, bare names given the ``DEFAULTS`` parameters."""
    entries = [
        {entry: DEFAULTS[entry]} if isinstance(entry, str) and entry in DEFAULTS else entry
        for entry in cfg.eval.metrics
    ]
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, metrics=tuple(entries)))
    return metric_specs.check(cfg, SUPPORTED, thresholds=CATEGORICAL, pooled=(*CATEGORICAL, "crps"))


def settings(specs: Sequence[MetricSpec]) -> dict[str, Any]:
    """``nowcast_statistics`` settings that score every spec (the statistics always need
    thresholds and an unpooled field: the spectra and the example need no more)."""
    return metric_specs.nowcast_settings(
        specs, thresholds=_THRESHOLDS[:1], pools=(1,), fss_scales=(1,)
    )


def baselines(exp: Experiment) -> list[Nowcaster]:
    """The configured ``eval.baselines`` as nowcasters."""
    from climml.models.advection import Advection, EulerianPersistence

    cfg = exp.cfg
    leads, now = cfg.data.leads, cfg.eval.nowcast
    built: list[Nowcaster] = []
    for name in cfg.eval.baselines:
        if name == "persistence":
            built.append(EulerianPersistence(leads))
        elif name == "advection":
            built.append(Advection(leads, frames=now.motion_frames))
        elif name == "pysteps_flow":
            from climml.models.pysteps_nowcast import PystepsFlow

            built.append(PystepsFlow(leads, frames=now.motion_frames))
        elif name == "steps":
            from climml.models.pysteps_nowcast import Steps

            built.append(
                Steps(
                    leads,
                    members=now.members,
                    seed=cfg.seed,
                    pixel_km=grid_spacing(exp),
                    step_minutes=step_minutes(exp),
                )
            )
    return built


def evaluate(exp: Experiment, model: Predictor, workdir: Path) -> dict:
    """Score ``model`` and the baselines on ``eval.split``; write spectra, predictions, figures."""
    cfg = exp.cfg
    result = run_predictors(exp, predictors(exp, model), keep=cfg.output.save_predictions)
    minutes = [f"{lead * step_minutes(exp):g}" for lead in cfg.data.leads]
    metrics = {name: _table(stats, minutes, specs(cfg)) for name, stats in result.stats.items()}
    spectra = spectra_dataset(result.stats, cfg.data.leads, minutes, length_units(exp))
    spectra.to_netcdf(workdir / "spectra.nc")
    if cfg.output.save_predictions:
        to_dataset(exp, result.forecasts, result.observed, result.anchor).to_zarr(
            workdir / "predictions.zarr", mode="w"
        )
    if cfg.output.plots:
        from climml.viz import nowcast as viz

        units = exp.raw[cfg.data.target].attrs.get("units", "")
        viz.plot_skill_by_lead(metrics, path=workdir / "skill_by_lead.png")
        viz.plot_spectra(spectra, path=workdir / "spectra.png")
        viz.plot_example(result.example, minutes, units=units, path=workdir / "example.png")
    return metrics


def predict(exp: Experiment, model: Predictor, split: str) -> xr.Dataset:
    """The model's forecasts for ``split`` in physical units (no scoring)."""
    only_model = predictors(exp, model, with_baselines=False)
    result = run_predictors(exp, only_model, keep=True, split=split, score=False)
    return to_dataset(exp, result.forecasts, None, result.anchor)


# --------------------------------------------------------------------------- forecasting


class _Run:
    """What ``run_predictors`` gathers: statistics per predictor, optionally every forecast."""

    def __init__(self):
        self.stats: dict[str, cm_metrics.NowcastStats] = {}
        self.forecasts: dict[str, list[np.ndarray]] = {}
        self.observed: list[np.ndarray] = []
        self.anchor: list[np.ndarray] = []
        self.example: dict[str, np.ndarray] = {}  # the rainiest window: observed + forecasts
        self.example_rain = -np.inf


def predictors(
    exp: Experiment, model: Predictor | None = None, *, with_baselines: bool = True
) -> dict[str, tuple[int | None, Callable[[Batch, np.ndarray], np.ndarray]]]:
    """``{name: (members, (batch, rows) -> forecast in physical units)}`` of ``model`` (if
    given) and the configured baselines, as ``run_predictors`` takes them. ``rows`` (bool,
    ``(B,)``) selects the real samples: the model runs on the whole fixed-shape batch, the
    baselines only on those rows (padding rows are constant fields, which STEPS cannot fit)."""
    target = exp.cfg.data.target

    def physical(values) -> np.ndarray:
        return exp.normalizer.invert(np.asarray(values, np.float32), target).astype(np.float32)

    out = {}
    if model is not None:
        members = getattr(model, "members", None)
        out[model.name] = (members, lambda batch, rows: physical(model.predict(batch))[rows])
    if with_baselines:
        for baseline in baselines(exp):
            out[baseline.name] = (
                baseline.members,
                lambda batch, rows, b=baseline: b.forecast(
                    physical(np.asarray(batch.target_history)[rows])
                ),
            )
    return out


def run_predictors(
    exp: Experiment,
    predictors: dict[str, tuple[int | None, Callable[[Batch, np.ndarray], np.ndarray]]],
    *,
    keep: bool,
    split: str | None = None,
    score: bool = True,
) -> _Run:
    """Forecast every window of ``split`` (default ``eval.split``) with every predictor and
    accumulate their ``nowcast_statistics`` (missing observations are NaN, so masked)."""
    cfg = exp.cfg
    scoring = settings(specs(cfg)) | {"spacing": grid_spacing(exp)}
    invert = exp.normalizer.invert
    run = _Run()
    for batch in exp.loader(split or cfg.eval.split).epoch(0):
        keep_rows = np.asarray(batch.weight) > 0
        observed = invert(np.asarray(batch.y, np.float32), cfg.data.target)[keep_rows]
        observed = np.where(np.asarray(batch.y_valid)[keep_rows] > 0, observed, np.nan)
        observed = observed.astype(np.float32)
        rain = np.nansum(observed, axis=tuple(range(1, observed.ndim)))
        rainiest = int(np.argmax(rain))
        new_example = rain[rainiest] > run.example_rain
        if new_example:
            run.example_rain = rain[rainiest]
            run.example = {"observed": observed[rainiest]}
        for name, (members, forecast_fn) in predictors.items():
            forecast = np.asarray(forecast_fn(batch, keep_rows), np.float32)
            _check_shape(name, members, forecast, observed)
            if score:
                stats = cm_metrics.nowcast_statistics(
                    forecast,
                    observed,
                    member_axis=None if members is None else 1,
                    lead_axis=1,
                    **scoring,
                )
                stats = jax.device_get(stats)
                run.stats[name] = stats if name not in run.stats else run.stats[name] + stats
            if keep:
                run.forecasts.setdefault(name, []).append(forecast)
            if new_example:
                run.example[name] = forecast[rainiest]
        run.observed.append(observed)
        run.anchor.append(np.asarray(batch.anchor)[keep_rows])
    if not run.anchor:
        raise DataError(expected(f"{split or cfg.eval.split} windows", "at least one", "none"))
    return run


def _check_shape(name: str, members: int | None, forecast: np.ndarray, observed) -> None:
    want = observed.shape if members is None else (observed.shape[0], members, *observed.shape[1:])
    if forecast.shape != tuple(want):
        raise DataError(expected(f"{name} forecast shape", tuple(want), forecast.shape))


# --------------------------------------------------------------------------- outputs


def _table(stats, minutes: Sequence[str], specs: Sequence[MetricSpec]) -> dict:
    """``{metric key: {lead_minutes: value}}`` of the scores ``specs`` ask for."""
    table = cm_metrics.nowcast_table(stats)
    out = {}
    for key in metric_specs.nowcast_keys(specs, list(table)):
        values = np.asarray(table[key], np.float64)
        out[key] = {m: float(v) for m, v in zip(minutes, values, strict=True)}
    if stats.rank is not None and any(spec.name == "rank_histogram" for spec in specs):
        ranks = np.asarray(stats.rank.frequencies(), np.float64)  # (lead, M + 1)
        out["rank_histogram"] = {m: r.tolist() for m, r in zip(minutes, ranks, strict=True)}
    return out


def spectra_dataset(
    stats: dict, leads: Sequence[int], minutes: Sequence[str], units: str = ""
) -> xr.Dataset:
    """Mean power spectra ``(lead, wavenumber)`` of every predictor and of the observations;
    wavenumbers in cycles per ``units`` of length (the grid's coordinate units)."""
    data, observed = {}, None
    wavenumber = None
    for name, s in stats.items():
        scores = cm_metrics.nowcast_scores(s)
        wavenumber = np.asarray(scores["wavenumber"])
        data[name] = (("lead", "wavenumber"), np.asarray(scores["psd_forecast"]))
        observed = np.asarray(scores["psd_observed"])
    data["observed"] = (("lead", "wavenumber"), observed)
    coords = {
        "lead": np.asarray(leads),
        "lead_minutes": ("lead", np.asarray(minutes, np.float64)),
        "wavenumber": ("wavenumber", wavenumber, {"units": f"1/{units or 'grid spacing'}"}),
    }
    return xr.Dataset(data, coords, attrs={"description": "radially averaged power spectra"})


def to_dataset(
    exp: Experiment,
    forecasts: dict[str, list[np.ndarray]],
    observed: list[np.ndarray] | None,
    anchor: list[np.ndarray],
) -> xr.Dataset:
    """The forecasts (physical units) as a dataset: ``time`` (initialization), ``lead``
    (steps), ``valid_time``, the target's grid, and ``member`` for ensembles."""
    cfg = exp.cfg
    target = exp.raw[cfg.data.target]
    anchors = np.concatenate(anchor)
    leads = np.asarray(cfg.data.leads)
    space = [d for d in target.dims if d != "time"]
    coords: dict[str, Any] = {
        "time": exp.time[anchors],
        "lead": leads,
        "valid_time": (("time", "lead"), exp.time[anchors[:, None] + leads[None, :]]),
        **{d: target[d].values for d in space if d in target.coords},
    }
    attrs = {"units": target.attrs.get("units", "")}
    data = {}
    arrays = dict(forecasts) | ({} if observed is None else {"observed": observed})
    for name, parts in arrays.items():
        values = np.concatenate(parts)
        dims = (
            ("time", "lead", *space)
            if values.ndim == 2 + len(space)
            else ("time", "member", "lead", *space)
        )
        data[name] = (dims, values.astype(np.float32), attrs)
    return xr.Dataset(data, coords, attrs={"description": f"nowcasts of {cfg.data.target}"})


def step_minutes(exp: Experiment) -> float:
    """Minutes of one time step: the smallest positive spacing of the time coordinate (events
    separated by gaps have larger ones)."""
    time = np.asarray(exp.time)
    if time.size < 2 or not np.issubdtype(time.dtype, np.datetime64):
        raise DataError(expected("time coordinate", "datetimes (radar frames)", time.dtype))
    steps = np.diff(time) / np.timedelta64(1, "m")
    return float(steps[steps > 0].min())


def length_units(exp: Experiment) -> str:
    """Units of the grid coordinates (``"km"`` for radar grids), ``""`` when unknown."""
    target = exp.raw[exp.cfg.data.target]
    x = target.dims[-1]
    return str(target[x].attrs.get("units", "")) if x in target.coords else ""


def grid_spacing(exp: Experiment) -> float:
    """Grid spacing of the target in its ``x`` coordinate's units (km for radar grids), 1 if
    the grid has no numeric coordinates."""
    target = exp.raw[exp.cfg.data.target]
    x = target.dims[-1]
    if x in target.coords and target.sizes[x] > 1:
        spacing = float(np.abs(np.diff(np.asarray(target[x].values, np.float64))).mean())
        if np.isfinite(spacing) and spacing > 0:
            return spacing
    return 1.0
