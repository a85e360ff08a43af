"""A native call split over a device mesh along the batch: each device runs it on its own rows.

XLA's partitioner treats a custom call as opaque: given a batch sharded over devices it gathers
the whole batch onto every device and runs the call there. ``custom_partitioning`` tells it the
call is separable along the batch (a Shardy rule with one shared factor ``b``), so each device
runs the kernel on its shard. ``custom_partitioning`` has no batching rule, so :func:`looped`
supplies one for ``vmap`` (a loop over the mapped axis, as ``vmap_method="sequential"`` does).
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding, PartitionSpec

_NAMES = [c for c in string.ascii_lowercase if c != "b"]


def _rule(ranks: Sequence[Sequence[int]], axes: Sequence[Sequence[int | None]]):
    """Shardy rule ``"a c, ... -> ..."`` with the batch dim named ``b`` and every other dim its
    own factor; returns the rule and those other factors (which must stay replicated)."""
    names = iter(f"{c}{i}" if i else c for i in range(4) for c in _NAMES)
    sides, others = [], []
    for side_ranks, side_axes in zip(ranks, axes, strict=True):
        operands = []
        for rank, axis in zip(side_ranks, side_axes, strict=True):
            dims = []
            for d in range(rank):
                if d == axis:
                    dims.append("b")
                else:
                    dims.append(next(names))
                    others.append(dims[-1])
            operands.append(" ".join(dims))
        sides.append(", ".join(operands))
    return " -> ".join(sides), tuple(others)


def batch_partitioned(call: Callable, args, arg_axes, out_axes):
    """``call(*args)`` with every argument and result split along its batch axis over whatever
    mesh the arguments are sharded on (axis None, or an empty array: replicated)."""
    outs = jax.eval_shape(call, *args)
    arg_axes = [None if a.size == 0 else ax for a, ax in zip(args, arg_axes, strict=True)]
    out_axes = [None if o.size == 0 else ax for o, ax in zip(outs, out_axes, strict=True)]
    rule, others = _rule(([a.ndim for a in args], [o.ndim for o in outs]), (arg_axes, out_axes))
    op = custom_partitioning(call)

    def partition(mesh, arg_shapes, result_shape):
        lead = next(i for i, ax in enumerate(arg_axes) if ax is not None)
        spec = tuple(arg_shapes[lead].sharding.spec)
        batch = spec[arg_axes[lead]] if len(spec) > arg_axes[lead] else None

        def sharding(ndim, axis):
            parts = [None] * ndim
            if axis is not None:
                parts[axis] = batch
            return NamedSharding(mesh, PartitionSpec(*parts))

        arg_sh = tuple(sharding(a.ndim, ax) for a, ax in zip(args, arg_axes, strict=True))
        out_sh = tuple(sharding(o.ndim, ax) for o, ax in zip(outs, out_axes, strict=True))
        return mesh, call, out_sh, arg_sh

    op.def_partition(partition, sharding_rule=rule, need_replication_factors=others)
    return op(*args)


def looped(fn: Callable) -> Callable:
    """``fn`` whose ``vmap`` is a loop over the mapped axis (``lax.map``)."""
    mapped = jax.custom_batching.custom_vmap(fn)

    @mapped.def_vmap
    def _loop(axis_size, in_batched, *args):
        args = [
            a if batched else jnp.broadcast_to(a, (axis_size, *a.shape))
            for a, batched in zip(args, in_batched, strict=True)
        ]
        out = jax.lax.map(lambda a: fn(*a), args)
        return out, jax.tree.map(lambda _: True, out)

    return mapped
