"""Where the loader puts batches when training over several devices."""

from __future__ import annotations

from typing import Any

from climml.errors import ConfigError, expected


def batch_sharding(mesh: Any, axis: str = "data") -> Any:
    """A ``NamedSharding`` that splits the leading (batch) axis of every array over ``axis``
    of ``mesh`` and keeps the other axes whole; pass it as ``WindowLoader(sharding=...)``."""
    from jax.sharding import NamedSharding, PartitionSpec  # deferred: keeps the import light

    if axis not in mesh.axis_names:
        raise ConfigError(expected("mesh axis", f"one of {tuple(mesh.axis_names)}", repr(axis)))
    return NamedSharding(mesh, PartitionSpec(axis))
