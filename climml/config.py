"""Experiment configuration: YAML → frozen dataclasses, strictly checked.

``load(path, overrides=["train.lr=1e-3"])`` reads the YAML with ``yaml.safe_load`` only, applies
dotted overrides, and converts every section into its dataclass. Unknown or misspelled keys are
rejected with their dotted path and the nearest valid key; values are type checked (an ``int`` is
accepted where a ``float`` is expected, nothing else is converted silently). The ``model`` section
is parsed into the hyperparameter dataclass that the model registry holds for ``model.name``.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from climml.errors import ConfigError, expected


@dataclass(frozen=True)
class NormalizeConfig:
    """How inputs and target are standardized (statistics from the training split only)."""

    dims: tuple[str, ...] = ("time",)  # dims reduced over: ("time",) = per grid point statistics
    climatology: bool = False  # subtract a per-calendar-month mean first (anomalies)


@dataclass(frozen=True)
class CropConfig:
    """Random square crops of the training windows (radar nowcasting; ``climml/data/rain.py``)."""

    size: int | None = None  # pixels per side of the last two spatial dims; None: no crops
    rain_bias: float = 0.0  # fraction of crops drawn in proportion to their wet pixels


@dataclass(frozen=True)
class DaskConfig:
    """Where dask computes the statistics of a run (normalizer, evaluation) and conversions.

    Not part of the experiment: a rescheduled job may use another cluster and still resume.
    """

    # auto: DASK_SCHEDULER_ADDRESS if set, else a LocalCluster for data larger than
    # `local_above_gb`, else threads | threads | local (a LocalCluster) | a scheduler address
    # such as tcp://10.0.0.5:8786 (a cluster from dask-jobqueue, dask-gateway, Kubernetes)
    scheduler: str = "auto"
    n_workers: int | None = None  # LocalCluster workers (None: dask's choice for the machine)
    threads_per_worker: int | None = None
    processes: bool = True  # LocalCluster workers as processes (False: threads of this process)
    memory_limit: str | None = None  # per LocalCluster worker, e.g. "4GiB" (None: dask's share)
    local_above_gb: float = 4.0  # auto: data size from which a LocalCluster is started


@dataclass(frozen=True)
class DataConfig:
    """Where samples come from and how they are cut into windows."""

    # A built-in source name, a path (.zarr, .nc, or a glob of .nc files) or, from Python, an
    # xarray.Dataset (written to config.yaml as a description with a content token).
    source: str = "synthetic.enso"
    source_args: Mapping[str, Any] = field(default_factory=dict)
    inputs: tuple[str, ...] = ("sst", "heat_content")
    target: str = "nino34"
    input_steps: int = 3  # time steps of input per sample
    leads: tuple[int, ...] = (1, 3, 6)  # steps ahead of the last input step
    splits: Mapping[str, tuple[str, str]] = field(
        default_factory=lambda: {
            "train": ("1870-01", "1939-12"),
            "val": ("1940-01", "1954-12"),
            "test": ("1955-01", "1969-12"),
        }
    )
    gap: int = 0  # time steps skipped at the start of each later split
    batch_size: int = 32
    mask_channel: bool = True  # append a 1/0 channel marking valid (non-NaN) input cells
    normalize: NormalizeConfig = NormalizeConfig()
    # none | log | dbr: rain-rate transform before normalizing, inverted after (data/rain.py)
    transform: str = "none"
    transform_threshold: float = 0.1  # mm/h: log(R + it); dbr: rain below it is dry
    crop: CropConfig = CropConfig()  # training windows only
    num_classes: int | None = None  # segmentation / classification targets only
    shuffle: bool = True
    prefetch: int = 2  # batches prepared ahead on a background thread
    dask: DaskConfig = DaskConfig()


@dataclass(frozen=True)
class DistributedConfig:
    """JAX's multi-process runtime (``jax.distributed.initialize``) for training on several
    processes or hosts. Left unset, a run is one process, unless JAX detects a cluster of
    several (Slurm, Open MPI, Cloud TPU pods), whose settings it then takes."""

    coordinator: str | None = None  # "host:port" of process 0, reachable from every process
    num_processes: int | None = None
    process_id: int | None = None  # this process, 0 .. num_processes - 1


@dataclass(frozen=True)
class TrainConfig:
    """Optimizer, loss, schedule, stopping and checkpointing."""

    optimizer: str = "adam"  # adam | adamw | sgd | rmsprop
    lr: float = 1e-3
    schedule: str = "constant"  # constant | cosine | warmup_cosine | exponential
    warmup_steps: int = 0
    decay_rate: float = 0.5  # exponential schedule: factor per `decay_steps`
    decay_steps: int = 1000
    weight_decay: float = 0.0  # adamw only
    momentum: float = 0.9  # sgd / rmsprop
    clip_norm: float | None = None  # clip gradients by global norm (exploding-gradient guard)
    loss: str | Mapping[str, float] = "mse"  # a name, or {name: weight} to combine several
    huber_delta: float = 1.0
    class_weights: tuple[float, ...] | None = None
    epochs: int = 20
    patience: int | None = 5  # early stopping on validation loss; None = never stop early
    checkpoint_every: int = 50  # optimizer steps between checkpoints (also saved each epoch)
    keep_checkpoints: int = 2
    devices: int | None = 1  # data-parallel devices; None = all devices (of every process)
    # float32 | bfloat16: the dtype the train step computes in; parameters, optimizer state and
    # the loss stay float32 (climml.train.steps).
    dtype: str = "float32"
    distributed: DistributedConfig = DistributedConfig()
    # Opt-in C++ LSTM kernel on AVX-512 CPUs (climml.native): faster, numbers differ by ~1e-6
    # from the default XLA path; declined with one warning where the machine cannot build it.
    native_lstm: bool = False
    # > 1: an ensemble of members seeded seed, seed + 1, ... trained in one vmapped step
    # (climml.train.ensemble); forecasts gain a `member` dimension, evaluation adds CRPS,
    # spread/skill and rank histograms.
    ensemble_members: int = 1
    ensemble_bootstrap: bool = False  # each member trains on its own bootstrap resample


@dataclass(frozen=True)
class ExplainConfig:
    """Permutation importance of the inputs on a trained run."""

    enabled: bool = False
    n_repeats: int = 5
    multipass: bool = True
    max_passes: int | None = None
    score: str = "rmse"
    max_samples: int | None = 2000
    n_bootstrap: int = 0  # resamples for confidence intervals on every score (0 = none)


@dataclass(frozen=True)
class NowcastConfig:
    """Predictor settings of task ``nowcast``; its scores, thresholds, pooling windows and FSS
    scales are ``eval.metrics`` entries (``climml.tasks.nowcast``)."""

    members: int = 8  # members of ensemble baselines (steps)
    motion_frames: int = 3  # last input frames the optical-flow baselines fit motion to


@dataclass(frozen=True)
class EvalConfig:
    """What is scored after training, on which split, against which baselines."""

    task: str = "regression"  # regression | segmentation | reconstruction | nowcast
    split: str = "test"
    # regression: persistence, climatology, ar, ar<p>; nowcast: persistence (Eulerian),
    # advection (JAX optical flow), pysteps_flow, steps (the last two need climml[radar])
    baselines: tuple[str, ...] = ("persistence", "climatology")
    # Score names, or {name: {param: value}} for scores with parameters, e.g.
    # [rmse, acc, {csi: {thresholds: [0.5, 1.0]}}, {fss: {thresholds: [1.0], scales: [1, 3]}},
    #  {bootstrap: {n: 200, ci: 0.9}}]; climml.tasks.metric_specs lists every name and parameter.
    metrics: tuple[str | Mapping[str, Any], ...] = ("rmse", "mae", "acc")
    # Latitude weights of gridded scores: cell_area (exact spherical band areas, as
    # WeatherBench 2) | cos (cos(latitude)) | none (every grid point alike).
    area_weighting: str = "cell_area"
    # Regression scores from a zarr store of the forecasts written chunk by chunk, as per-chunk
    # sufficient statistics summed on data.dask's scheduler, ratio last (climml.tasks.
    # out_of_core): true | false | auto (when the split's forecasts exceed memory_budget_gb).
    out_of_core: bool | str = "auto"
    memory_budget_gb: float = 2.0  # out_of_core auto threshold; a chunk's arrays take <= 1/4
    explain: ExplainConfig = ExplainConfig()
    nowcast: NowcastConfig = NowcastConfig()


@dataclass(frozen=True)
class OutputConfig:
    """What a run writes into its working directory."""

    workdir: str = "runs/default"
    save_predictions: bool = True
    plots: bool = True
    progress: bool = True
    # JAX's persistent compilation cache for CLI runs: true = $CLIMML_COMPILATION_CACHE or
    # ~/.cache/climml/jax, a folder path, or false (off). A rescheduled job reuses the compiled
    # steps instead of compiling again.
    compilation_cache: bool | str = True


@dataclass(frozen=True)
class Config:
    """A whole experiment. ``model`` is the registered dataclass of ``model.name``."""

    model: Any
    seed: int = 0
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    output: OutputConfig = OutputConfig()


# --------------------------------------------------------------------------- value ranges


@dataclass(frozen=True)
class Range:
    """The finite numbers from ``low`` to ``high`` (``None``: unbounded), ends open or closed."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, x: float) -> bool:
        if not math.isfinite(x):
            return False
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return False
        return self.high is None or (x < self.high if self.high_open else x <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{self.low}, {self.high}{right}"


_POSITIVE = Range(0, low_open=True)
_FRACTION = Range(0, 1, high_open=True)

# Allowed values of every numeric key (each element of a list, each weight of a mapping; null
# passes where the type allows it). ``model.*`` keys apply to every model family with that field.
# tests/test_config.py fails when a numeric field of a config dataclass has no entry here.
RANGES: dict[str, Range] = {
    "seed": Range(0),
    "data.input_steps": Range(1),
    "data.leads": Range(0),
    "data.gap": Range(0),
    "data.batch_size": Range(1),
    "data.transform_threshold": _POSITIVE,
    "data.crop.size": Range(1),
    "data.crop.rain_bias": Range(0, 1),
    "data.num_classes": Range(2),
    "data.prefetch": Range(0),
    "data.dask.n_workers": Range(1),
    "data.dask.threads_per_worker": Range(1),
    "data.dask.local_above_gb": Range(0),
    "train.lr": _POSITIVE,
    "train.warmup_steps": Range(0),
    "train.decay_rate": Range(0, 1, low_open=True),
    "train.decay_steps": Range(1),
    "train.weight_decay": Range(0),
    "train.momentum": _FRACTION,
    "train.clip_norm": _POSITIVE,
    "train.loss": Range(0),  # the weights of {name: weight}
    "train.huber_delta": _POSITIVE,
    "train.class_weights": Range(0),
    "train.epochs": Range(1),
    "train.patience": Range(0),
    "train.checkpoint_every": Range(1),
    "train.keep_checkpoints": Range(1),
    "train.devices": Range(1),
    "train.ensemble_members": Range(1),
    "train.distributed.num_processes": Range(1),
    "train.distributed.process_id": Range(0),
    "eval.memory_budget_gb": _POSITIVE,
    "eval.explain.n_repeats": Range(1),
    "eval.explain.max_passes": Range(1),
    "eval.explain.max_samples": Range(2),
    "eval.explain.n_bootstrap": Range(0),
    "eval.nowcast.members": Range(2),
    "eval.nowcast.motion_frames": Range(2),
    "model.filters": Range(1),
    "model.kernel_size": Range(1),
    "model.dilation": Range(1),
    "model.pool": Range(1),
    "model.hidden": Range(1),
    "model.dropout": _FRACTION,
    "model.latent_dim": Range(1),
    "model.kl_weight": Range(0),
    "model.depth": Range(1),
    "model.base_filters": Range(1),
    "model.unroll": Range(1),
    "model.base_channels": Range(1),  # nowcast_gan
    "model.latent_channels": Range(1),
    "model.disc_channels": Range(1),
    "model.disc_frames": Range(1),
    "model.disc_crop": Range(16),
    "model.lr_generator": _POSITIVE,
    "model.lr_discriminator": _POSITIVE,
    "model.beta1": Range(0, 1, high_open=True),
    "model.beta2": Range(0, 1, high_open=True),
    "model.disc_steps": Range(1),
    "model.reg_weight": Range(0),
    "model.reg_samples": Range(1),
    "model.crps_weight": Range(0),
    "model.max_weight": Range(1),
}
NON_EMPTY = ("data.inputs", "data.leads")  # lists a run cannot do without
_ABSENT = object()


def check(cfg: Config) -> None:
    """Raise ``ConfigError`` naming the first key whose value is out of range (see ``RANGES``).

    ``load``/``from_dict`` call it; ``climml.pipeline`` calls it again because a config changed
    with ``dataclasses.replace`` bypasses the converter.
    """
    for key, allowed in RANGES.items():
        for where, number in _numbers(key, _lookup(cfg, key)):
            if isinstance(number, bool) or not isinstance(number, int | float):
                raise ConfigError(expected(where, f"a number {allowed}", repr(number)))
            if number not in allowed:
                raise ConfigError(expected(where, str(allowed), number))
    for key in NON_EMPTY:
        if not _lookup(cfg, key):
            raise ConfigError(expected(key, "a non-empty list", "[]"))
    _check_source(cfg.data.source)


def _lookup(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part, _ABSENT)
    return cfg


def _numbers(key: str, value: Any) -> list[tuple[str, Any]]:
    """``(dotted path, value)`` of each number under ``key``; strings and nulls are skipped."""
    if value is _ABSENT or value is None or isinstance(value, str):
        return []
    if isinstance(value, Mapping):
        return [(f"{key}.{k}", v) for k, v in value.items()]
    if isinstance(value, tuple | list):
        return [(f"{key}[{i}]", v) for i, v in enumerate(value)]
    return [(key, value)]


def _check_source(source: Any) -> None:
    import xarray as xr  # deferred: reading a config needs no xarray

    if not isinstance(source, str | xr.Dataset):
        want = "a source name, a path or an xarray.Dataset"
        raise ConfigError(expected("data.source", want, type(source).__name__))


# --------------------------------------------------------------------------- loading


def load(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config, apply ``key.path=value`` overrides, return a checked ``Config``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(expected("config", "an existing YAML file", str(path)))
    try:
        raw = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML ({str(err).splitlines()[0]})") from None
    return from_dict(raw or {}, overrides)


def from_dict(raw: Mapping[str, Any], overrides: Sequence[str] = ()) -> Config:
    """Build a checked ``Config`` from plain data (as ``yaml.safe_load`` returns it)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(expected("config", "a mapping of sections", type(raw).__name__))
    raw = _deep_copy(raw)
    for item in overrides:
        _apply_override(raw, item)
    return _convert_config(raw)


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def _apply_override(raw: dict, item: str) -> None:
    """Set ``a.b.c=value`` in ``raw``; the value is parsed as YAML (``1e-3`` as a float)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(expected("--set", "KEY=VALUE (e.g. train.lr=1e-3)", repr(item)))
    parts = key.strip().split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise ConfigError(expected(f"--set {key}", f"{where} to be a section", repr(child)))
        node = child
    node[parts[-1]] = _parse_scalar(text)


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError:
        return text


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that reads ``1e-3`` as a float: PyYAML follows YAML 1.1, whose float
    pattern needs a dot (``1.0e-3``), so a file's ``lr: 1e-3`` would otherwise be a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _convert_config(raw: dict) -> Config:
    from climml.models import registry  # deferred: importing flax is only needed for models

    raw = dict(raw)
    model_raw = raw.get("model")
    if not isinstance(model_raw, Mapping) or "name" not in model_raw:
        raise ConfigError(expected("model.name", f"one of {registry.names()}", "nothing"))
    # the model section is checked against its family's dataclass; ``Config.model`` is typed
    # ``Any``, so converting the whole config then keeps the converted model as it is
    raw["model"] = _convert(model_raw, registry.config_class(str(model_raw["name"])), "model")
    cfg = _convert(raw, Config, "")
    check(cfg)
    return cfg


def _convert(value: Any, hint: Any, path: str) -> Any:
    """Check ``value`` against type ``hint`` and convert containers; ConfigError on mismatch."""
    if dataclasses.is_dataclass(hint):
        return _convert_dataclass(value, hint, path)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _convert_union(value, args, path)
    if origin is tuple:
        return _convert_tuple(value, args, path)
    if origin in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise ConfigError(expected(path, "a mapping", repr(value)))
        return {str(k): _convert(v, args[1], f"{path}.{k}") for k, v in value.items()}
    return _convert_scalar(value, hint, path)


def _convert_union(value: Any, args: tuple, path: str) -> Any:
    if value is None and type(None) in args:
        return None
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _convert(value, arg, path)
        except ConfigError:
            continue  # try the next member of the union
    names = " or ".join(_type_name(a) for a in args)
    raise ConfigError(expected(path, names, repr(value)))


def _convert_tuple(value: Any, args: tuple, path: str) -> tuple:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        if len(args) == 2 and args[1] is Ellipsis:  # allow a scalar for a one-element list
            value = [value]
        else:
            raise ConfigError(expected(path, "a list", repr(value)))
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise ConfigError(expected(path, f"a list of {len(args)} items", repr(value)))
    pairs = enumerate(zip(value, args, strict=True))
    return tuple(_convert(v, a, f"{path}[{i}]") for i, (v, a) in pairs)


def _convert_scalar(value: Any, hint: type, path: str) -> Any:
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)  # YAML reads dates such as 1950-01 as strings or ints
    if hint is str and isinstance(value, datetime.date):
        return value.isoformat()  # an unquoted 1950-01-01 is a date to YAML
    raise ConfigError(expected(path, _type_name(hint), repr(value)))


# Keys that moved elsewhere: where each went, for the error an old config gets.
MOVED = {
    "eval.nowcast.thresholds": "eval.metrics, e.g. {csi: {thresholds: [1, 2, 4, 8]}} and"
    " {fss: {thresholds: [1, 2, 4, 8], scales: [1, 4, 16]}}",
    "eval.nowcast.pools": "eval.metrics, e.g. {csi: {thresholds: [1], pool: [1, 4, 16]}} and"
    " {crps: {pool: [1, 4, 16], pooling: [avg, max]}}",
    "eval.nowcast.fss_scales": "eval.metrics, e.g. {fss: {thresholds: [1], scales: [1, 4, 16]}}",
}


def _convert_dataclass(value: Any, cls: type, path: str) -> Any:
    if not isinstance(value, Mapping):
        raise ConfigError(expected(path or "config", "a mapping", repr(value)))
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, item in value.items():
        where = f"{path}.{key}" if path else str(key)
        if where in MOVED:
            raise ConfigError(f"{where}: no longer a setting here; moved to {MOVED[where]}")
        if key not in valid:
            near = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else f" (valid keys: {', '.join(valid)})"
            raise ConfigError(f"{where}: unknown key{hint}")
        kwargs[key] = _convert(item, hints[key], where)
    return cls(**kwargs)


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


# --------------------------------------------------------------------------- writing


def to_dict(cfg: Any) -> Any:
    """Plain YAML-able data (tuples → lists) of a config or any of its sections."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if type(cfg).__name__ == "Dataset" and type(cfg).__module__.startswith("xarray"):
        return describe_dataset(cfg)
    if isinstance(cfg, Mapping):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, tuple | list):
        return [to_dict(v) for v in cfg]
    return cfg


IN_MEMORY = "<in-memory xarray.Dataset"


def describe_dataset(ds: Any) -> str:
    """What ``config.yaml`` records for an in-memory ``data.source``: a content token.

    The token is dask's deterministic hash of the values, coordinates and attributes (of the
    graph, for a lazily opened dataset), so resuming a run with different data is refused.
    """
    import uuid

    import dask.base  # deferred: only in-memory sources need it

    try:
        token = dask.base.tokenize(ds, ensure_deterministic=True)
    except RuntimeError:  # e.g. opaque objects in its graph: a fresh token refuses any resume
        token = f"unstable-{uuid.uuid4().hex}"
    return f"{IN_MEMORY}, token {token}>"


def dump(cfg: Config) -> str:
    """The resolved config as YAML text (what a run writes to ``config.yaml``)."""
    data = to_dict(cfg)
    data = {"seed": data.pop("seed"), **data}
    return yaml.safe_dump(data, sort_keys=False)


# Sections that say where and how a run executes, not what it computes: a job resumed on
# another machine or cluster may change them.
NOT_EXPERIMENT = (
    "output",
    "data.dask",
    "train.devices",
    "train.distributed",
    "eval.out_of_core",  # the same scores (to float rounding) from a store
    "eval.memory_budget_gb",
)


def differences(a: Config, b: Config, *, ignore: Sequence[str] = NOT_EXPERIMENT) -> list[str]:
    """Dotted keys whose values differ between two configs (sections in ``ignore`` skipped)."""
    flat_a, flat_b = _flatten(to_dict(a)), _flatten(to_dict(b))
    keys = sorted(set(flat_a) | set(flat_b))
    return [k for k in keys if _kept(k, ignore) and flat_a.get(k) != flat_b.get(k)]


def _kept(key: str, ignore: Sequence[str]) -> bool:
    return not any(key == p or key.startswith(f"{p}.") for p in ignore)


def experiment_hash(cfg: Config) -> str:
    """A short hex digest of what the config computes (``NOT_EXPERIMENT`` sections left out):
    equal for two configs exactly when ``differences`` finds none."""
    import hashlib
    import json

    kept = {k: v for k, v in _flatten(to_dict(cfg)).items() if _kept(k, NOT_EXPERIMENT)}
    text = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, Mapping):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out
