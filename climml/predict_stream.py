"""Streaming prediction: a trained run over an input store larger than memory, chunk by chunk.

``climml predict CONFIG --input X.zarr --output Y.zarr`` (``predict_store``) forecasts from
every complete input window of ``X`` (a zarr store, netCDF file or glob holding the config's
input variables on the training grid) and writes ``Y.zarr`` in the layout of ``climml
predict``: variable ``model`` over ``(time, lead, *target dims)`` in the target's physical
units (task ``segmentation``: int8 class masks, the argmax of the logits, with the target's CF
flags), ``time`` the initialization (last input) time, ``valid_time``/``lead_time``
coordinates, and attributes naming the model, the experiment's config hash and the climml
version. Tasks ``reconstruction`` and ``nowcast`` are not streamed (``UNSTREAMED`` says why; a
``ConfigError``).

Memory stays bounded by the chunk, not the input: the output time axis is cut into chunks of
``chunk_steps`` initializations; for each, the ``WindowLoader`` reads only the input steps its
windows touch (the ``input_steps - 1`` before the chunk included), the model predicts batch by
batch, and the chunk is written into its own region of the zarr store. After each write the
chunk's number is recorded in ``Y.zarr/climml_progress.json``, so a killed job re-run with the
same command continues with the first unfinished chunk, and a finished one does nothing.

The last initializations forecast beyond the end of the input (the point of running a model on
the latest data); their valid times follow the input's time step when pandas can infer it
(``pd.infer_freq``), otherwise only initializations whose valid times lie inside the input are
forecast.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

import climml
from climml import config as config_mod
from climml.config import Config
from climml.data.loader import WindowLoader
from climml.data.normalize import Normalizer
from climml.data.open import conform, open_dataset
from climml.data.sources import load_source
from climml.errors import ConfigError, DataError, expected

# what --input streams: regression forecasts in the target's units, segmentation class masks
STREAMED = ("regression", "segmentation")
UNSTREAMED = {
    "reconstruction": "an autoencoder's output is its input: use `climml predict --split`",
    "nowcast": "nowcasts need their baselines' optical flow over each event: use --split",
}
PROGRESS_FILE = "climml_progress.json"  # {"done": [chunk numbers]} inside the output store
CHUNK_BYTES = 32 * 2**20  # default input bytes per chunk


@dataclass(frozen=True)
class StreamResult:
    """What ``predict_store`` did: the store, its chunks, and how many this call computed."""

    path: Path
    chunks: int
    computed: int


def predict_store(
    cfg: Config,
    workdir: str | Path,
    input: str | Path,
    output: str | Path,
    *,
    chunk_steps: int | None = None,
    force: bool = False,
) -> StreamResult:
    """Forecast every complete input window of ``input`` with the run in ``workdir``, writing
    ``output`` (a ``.zarr`` store) chunk by chunk; resumable (see the module docstring).

    chunk_steps: initializations per chunk (and per zarr chunk along ``time``); default about
        ``CHUNK_BYTES`` of input per chunk, a multiple of ``data.batch_size``.
    force: overwrite an ``output`` written for another input, config or chunking, or not by
        climml at all (refused otherwise, with a ``ConfigError``).
    """
    from climml import tasks

    output, workdir = Path(output), Path(workdir)
    if output.suffix != ".zarr":
        raise ConfigError(expected("--output", "a path ending in .zarr (streamed output)", output))
    if cfg.eval.task not in STREAMED:
        why = "; ".join(f"{task}: {reason}" for task, reason in UNSTREAMED.items())
        want = f"one of {list(STREAMED)} for --input ({why})"
        raise ConfigError(expected("eval.task", want, repr(cfg.eval.task)))
    tasks.get(cfg.eval.task).check(cfg)
    stream = _Stream(cfg, workdir, input, chunk_steps)
    fingerprint = stream.fingerprint()
    done = _resume(output, fingerprint, force)
    model = None

    def chunk(k: int) -> xr.Dataset:
        nonlocal model
        model = model or stream.model()  # loaded only when a chunk is left to compute
        return stream.chunk(model, k)

    regions = [stream.region(k) for k in range(stream.n_chunks)]
    computed = write_chunks(output, stream.template(fingerprint), chunk, regions, done=done)
    return StreamResult(output, stream.n_chunks, computed)


def write_chunks(
    output: Path,
    template: xr.Dataset,
    chunk: Callable[[int], xr.Dataset],
    regions: Sequence[Mapping[str, slice]],
    *,
    done: set[int] | None = None,
) -> int:
    """Write ``chunk(k)`` into ``regions[k]`` of the zarr store ``output`` for every chunk not
    in ``done``, recording each finished chunk in ``output/climml_progress.json``; returns how
    many were computed.

    ``done=None`` starts the store: ``template`` (dask-backed variables, coordinates,
    attributes) is written without its data first. ``chunk(k)`` returns the chunk's data
    variables only (no coordinates: the template holds them). Memory is that of one chunk.
    """
    if done is None:
        template.to_zarr(output, mode="w", compute=False)
        done = set()
        _write_progress(output, done)
    todo = [k for k in range(len(regions)) if k not in done]
    for k in todo:
        chunk(k).to_zarr(output, region=dict(regions[k]))
        done.add(k)
        _write_progress(output, done)  # only after the chunk's data is in the store
    return len(todo)


class _Stream:
    """The geometry of one streamed prediction: input, anchors, chunks, output coordinates."""

    def __init__(self, cfg: Config, workdir: Path, input: str | Path, chunk_steps: int | None):
        d = cfg.data
        self.cfg, self.workdir, self.input = cfg, workdir, str(input)
        self.classes = d.num_classes if cfg.eval.task == "segmentation" else None
        path = workdir / "normalizer.nc"
        if not path.is_file():
            want = "a trained run (run `climml train` first)"
            raise ConfigError(expected(str(workdir), want, "no normalizer.nc"))
        with xr.open_dataset(path) as saved:
            self.norm = Normalizer.from_dataset(saved.load())
        saved_cfg = workdir / "config.yaml"
        if saved_cfg.is_file():
            changed = config_mod.differences(config_mod.load(saved_cfg), cfg)
            if changed:
                found = f"a run of another config in {workdir} (differs at {', '.join(changed)})"
                raise ConfigError(expected("config", "the config of the trained run", found))
        self.inputs = list(dict.fromkeys(d.inputs))
        self.reference = conform(
            load_source(d.source, **dict(d.source_args)), [*self.inputs, d.target]
        )
        self.source = source = open_dataset(input, variables=self.inputs, dims=("time",))
        self._check_grid(source)
        self.target_template = self.reference[d.target].isel(time=0, drop=True)
        self.time = source.indexes["time"]
        self.anchors, self.valid_time = _anchors(self.time, d.input_steps, d.leads)
        if chunk_steps is None:
            per_step = sum(int(np.prod(source[v].shape[1:])) * 4 for v in self.inputs)
            batches = max(1, CHUNK_BYTES // max(per_step, 1) // d.batch_size)
            chunk_steps = batches * d.batch_size
        if not isinstance(chunk_steps, int) or isinstance(chunk_steps, bool) or chunk_steps < 1:
            raise ConfigError(expected("--chunk-steps", "an integer >= 1", repr(chunk_steps)))
        self.chunk_steps = chunk_steps
        self.n_chunks = -(-len(self.anchors) // chunk_steps)

    def _check_grid(self, source: xr.Dataset) -> None:
        """The input must be on the grid the model was trained on (same non-time coords)."""
        for name in self.inputs:
            ref, got = self.reference[name], source[name]
            ref_dims = {k: v for k, v in ref.sizes.items() if k != "time"}
            got_dims = {k: v for k, v in got.sizes.items() if k != "time"}
            same = ref_dims == got_dims and all(
                np.array_equal(ref[c].values, got[c].values)
                for c in ref_dims
                if c in ref.coords and c in got.coords
            )
            if not same:
                want = f"{name} on the training grid {ref_dims}"
                raise DataError(expected("--input", want, f"{got_dims} in {self.input}"))

    def fingerprint(self) -> dict:
        """What the store's attributes record; a resumed store must match it exactly."""
        return {
            "model": str(self.cfg.model.name),
            "config_hash": config_mod.experiment_hash(self.cfg),
            "climml_version": climml.__version__,
            "input": str(Path(self.input).absolute()),
            "input_time": f"{self.time[0]} .. {self.time[-1]} ({len(self.time)} steps)",
            "chunk_steps": int(self.chunk_steps),
        }

    def template(self, attrs: dict) -> xr.Dataset:
        """The output store without its data (dask zeros): coordinates and attributes."""
        from climml.pipeline import with_lead_time

        d = self.cfg.data
        space = [str(x) for x in self.target_template.dims]
        shape = (len(self.anchors), len(d.leads), *self.target_template.shape)
        chunks = (self.chunk_steps, len(d.leads), *self.target_template.shape)
        dtype = np.float32 if self.classes is None else np.int8
        data = da.zeros(shape, chunks=chunks, dtype=dtype)
        target = self.reference[d.target].attrs
        if self.classes is None:
            what, var_attrs = "forecasts", {"units": target.get("units", "")}
        else:  # as segmentation.to_dataset: the classes' CF flags
            flags = ("flag_values", "flag_meanings")
            what, var_attrs = "class masks", {k: v for k, v in target.items() if k in flags}
        ds = xr.Dataset(
            {"model": (("time", "lead", *space), data, var_attrs)},
            coords=self._coords(),
            attrs={"description": f"{what} of {d.target}", "target": d.target, **attrs},
        )
        return with_lead_time(ds)

    def _coords(self) -> dict:
        template = self.target_template
        return {
            "time": self.time[self.anchors],
            "lead": np.asarray(self.cfg.data.leads),
            "valid_time": (("time", "lead"), self.valid_time),
            **{c: template[c].values for c in template.dims if c in template.coords},
        }

    def rows(self, k: int) -> slice:
        return slice(k * self.chunk_steps, min((k + 1) * self.chunk_steps, len(self.anchors)))

    def region(self, k: int) -> dict[str, slice]:
        return {"time": self.rows(k), "lead": slice(None)} | {
            str(d): slice(None) for d in self.target_template.dims
        }

    def model(self):
        """The trained run's best parameters as a ``TrainedModel``."""
        from flax import nnx

        from climml import models
        from climml.pipeline import TrainedModel
        from climml.train.loop import load_best
        from climml.types import IOSpec

        d = self.cfg.data
        probe = self._loader(self._window(0, d.input_steps), np.array([d.input_steps - 1]))
        output = (len(d.leads), *self.target_template.shape)
        spec = IOSpec(probe.spec.input_shape, output, self.classes)
        seed = self.cfg.seed
        module = models.build(self.cfg.model, spec, nnx.Rngs(params=seed, dropout=seed + 1))
        # steps_per_epoch only sizes the learning-rate schedule, which restoring does not use
        result = load_best(
            module, self.cfg.train, self.workdir, steps_per_epoch=1, batch_size=d.batch_size
        )
        return TrainedModel(module, result)

    def _window(self, lo: int, hi: int) -> xr.Dataset:
        """Input steps ``lo .. hi - 1`` read (one read per variable) and normalized in memory,
        with an all-zero target when the target is no input: the loader needs one, the
        forecasts never read it."""
        window = self.norm.apply(self.source.isel(time=slice(lo, hi)).load())
        target = self.cfg.data.target
        if target not in window:
            template = self.target_template
            zeros = np.zeros((hi - lo, *template.shape), np.float32)
            coords = {c: template[c].values for c in template.dims if c in template.coords}
            window[target] = xr.DataArray(
                zeros, dims=("time", *template.dims), coords={"time": window["time"], **coords}
            )
        return window

    def _loader(self, window: xr.Dataset, anchors: np.ndarray) -> WindowLoader:
        d = self.cfg.data
        return WindowLoader(
            window,
            inputs=self.inputs,
            target=d.target,
            input_steps=d.input_steps,
            leads=[0],  # the forecasts' valid times may lie beyond the input
            anchors=anchors,
            batch_size=d.batch_size,
            mask_channel=d.mask_channel,
            prefetch=0,  # the window is in memory already
        )

    def chunk(self, model, k: int) -> xr.Dataset:
        """Chunk ``k``'s forecasts in physical units (segmentation: int8 class masks, the
        argmax of the logits), ready for its region of the store."""
        rows = self.rows(k)
        anchors = self.anchors[rows]
        lo = int(anchors[0]) - self.cfg.data.input_steps + 1
        loader = self._loader(self._window(lo, int(anchors[-1]) + 1), anchors - lo)
        parts = []
        for batch in loader.epoch(0):
            keep = np.asarray(batch.weight) > 0
            parts.append(model.predict(batch)[keep])
        dims = ("time", "lead", *map(str, self.target_template.dims))
        if self.classes is not None:  # (N, L, *target, K) logits
            masks = np.argmax(np.concatenate(parts), axis=-1).astype(np.int8)
            return xr.Dataset({"model": (dims, masks)})
        normalized = np.concatenate(parts)  # (N, L, *target)
        valid_time = self.valid_time[rows]
        target = self.cfg.data.target
        physical = np.stack(
            [
                self.norm.invert(normalized[:, i], target, time=valid_time[:, i])
                if target in self.norm.variables
                else normalized[:, i]
                for i in range(normalized.shape[1])
            ],
            axis=1,
        )
        return xr.Dataset({"model": (dims, physical.astype(np.float32))})


def _anchors(time: pd.Index, input_steps: int, leads) -> tuple[np.ndarray, np.ndarray]:
    """Initializations (every complete input window) and their ``(N, L)`` valid times."""
    n, leads = len(time), np.asarray(leads)
    freq = None
    if n >= 3:
        with pd.option_context("future.infer_freq_returns_offset", True):  # an offset, no warning
            freq = pd.infer_freq(time)
    if freq is not None:
        extended = pd.date_range(time[0], periods=n + int(leads.max()), freq=freq)
        last = n - 1
    else:
        extended = time
        last = n - 1 - int(leads.max())
    anchors = np.arange(input_steps - 1, last + 1)
    if anchors.size == 0:
        want = f"at least {input_steps + (0 if freq else int(leads.max()))} time steps"
        raise DataError(expected("--input", want, f"{n}"))
    return anchors, np.asarray(extended)[anchors[:, None] + leads[None, :]]


def _resume(output: Path, fingerprint: dict, force: bool) -> set[int] | None:
    """The chunks already written to ``output`` for this fingerprint; None: start the store."""
    if not output.exists() or force:
        return None
    try:
        attrs = dict(xr.open_zarr(output).attrs)
    except (OSError, ValueError, KeyError):
        attrs = {}
    mine = {k: attrs.get(k) for k in fingerprint}
    if mine != fingerprint:
        changed = [k for k in fingerprint if mine[k] != fingerprint[k]]
        raise ConfigError(
            f"--output: {output} holds other predictions (differs at {', '.join(changed)}); "
            "use another --output or --force to overwrite it"
        )
    try:
        return {int(k) for k in json.loads((output / PROGRESS_FILE).read_text())["done"]}
    except (OSError, ValueError, KeyError):  # killed before the first record: nothing done
        return set()


def _write_progress(output: Path, done: set[int]) -> None:
    from climml.pipeline import write_text

    write_text(output / PROGRESS_FILE, json.dumps({"done": sorted(done)}) + "\n")
