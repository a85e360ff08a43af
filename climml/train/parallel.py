"""Data parallelism through ``jax.sharding``: batches split over a ("data",) mesh axis,
parameters and optimizer state replicated. On one device everything is a no-op."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from climml.errors import ConfigError, expected

DATA_AXIS = "data"


def data_mesh(devices: int | None, batch_size: int) -> Mesh | None:
    """A 1-D mesh over ``devices`` local devices (None = all), or None for a single device."""
    available = jax.local_devices()
    n = len(available) if devices is None else devices
    if n < 1 or n > len(available):
        raise ConfigError(expected("train.devices", f"1..{len(available)} or null", devices))
    if n == 1:
        return None
    if batch_size % n:
        raise ConfigError(
            expected("data.batch_size", f"a multiple of the {n} data-parallel devices", batch_size)
        )
    return Mesh(np.array(available[:n]), (DATA_AXIS,))


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """Place every leaf of ``tree`` on all devices of ``mesh`` (unchanged if mesh is None)."""
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch(batch: dict[str, Any], mesh: Mesh | None) -> dict[str, Any]:
    """Split every array of ``batch`` along its first (sample) axis over the mesh."""
    if mesh is None:
        return batch
    return jax.device_put(batch, NamedSharding(mesh, PartitionSpec(DATA_AXIS)))
