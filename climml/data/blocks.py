"""The time blocks one epoch needs: read ahead of use on a worker thread, freed group by group.

Reading a block (tens of MiB from zarr) takes far longer than one training step, so if blocks
were read only when a batch needs them, training would stall at every block boundary. Instead
the next group of blocks is read while the current one is being cut into batches.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

import numpy as np

B = TypeVar("B")


class BlockCache(Generic[B]):
    """Blocks of one epoch, keyed by block number.

    read: reads one block (called on the worker thread when ``ahead`` > 0).
    group: (n_blocks,) int, the group each block is visited in this epoch; every batch draws
        from the group being visited (and, at a boundary, the next), in increasing order.
    sequence: the blocks in the order batches first need them.
    ahead: groups read in advance beyond the current one; 0 reads on demand, with no thread.

    Holds at most the current group and ``ahead`` groups after it.
    """

    def __init__(
        self, read: Callable[[int], B], group: np.ndarray, sequence: np.ndarray, ahead: int
    ):
        self._read, self._group, self._sequence, self._ahead = read, group, sequence, ahead
        self._next = 0  # position in ``sequence`` of the next block to submit
        self._blocks: dict[int, Future] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="climml-read") if ahead else None

    def get(self, needed: np.ndarray) -> dict[int, B]:
        """The blocks ``needed`` by the next batch (waiting for their reads if need be)."""
        current = int(self._group[needed].min())
        for b in [b for b in self._blocks if self._group[b] < current]:  # finished groups
            self._blocks.pop(b).cancel()
        while self._next < len(self._sequence):
            block = int(self._sequence[self._next])
            if self._group[block] > current + self._ahead:
                break
            self._submit(block)
            self._next += 1
        for b in needed:
            self._submit(int(b))
        return {int(b): self._blocks[int(b)].result() for b in needed}

    def close(self) -> None:
        """Drop queued reads and wait for the worker to finish the one in progress."""
        for future in self._blocks.values():
            future.cancel()
        self._blocks.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _submit(self, block: int) -> None:
        if block in self._blocks:
            return
        if self._pool is None:
            future: Future = Future()
            future.set_result(self._read(block))
        else:
            future = self._pool.submit(self._read, block)
        self._blocks[block] = future
