"""Orbax checkpoints of training state as plain arrays, plus JSON metadata (position, history).

A pytree is saved as its flat list of leaves; restoring needs a template tree of the same
structure (the freshly built model and optimizer), which also checks that the checkpoint fits
the configured model. PRNG key arrays are stored as their raw key data. Orbax writes into a
temporary directory and renames it when complete, so a killed job never leaves a checkpoint that
looks valid but is half written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from climml.errors import CheckpointError, expected


def _is_key(leaf: Any) -> bool:
    return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _to_arrays(tree: Any) -> dict[str, np.ndarray]:
    leaves = jax.tree.leaves(tree)
    arrays = [jax.random.key_data(x) if _is_key(x) else x for x in leaves]
    return {f"{i:05d}": np.asarray(a) for i, a in enumerate(arrays)}


def _from_arrays(arrays: dict[str, Any], like: Any) -> Any:
    leaves, treedef = jax.tree.flatten(like)
    if len(arrays) != len(leaves):
        raise CheckpointError(expected("checkpoint", f"{len(leaves)} arrays", len(arrays)))
    restored = []
    for i, template in enumerate(leaves):
        value = np.asarray(arrays[f"{i:05d}"])
        if _is_key(template):
            restored.append(jax.random.wrap_key_data(value, impl=jax.random.key_impl(template)))
            continue
        if value.shape != np.shape(template):
            raise CheckpointError(
                expected(f"checkpoint array {i}", np.shape(template), value.shape)
                + " (was the model configuration changed?)"
            )
        restored.append(jax.numpy.asarray(value, dtype=template.dtype))
    return jax.tree.unflatten(treedef, restored)


class Checkpointer:
    """Saves and restores ``(tree, meta)`` pairs under ``directory``, keeping the last ``keep``."""

    def __init__(self, directory: str | Path, keep: int = 2):
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, tree: Any, meta: dict) -> None:
        args = ocp.args.Composite(
            arrays=ocp.args.StandardSave(_to_arrays(tree)), meta=ocp.args.JsonSave(meta)
        )
        self._manager.save(step, args=args, force=True)

    def restore(self, like: Any, step: int | None = None) -> tuple[Any, dict]:
        """The saved tree (shaped like ``like``) and its metadata, from ``step`` or the latest."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(expected("checkpoint", "a saved step", "none"))
        args = ocp.args.Composite(arrays=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore())
        try:
            out = self._manager.restore(step, args=args)
        except (FileNotFoundError, ValueError) as err:
            raise CheckpointError(f"checkpoint step {step}: unreadable ({err})") from None
        return _from_arrays(dict(out["arrays"]), like), dict(out["meta"])

    def close(self) -> None:
        """Wait for pending asynchronous writes and release the manager."""
        self._manager.wait_until_finished()
        self._manager.close()
