"""``eval.metrics``: score names and parameters parsed into typed specs, strictly checked.

Each entry is a name, or a one-key mapping ``{name: {parameter: value}}``::

    eval:
      metrics: [rmse, acc, {csi: {thresholds: [0.5, 1.0]}},
                {fss: {thresholds: [1.0], scales: [1, 3]}}, {bootstrap: {n: 200, ci: 0.9}}]

Names and parameters (``PARAMS``; which task scores which is in each task's ``SUPPORTED``):

* ``rmse``, ``mae``, ``bias``, ``correlation``; ``acc`` (``centered: false``)
* ``csi``, ``pod``, ``far``, ``pofd``, ``ets``, ``hss``, ``frequency_bias`` of the event
  ``x op threshold``: ``thresholds`` (required), ``op`` (``>=``, ``>``, ``<=``, ``<``),
  ``pool``: max-pooling window sides in cells (``[1, 4, 16]``, DGMR's CSI; 1 = unpooled;
  tasks that pool only, see ``nowcast_settings``)
* ``auc``: ROC area of the forecast as a score for the event ``observed op threshold``
  (``thresholds``, ``op``); in segmentation one-vs-rest per class from the class probabilities
* ``brier``: Brier score of the class probabilities (segmentation)
* ``crps`` (``fair``): ensemble CRPS, for ensembles (``train.ensemble_members > 1``; the
  regression task then also reports spread, spread/skill and rank histograms);
  ``pool`` (window sides in cells) and ``pooling`` (``avg``, ``max``): CRPS of pooled fields
  (Ravuri et al. 2021: ``{crps: {pool: [1, 4, 16], pooling: [avg, max]}}``)
* ``fss``: fractions skill score, ``thresholds`` and neighbourhood ``scales`` (cells), ``op``
* ``rank_histogram``, ``spread_skill`` (ensembles), ``psd`` (radially averaged power spectra)
* ``iou``, ``mean_iou``, ``precision``, ``recall``, ``accuracy``, ``confusion_matrix``
* ``bootstrap``: percentile intervals of every other score: ``n`` resamples of the evaluation
  samples (``block`` consecutive ones at a time), central interval ``ci``, ``seed`` (null: the
  config's seed; every predictor gets the same resamples)

Result keys in ``metrics.json``: the name (``rmse``), ``<name>@<threshold>`` (``csi@0.5``),
``fss@<threshold>/<scale>`` (``fss@1/3``), and with ``bootstrap`` the interval ends
``<key>:p<percentile>`` (``rmse:p5``, ``rmse:p95`` for ``ci: 0.9``).

The tasks turn specs into ``Score`` functions (pure jnp, so that they can be bootstrapped) and
evaluate them with a ``Scorer``; ``grid_weights`` gives the ``eval.area_weighting`` weights.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from climml.config import _convert_dataclass
from climml.errors import ConfigError, expected
from climml.metrics.bootstrap import bootstrap
from climml.metrics.categorical import COMPARISONS
from climml.metrics.pooling import POOLINGS
from climml.metrics.xr import WEIGHTINGS, latitude_dim, latitude_weights


@dataclass(frozen=True)
class NoParams:
    """A score without parameters."""


@dataclass(frozen=True)
class AccParams:
    centered: bool = False  # subtract the mean anomaly first (the WMO "centred" ACC)


@dataclass(frozen=True)
class ThresholdParams:
    thresholds: tuple[float, ...] = ()  # events x op threshold, in the target's units
    op: str = ">="
    pool: tuple[int, ...] = (1,)  # max-pooling window sides in cells (1: unpooled)


@dataclass(frozen=True)
class FssParams:
    thresholds: tuple[float, ...] = ()
    scales: tuple[int, ...] = (1,)  # neighbourhood sizes in grid cells
    op: str = ">="


@dataclass(frozen=True)
class CrpsParams:
    fair: bool = False  # the fair (ensemble-size adjusted) estimator
    pool: tuple[int, ...] = (1,)  # pooling window sides in cells (1: per pixel)
    pooling: tuple[str, ...] = ("avg",)  # avg and/or max pooling


@dataclass(frozen=True)
class BootstrapParams:
    n: int = 1000  # resamples
    ci: float = 0.9  # central interval: percentiles 100 (1 - ci) / 2 and 100 (1 + ci) / 2
    block: int = 1  # moving-block length in samples (> 1 keeps autocorrelation)
    seed: int | None = None  # None: the config's seed

    def percentiles(self) -> tuple[float, float]:
        return 50 * (1 - self.ci), 50 * (1 + self.ci)


CATEGORICAL = ("csi", "pod", "far", "pofd", "ets", "hss", "frequency_bias")
PARAMS: dict[str, type] = {
    "rmse": NoParams,
    "mae": NoParams,
    "bias": NoParams,
    "correlation": NoParams,
    "acc": AccParams,
    **{name: ThresholdParams for name in CATEGORICAL},
    "auc": ThresholdParams,
    "brier": NoParams,
    "crps": CrpsParams,
    "fss": FssParams,
    "rank_histogram": NoParams,
    "spread_skill": NoParams,
    "psd": NoParams,
    "iou": NoParams,
    "mean_iou": NoParams,
    "precision": NoParams,
    "recall": NoParams,
    "accuracy": NoParams,
    "confusion_matrix": NoParams,
    "bootstrap": BootstrapParams,
}


@dataclass(frozen=True)
class MetricSpec:
    """One ``eval.metrics`` entry: its name, typed parameters and config path."""

    name: str
    params: Any
    path: str  # e.g. "eval.metrics[2]", for errors raised later


def parse(entries: Sequence[Any], path: str = "eval.metrics") -> tuple[MetricSpec, ...]:
    """Typed specs of ``eval.metrics``; ConfigError naming the entry's path on any problem."""
    specs = []
    for i, entry in enumerate(entries):
        where = f"{path}[{i}]"
        if isinstance(entry, Mapping):
            if len(entry) != 1:
                want = "a name or {name: {parameter: value}}"
                raise ConfigError(expected(where, want, f"{len(entry)} keys {list(entry)}"))
            ((name, raw),) = entry.items()
        else:
            name, raw = entry, None
        name = str(name)
        if name not in PARAMS:
            near = difflib.get_close_matches(name, list(PARAMS), n=1)
            hint = f"did you mean '{near[0]}'?" if near else f"names: {', '.join(PARAMS)}"
            raise ConfigError(f"{where}: unknown metric {name!r} ({hint})")
        params = _convert_dataclass({} if raw is None else raw, PARAMS[name], f"{where}.{name}")
        _check_values(params, f"{where}.{name}")
        if any(s.name == name for s in specs):
            raise ConfigError(f"{where}: {name!r} is listed twice")
        specs.append(MetricSpec(name, params, where))
    return tuple(specs)


def _check_values(params: Any, where: str) -> None:
    """Value checks the type converter cannot do (ranges, choices)."""
    if isinstance(params, ThresholdParams | FssParams):
        if params.op not in COMPARISONS:
            raise ConfigError(expected(f"{where}.op", f"one of {list(COMPARISONS)}", params.op))
        if not all(math.isfinite(t) for t in params.thresholds):
            raise ConfigError(expected(f"{where}.thresholds", "finite numbers", params.thresholds))
    if isinstance(params, ThresholdParams | CrpsParams):
        if not params.pool or min(params.pool) < 1:
            raise ConfigError(expected(f"{where}.pool", "positive ints", list(params.pool)))
    if isinstance(params, CrpsParams):
        bad = [p for p in params.pooling if p not in POOLINGS]
        if not params.pooling or bad:
            want = f"one or more of {list(POOLINGS)}"
            raise ConfigError(expected(f"{where}.pooling", want, list(params.pooling)))
    if isinstance(params, FssParams):
        if not params.thresholds:
            raise ConfigError(expected(f"{where}.thresholds", "a non-empty list", "[]"))
        if not params.scales or min(params.scales) < 1:
            raise ConfigError(expected(f"{where}.scales", "positive ints", list(params.scales)))
    if isinstance(params, BootstrapParams):
        if params.n < 1:
            raise ConfigError(expected(f"{where}.n", ">= 1", params.n))
        if not 0 < params.ci < 1:
            raise ConfigError(expected(f"{where}.ci", "in (0, 1)", params.ci))
        if params.block < 1:
            raise ConfigError(expected(f"{where}.block", ">= 1", params.block))


def check(
    cfg: Any,
    supported: Mapping[str, str | None],
    *,
    thresholds: Sequence[str] = (),
    pooled: Sequence[str] = (),
) -> tuple[MetricSpec, ...]:
    """Parse ``cfg.eval.metrics`` for a task and reject what the task cannot score.

    ``supported`` maps each metric name to None (scored) or the reason it does not apply.
    Names missing from ``supported`` do not apply to the task either. Scores named in
    ``thresholds`` need at least one threshold; other scores of the task take none. Only
    scores named in ``pooled`` take a ``pool`` other than ``[1]`` (or a CRPS ``pooling``
    other than ``[avg]``).
    """
    if cfg.eval.area_weighting not in WEIGHTINGS:
        want = f"one of {list(WEIGHTINGS)}"
        raise ConfigError(expected("eval.area_weighting", want, repr(cfg.eval.area_weighting)))
    specs = parse(cfg.eval.metrics)
    scored = [n for n, why in supported.items() if why is None]
    for spec in specs:
        why = supported.get(spec.name, "")
        if why is not None:
            reason = f" ({why})" if why else ""
            raise ConfigError(
                f"{spec.path}: {spec.name!r} does not apply to task {cfg.eval.task!r}{reason};"
                f" it scores {scored}"
            )
        params = spec.params
        if isinstance(params, ThresholdParams):
            where = f"{spec.path}.{spec.name}.thresholds"
            if spec.name in thresholds and not params.thresholds:
                raise ConfigError(expected(where, "a non-empty list", "[]"))
            if spec.name not in thresholds and params.thresholds:
                want = f"none for task {cfg.eval.task!r} (its events are the classes)"
                raise ConfigError(expected(where, want, list(params.thresholds)))
        unpooled = {"pool": (1,), "pooling": ("avg",)}
        for field, plain in unpooled.items():
            value = getattr(params, field, plain)
            if spec.name not in pooled and value != plain:
                where = f"{spec.path}.{spec.name}.{field}"
                want = f"{list(plain)}: task {cfg.eval.task!r} does not pool fields"
                raise ConfigError(expected(where, want, list(value)))
    return specs


def nowcast_settings(specs: Sequence[MetricSpec], **defaults: Any) -> dict[str, Any]:
    """``climml.metrics.nowcast_statistics`` settings that score every spec of ``specs``.

    Thresholds are those of the categorical scores and ``fss`` together, pools those of the
    categorical scores and ``crps``, FSS scales those of ``fss``; ``defaults`` (keyword
    arguments of ``nowcast_statistics``) fill what no spec sets. The statistics then hold a
    superset of the scores asked for: pick their ``nowcast_table`` keys with ``nowcast_keys``.
    """
    thresholds: set[float] = set()
    pools: set[int] = set()
    scales: set[int] = set()
    ops = set()
    for spec in specs:
        params = spec.params
        if isinstance(params, ThresholdParams | FssParams):
            thresholds.update(params.thresholds)
            ops.add(params.op)
        if isinstance(params, ThresholdParams | CrpsParams):
            pools.update(params.pool)
        if isinstance(params, FssParams):
            scales.update(params.scales)
    if len(ops) > 1:
        want = "one event comparison op for every nowcast score"
        raise ConfigError(expected("eval.metrics op", want, sorted(ops)))
    settings = dict(defaults)
    for key, values in (("thresholds", thresholds), ("pools", pools), ("fss_scales", scales)):
        if values:
            settings[key] = tuple(sorted(values))
    if ops:
        settings["op"] = ops.pop()
    return settings


def nowcast_keys(specs: Sequence[MetricSpec], table_keys: Sequence[str]) -> list[str]:
    """The ``climml.metrics.nowcast_table`` keys that ``specs`` ask for, in table order.

    ``{csi: {thresholds: [1], pool: [1, 4]}}`` selects ``csi@1`` and ``csi@1/max4``;
    ``{fss: {thresholds: [1], scales: [4]}}`` selects ``fss@1/4``; ``{crps: {pool: [1, 4],
    pooling: [avg, max]}}`` selects ``crps``, ``crps/avg4`` and ``crps/max4``;
    ``spread_skill`` selects ``spread``, ``skill`` and ``spread_skill``.
    """
    wanted: set[str] = set()
    for spec in specs:
        params, name = spec.params, spec.name
        if isinstance(params, ThresholdParams):
            for t in params.thresholds:
                for size in params.pool:
                    wanted.add(threshold_key(name, t) + ("" if size == 1 else f"/max{size}"))
        elif isinstance(params, FssParams):
            wanted.update(f"fss@{t:g}/{s}" for t in params.thresholds for s in params.scales)
        elif isinstance(params, CrpsParams):
            for size in params.pool:
                if size == 1:
                    wanted.add("crps")
                else:
                    wanted.update(f"crps/{kind}{size}" for kind in params.pooling)
        elif name == "spread_skill":
            wanted.update(("spread", "skill", "spread_skill"))
    return [key for key in table_keys if key in wanted]


def threshold_key(name: str, threshold: float) -> str:
    """``csi@0.5``: the metrics.json key of a score at a threshold."""
    return f"{name}@{threshold:g}"


class Score(NamedTuple):
    """``fn(*arrays[inputs]) -> (len(keys),)`` jnp vector, a pure function of its arrays (so
    that it can be bootstrapped); ``keys`` are (metric key, inner key) pairs."""

    keys: list[tuple[str, str]]
    fn: Callable[..., Any]
    inputs: str  # which entry of ``evaluate``'s ``arrays`` the function reads


class Scorer:
    """Evaluates ``scores`` (with bootstrap intervals when ``specs`` hold a ``bootstrap``
    entry) for one predictor after another.

    The scores reading the same arrays are fused into one jitted function, compiled once and
    reused for every predictor of the same shapes; the bootstrap draws the same resamples for
    every predictor (paired intervals).
    """

    def __init__(self, scores: Sequence[Score], specs: Sequence[MetricSpec], seed: int):
        self.scores = list(scores)
        self.groups: dict[str, list[Score]] = {}
        for score in scores:
            self.groups.setdefault(score.inputs, []).append(score)
        self.boot = next((s.params for s in specs if s.name == "bootstrap"), None)
        self.seed = seed if self.boot is None or self.boot.seed is None else self.boot.seed
        self._compiled: dict[tuple[str, int], tuple[Callable, Callable | None]] = {}

    def __call__(self, arrays: Mapping[str, Sequence[np.ndarray]]) -> dict[str, dict[str, float]]:
        """``{metric key: {inner key: value}}`` of the scores on ``arrays`` (sample axis first;
        ``arrays[kind]`` holds the arrays that the scores with ``inputs == kind`` read), each
        followed by its interval ends ``<key>:p<percentile>`` when bootstrapped."""
        values: dict[tuple[str, str], float] = {}
        for kind, group in self.groups.items():
            inputs = tuple(jnp.asarray(a) for a in arrays[kind])
            point, interval = self._functions(kind, len(inputs[0]))
            keys = [key for score in group for key in score.keys]
            values.update(zip(keys, np.asarray(point(*inputs), np.float64).tolist(), strict=True))
            if interval is not None:
                bounds = np.asarray(interval(jax.random.key(self.seed), *inputs), np.float64)
                for pct, row in zip(self.boot.percentiles(), bounds, strict=True):
                    ends = [(f"{metric}:p{pct:g}", inner) for metric, inner in keys]
                    values.update(zip(ends, row.tolist(), strict=True))
        out: dict[str, dict[str, float]] = {}
        suffixes = [""] + [f":p{pct:g}" for pct in (self.boot.percentiles() if self.boot else ())]
        for score in self.scores:
            for metric, inner in score.keys:
                for suffix in suffixes:
                    out.setdefault(metric + suffix, {})[inner] = values[metric + suffix, inner]
        return out

    def _functions(self, kind: str, length: int) -> tuple[Callable, Callable | None]:
        if (kind, length) not in self._compiled:
            group = self.groups[kind]

            def fused(*arrays):
                return jnp.concatenate([jnp.ravel(score.fn(*arrays)) for score in group])

            interval = None
            if self.boot is not None:
                boot = self.boot

                def interval(key, *arrays):
                    return bootstrap(
                        fused,
                        *arrays,
                        n=boot.n,
                        key=key,
                        block=min(boot.block, length),
                        percentiles=boot.percentiles(),
                        batch_size=min(boot.n, 32),  # at most 32 resampled copies at once
                    )

                interval = jax.jit(interval)
            self._compiled[kind, length] = (jax.jit(fused), interval)
        return self._compiled[kind, length]


def grid_weights(cfg: Any, target: xr.DataArray) -> np.ndarray | None:
    """``eval.area_weighting`` latitude weights shaped like one sample of ``target``
    (its dims other than ``time``, size 1 except along latitude); None for equal weights.

    ConfigError when a gridded target has no ``lat``/``latitude`` dimension to weight by.
    """
    kind = cfg.eval.area_weighting
    space = [d for d in target.dims if d != "time"]
    if kind == "none" or not space:
        return None
    lat = latitude_dim(target)
    if lat is None:
        want = f"'none' for a target without a lat/latitude dimension (dims {space})"
        raise ConfigError(expected("eval.area_weighting", want, repr(kind)))
    weights = latitude_weights(target, kind=kind).values
    return weights.reshape([target.sizes[d] if d == lat else 1 for d in space])
