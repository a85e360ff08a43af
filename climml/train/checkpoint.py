"""Orbax checkpoints of training state as sharded arrays, plus JSON metadata (position, history).

A pytree is saved as its flat list of leaves, each a ``jax.Array`` as it lies on the devices:
every process writes the shards it holds (replicated arrays once), nothing is gathered into one
host's memory. Restoring needs a template tree of the same structure (the freshly built model
and optimizer, placed on the current mesh): each array is read straight into the template's
sharding, so a checkpoint written on 4 devices (or hosts) restores on 2, and the template
checks that the checkpoint fits the configured model. PRNG key arrays are stored as their raw
key data. Orbax writes into a temporary directory and renames it when complete, so a killed job
never leaves a checkpoint that looks valid but is half written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from climml.errors import CheckpointError, expected
from climml.train.parallel import is_key


def _name(i: int) -> str:
    return f"{i:05d}"


def _to_arrays(tree: Any) -> dict[str, jax.Array]:
    leaves = jax.tree.leaves(tree)
    return {_name(i): jax.random.key_data(x) if is_key(x) else x for i, x in enumerate(leaves)}


def _sharding(leaf: Any) -> jax.sharding.Sharding:
    if isinstance(leaf, jax.Array):
        return leaf.sharding
    return jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # e.g. a NumPy template


def _targets(like: Any, saved: dict[str, Any]) -> dict[str, jax.ShapeDtypeStruct]:
    """What to read each saved array into: the template leaf's shape, dtype and sharding."""
    leaves = jax.tree.leaves(like)
    if len(saved) != len(leaves):
        raise CheckpointError(expected("checkpoint", f"{len(leaves)} arrays", len(saved)))
    targets = {}
    for i, leaf in enumerate(leaves):
        data = jax.random.key_data(leaf) if is_key(leaf) else leaf
        shape = tuple(saved[_name(i)].shape)
        if shape != np.shape(data):
            raise CheckpointError(
                expected(f"checkpoint array {i}", np.shape(data), shape)
                + " (was the model configuration changed?)"
            )
        targets[_name(i)] = jax.ShapeDtypeStruct(shape, data.dtype, sharding=_sharding(data))
    return targets


def _from_arrays(arrays: dict[str, jax.Array], like: Any) -> Any:
    leaves, treedef = jax.tree.flatten(like)
    restored = [
        jax.random.wrap_key_data(arrays[_name(i)], impl=jax.random.key_impl(leaf))
        if is_key(leaf)
        else arrays[_name(i)]
        for i, leaf in enumerate(leaves)
    ]
    return jax.tree.unflatten(treedef, restored)


class Checkpointer:
    """Saves and restores ``(tree, meta)`` pairs under ``directory``, keeping the last ``keep``.

    With several processes every process must call ``save`` and ``restore`` (they are collective),
    with ``directory`` on a file system all of them share.
    """

    def __init__(self, directory: str | Path, keep: int = 2):
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        self.directory = Path(directory).absolute()
        # Handlers named up front, so that a fresh manager can read an item's metadata (shapes)
        # before restoring it.
        handlers = {"arrays": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=handlers
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, tree: Any, meta: dict) -> None:
        args = ocp.args.Composite(
            arrays=ocp.args.StandardSave(_to_arrays(tree)), meta=ocp.args.JsonSave(meta)
        )
        self._manager.save(step, args=args, force=True)

    def restore(self, like: Any, step: int | None = None) -> tuple[Any, dict]:
        """The saved tree (shaped and sharded like ``like``) and its metadata, from ``step`` or
        the latest."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(expected("checkpoint", "a saved step", "none"))
        unreadable = (FileNotFoundError, ValueError, KeyError, TypeError)
        try:
            saved = self._manager.item_metadata(step)["arrays"]
        except unreadable as err:
            raise CheckpointError(f"checkpoint step {step}: unreadable ({err})") from None
        targets = _targets(like, dict(getattr(saved, "tree", saved)))
        args = ocp.args.Composite(
            arrays=ocp.args.StandardRestore(targets), meta=ocp.args.JsonRestore()
        )
        try:
            out = self._manager.restore(step, args=args)
        except unreadable as err:
            raise CheckpointError(f"checkpoint step {step}: unreadable ({err})") from None
        return _from_arrays(dict(out["arrays"]), like), dict(out["meta"])

    def close(self) -> None:
        """Wait for pending asynchronous writes and release the manager."""
        self._manager.wait_until_finished()
        self._manager.close()
