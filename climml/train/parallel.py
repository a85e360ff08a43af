"""Data parallelism through ``jax.sharding``: batches split over a ("data",) mesh axis,
parameters and optimizer state replicated. On one device everything is a no-op.

With several processes (``climml.train.distributed``) the mesh spans the devices of every
process, ordered by process, so that process ``p`` of ``P`` holds rows ``p * B/P .. (p+1) * B/P``
of each global batch of ``B`` samples; each process loads only those rows
(``WindowLoader.shard``) and ``shard_batch`` joins them into one global array without copying
data between processes.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from climml.errors import ConfigError, expected

DATA_AXIS = "data"


def data_mesh(devices: int | None, batch_size: int) -> Mesh | None:
    """A 1-D mesh over ``devices`` devices (None = all), or None for a single device.

    One process: its first ``devices`` local devices. Several processes: ``devices`` counts the
    devices of all of them and must be a multiple of the process count, each process giving
    ``devices / process_count`` of its local devices.
    """
    processes = jax.process_count()
    available = jax.devices()
    n = len(available) if devices is None else devices
    per_process = n // processes
    if n < 1 or n > len(available) or n % processes:
        want = f"1..{len(available)} or null"
        if processes > 1:
            want = f"null or a multiple of the {processes} processes up to {len(available)}"
        raise ConfigError(expected("train.devices", want, devices))
    if n == 1:
        return None
    if batch_size % n:
        raise ConfigError(
            expected("data.batch_size", f"a multiple of the {n} data-parallel devices", batch_size)
        )
    chosen = []
    for p in range(processes):
        local = sorted((d for d in available if d.process_index == p), key=lambda d: d.id)
        chosen += local[:per_process]
    return Mesh(np.array(chosen), (DATA_AXIS,))


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """Place every leaf of ``tree`` on all devices of ``mesh`` (unchanged if mesh is None).

    Leaves go through host memory: placing an array already committed to one device onto a mesh
    spanning other processes is not supported by JAX, and a host copy of the initial state is
    cheap. Every process must pass the same values (the same seed builds the same model).
    """
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, PartitionSpec())

    def put(leaf: Any) -> Any:
        if is_key(leaf):
            data = jax.device_put(np.asarray(jax.random.key_data(leaf)), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        return jax.device_put(np.asarray(leaf), sharding)

    return jax.tree.map(put, tree)


def shard_batch(batch: dict[str, Any], mesh: Mesh | None) -> dict[str, Any]:
    """Join this process's rows of every array of ``batch`` into global arrays split along the
    first (sample) axis over the mesh. With one process the rows are the whole batch."""
    if mesh is None:
        return batch
    sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    return {name: _global(value, sharding) for name, value in batch.items()}


def _global(value: Any, sharding: NamedSharding) -> jax.Array:
    if isinstance(value, jax.Array) and value.sharding == sharding:
        return value  # placed by the loader already
    return jax.make_array_from_process_local_data(sharding, np.asarray(value))


def is_key(leaf: Any) -> bool:
    """Whether ``leaf`` is an array of typed PRNG keys (stored and moved as its key data)."""
    return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)
