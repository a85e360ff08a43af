"""Where dask computes: the threaded scheduler, a ``dask.distributed`` LocalCluster, or any
running scheduler (``data.dask`` of the config, or ``DASK_SCHEDULER_ADDRESS``).

The statistics of a run (``Normalizer.fit`` on the training split, the climatology baseline,
the out-of-core scores of ``climml.tasks.out_of_core`` on the streamed ``predictions.zarr``:
sufficient statistics per chunk, summed, ratio last) and ``convert_to_zarr`` run inside
``compute_on(spec)``, which routes every dask
computation of the block to the chosen scheduler. A scheduler address makes the same job run
on a Dask cluster started by dask-jobqueue (Slurm, PBS), dask-gateway or the Dask Kubernetes
operator; climml starts nothing there, it only connects.

Only the block is routed: the ``WindowLoader``'s background reads stay on the local threaded
scheduler, where a block of a few MiB costs less than a round trip to a cluster.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dask
import xarray as xr

from climml.config import DaskConfig
from climml.errors import ConfigError, expected

ADDRESS_ENV = "DASK_SCHEDULER_ADDRESS"  # dask's own variable (also dask config scheduler-address)
_CLIENTS: dict[tuple, Any] = {}  # one client per setting per process: a cluster starts once


def scheduler(spec: DaskConfig, *, nbytes: int | None = None) -> str:
    """The scheduler ``spec`` asks for: ``"threads"``, ``"local"`` or a scheduler address.

    ``auto`` picks ``DASK_SCHEDULER_ADDRESS`` (or dask's ``scheduler-address`` setting) when
    set, else a LocalCluster when ``nbytes`` (the data to reduce) exceeds
    ``spec.local_above_gb``, else threads: starting worker processes costs seconds, which small
    data never wins back.
    """
    name = spec.scheduler.strip()
    if name in ("threads", "local"):
        return name
    if name == "auto":
        address = os.environ.get(ADDRESS_ENV) or dask.config.get("scheduler-address", None)
        if address:
            return str(address)
        big = nbytes is not None and nbytes > spec.local_above_gb * 2**30
        return "local" if big else "threads"
    if "://" in name or ":" in name:
        return name  # tcp://host:8786, tls://..., host:8786
    want = "auto, threads, local or a scheduler address such as tcp://host:8786"
    raise ConfigError(expected("data.dask.scheduler", want, repr(spec.scheduler)))


def client(spec: DaskConfig, *, nbytes: int | None = None):
    """The ``distributed.Client`` of ``spec`` (None for threads), started once per process.

    The client is never made dask's process-wide default (a default client would take every
    later dask computation of the process, a user's or a library's, to the cluster); only
    ``compute_on`` blocks use it.

    A LocalCluster is started with ``n_workers``, ``threads_per_worker``, ``processes`` and
    ``memory_limit`` (dask's defaults where None); an address is connected to. Clients close
    when the process exits.
    """
    target = scheduler(spec, nbytes=nbytes)
    if target == "threads":
        return None
    key = (target, spec.n_workers, spec.threads_per_worker, spec.processes, spec.memory_limit)
    if key in _CLIENTS and _CLIENTS[key].status in ("running", "connecting"):
        return _CLIENTS[key]
    from distributed import Client, LocalCluster

    if target == "local":
        options = {
            "n_workers": spec.n_workers,
            "threads_per_worker": spec.threads_per_worker,
            "processes": spec.processes,
            # any free port: two jobs on one machine would otherwise both ask for 8787
            "dashboard_address": ":0",
        }
        if spec.memory_limit is not None:
            options["memory_limit"] = spec.memory_limit
        cluster = LocalCluster(**{k: v for k, v in options.items() if v is not None})
        made = Client(cluster, set_as_default=False)
    else:
        try:
            made = Client(target, timeout="30s", set_as_default=False)
        except OSError as err:
            found = f"{target} ({type(err).__name__}: {err})"
            raise ConfigError(
                expected("data.dask.scheduler", "a reachable dask scheduler", found)
            ) from None
    _CLIENTS[key] = made
    return made


@contextmanager
def compute_on(spec: DaskConfig | None, *, nbytes: int | None = None) -> Iterator[Any]:
    """Run the dask computations of the block on ``spec``'s scheduler; yields its client
    (None: the threaded scheduler). ``nbytes``: the size of the data, for ``auto``."""
    found = None if spec is None else client(spec, nbytes=nbytes)
    if found is None:
        yield None
        return
    with dask.config.set(scheduler=found):
        yield found


def convert_to_zarr(
    source: str | Path | Iterable[str | Path],
    store: str | Path,
    *,
    variables: Iterable[str] | None = None,
    time_chunk: int = 32,
    spec: DaskConfig | None = None,
) -> Path:
    """Write a netCDF collection (a path, a glob such as ``"era5/*.nc"`` or a list of files) as
    one zarr store chunked ``time_chunk`` steps along time and whole along the other dims: the
    layout the ``WindowLoader`` reads and ``climml predict --input`` streams.

    The files are opened lazily and conformed (``climml.data.open_dataset``); the copy runs on
    ``spec``'s scheduler, chunk by chunk, so the collection may be far larger than memory.
    Returns the store path.
    """
    from climml.data.open import conform, open_dataset

    if not isinstance(time_chunk, int) or isinstance(time_chunk, bool) or time_chunk < 1:
        raise ConfigError(expected("time_chunk", "an integer >= 1", repr(time_chunk)))
    if isinstance(source, str | Path):
        ds = open_dataset(source, variables=variables)
    else:
        files = [str(f) for f in source]
        ds = conform(
            xr.open_mfdataset(files, combine="by_coords", join="exact"),
            None if variables is None else list(variables),
        )
    ds = ds.chunk({d: (time_chunk if d == "time" else -1) for d in ds.dims})
    for var in ds.variables.values():
        # netCDF encodings (its chunk sizes, compression, packing) do not apply to zarr; times
        # keep their units and calendar
        var.encoding = {k: v for k, v in var.encoding.items() if k in ("units", "calendar")}
    store = Path(store)
    with compute_on(spec, nbytes=ds.nbytes):
        ds.to_zarr(store, mode="w")
    return store


def _close_all() -> None:
    for made in _CLIENTS.values():
        cluster = getattr(made, "cluster", None)
        made.close()
        if cluster is not None:
            cluster.close()
    _CLIENTS.clear()


atexit.register(_close_all)
