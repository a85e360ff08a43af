"""Batches of (input window, target leads) samples cut from a lazy dataset.

A sample anchored at time index ``t`` has inputs ``t-input_steps+1 .. t`` and targets
``t + leads``. The loader reads the dataset in contiguous time blocks (one dask compute per
block of many samples, never one small read per sample), cuts all windows of a block in memory
with fancy indexing, and shuffles by mixing a few blocks at a time, so memory stays bounded
while samples from distant years still share batches. Background threads read the next blocks
and cut the next batches while the device computes. Batch order is a pure function of
``(seed, epoch)``: a resumed run restarts mid-epoch and sees exactly the same batches.

In a multi-process job, ``loader.shard(p, P)`` gives process ``p`` a loader of the same global
batches that cuts only rows ``p * B/P .. (p+1) * B/P`` of each (and reads only the blocks those
rows touch), so the processes together see exactly what one process would.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from climml.data.blocks import BlockCache
from climml.data.prefetch import prefetched
from climml.data.rain import RainCrop, crop_offset
from climml.data.validate import validate_dataset
from climml.errors import ConfigError, DataError, expected
from climml.types import Batch, IOSpec

CHANNEL_DIMS = ("feature", "channel")  # a variable's entries along these dims become channels
BLOCK_BYTES = 16 * 2**20  # default block size: large reads, bounded memory


@dataclass(frozen=True)
class _Block:
    """Arrays of one contiguous time block; index 0 is time step ``start`` of the dataset."""

    start: int
    inputs: np.ndarray  # (S, *spatial, C) float32, NaN -> 0, mask channel appended if asked
    target: np.ndarray  # (S, *target_spatial) float32, NaN -> 0
    valid: np.ndarray  # (S, *target_spatial) float32, 1 where the target is finite


class WindowLoader:
    """Iterate fixed-shape ``Batch``es of windows anchored at ``anchors``.

    ds: dataset (lazy or in memory) holding ``inputs`` and ``target``, with a ``time`` dim.
    inputs: variables stacked as channels; all share the same non-time dims, except a
        ``feature``/``channel`` dim whose entries become separate channels.
    target: the predicted variable; ``y`` has its non-time dims.
    input_steps: steps per input window (T). leads: steps ahead of the anchor (L of them).
    anchors: time indices of the samples (e.g. one entry of ``split_anchors``); visited in
        increasing order unless shuffled.
    batch_size: samples per batch (B). drop_last: drop the incomplete last batch instead of
        padding it (padding rows have weight 0, so every batch has the same shape).
    shuffle, seed: shuffled order from ``np.random.default_rng((seed, epoch))``.
    mask_channel: append a channel that is 1 where every input is finite.
    prefetch: batches prepared ahead on a background thread, which also has the next group
        of blocks read on a worker thread meanwhile (0: everything on the caller's thread).
    sharding: if given, array fields are placed with it (see ``batch_sharding``); over several
        processes, as global arrays joined from every process's rows.
    block_steps: anchors per contiguous read (default: about 16 MiB of arrays per block).
    shuffle_blocks: blocks whose samples are shuffled together (the shuffle buffer).
    crop: cut every sample to a ``crop.size`` square of its last two spatial dims (inputs and
        target alike), the corner drawn from ``(seed, epoch, anchor)`` and biased toward rain
        as ``crop`` says (``climml.data.rain.RainCrop``); for training.
    """

    def __init__(
        self,
        ds: xr.Dataset,
        *,
        inputs: Sequence[str],
        target: str,
        input_steps: int,
        leads: Sequence[int],
        anchors: Sequence[int] | np.ndarray,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        mask_channel: bool = False,
        prefetch: int = 2,
        sharding: Any = None,
        block_steps: int | None = None,
        shuffle_blocks: int = 4,
        crop: RainCrop | None = None,
    ):
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        _check_int("data.input_steps", input_steps, 1)
        _check_int("data.batch_size", batch_size, 1)
        _check_int("data.prefetch", prefetch, 0)
        _check_int("shuffle_blocks", shuffle_blocks, 1)
        _check_int("seed", seed, 0)
        self.leads = _check_leads(leads)
        self.input_steps = int(input_steps)
        self.batch_size = int(batch_size)
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        self.mask_channel, self.prefetch, self.sharding = bool(mask_channel), prefetch, sharding
        self.shuffle_blocks = int(shuffle_blocks)
        self.process_index, self.process_count = 0, 1  # see ``shard``

        self._source, self._spatial, self._channels = _input_layout(ds, inputs, target)
        self.inputs, self.target = tuple(inputs), target
        self._target_spatial = tuple(self._source[target].shape[1:])
        self.crop = crop
        if crop is not None:
            _check_crop(crop, self._spatial, self._target_spatial)
        self.anchors = _check_anchors(anchors, ds.sizes["time"], self.input_steps, self.leads)
        if block_steps is None:
            block_steps = max(self.batch_size, BLOCK_BYTES // self._bytes_per_step())
        _check_int("block_steps", block_steps, 1)
        self.block_steps = int(block_steps)
        # Blocks: anchors grouped by (anchor - first) // block_steps, numbered 0.. in time order.
        bins = (self.anchors - self.anchors[0]) // self.block_steps
        _, self._block_of = np.unique(bins, return_inverse=True)
        self._members = np.split(np.arange(len(bins)), np.flatnonzero(np.diff(bins)) + 1)
        if len(self) == 0:
            found = f"{self.batch_size} with {self.num_samples} samples and drop_last=True"
            raise ConfigError(expected("data.batch_size", "at most the number of samples", found))
        if sharding is not None:
            _check_sharding(sharding, self.batch_size)

    def shard(self, process_index: int, process_count: int) -> WindowLoader:
        """This loader for process ``process_index`` of ``process_count``: the same global
        batches (``batch_size`` samples, same order and padding), of which it yields only rows
        ``process_index * b .. (process_index + 1) * b``, ``b = batch_size / process_count``."""
        _check_int("process_count", process_count, 1)
        _check_int("process_index", process_index, 0)
        if process_index >= process_count:
            want = f"an integer in [0, {process_count - 1}]"
            raise ConfigError(expected("process_index", want, process_index))
        if self.batch_size % process_count:
            want = f"a multiple of the {process_count} processes"
            raise ConfigError(expected("data.batch_size", want, self.batch_size))
        shard = copy.copy(self)
        shard.process_index, shard.process_count = int(process_index), int(process_count)
        return shard

    @property
    def local_batch_size(self) -> int:
        """Rows of each batch this loader yields (``batch_size`` unless ``shard``-ed)."""
        return self.batch_size // self.process_count

    @property
    def num_samples(self) -> int:
        """Samples per epoch."""
        return len(self.anchors)

    def __len__(self) -> int:
        """Batches per epoch."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return -(-self.num_samples // self.batch_size)

    @property
    def spec(self):
        """``IOSpec`` of a sample: input ``(T, *spatial, C)``, output ``(L, *target_spatial)``."""
        input_shape, target = self._input_shape, self._target_spatial
        if self.crop is not None:
            s = self.crop.size
            input_shape = (*input_shape[:-3], s, s, input_shape[-1])
            target = (*target[:-2], s, s)
        return IOSpec(input_shape=input_shape, output_shape=(len(self.leads), *target))

    @property
    def _input_shape(self) -> tuple[int, ...]:
        return (self.input_steps, *self._spatial, self._channels + int(self.mask_channel))

    def __iter__(self) -> Iterator[Batch]:
        return self.epoch(0)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        """The batches of epoch ``epoch``, from batch ``start_batch`` on (for resuming)."""
        _check_int("epoch", epoch, 0)
        if not isinstance(start_batch, int | np.integer) or not 0 <= start_batch <= len(self):
            raise ConfigError(
                expected("start_batch", f"an integer in [0, {len(self)}]", start_batch)
            )
        batches = self._batches(epoch, start_batch)
        return prefetched(batches, self.prefetch) if self.prefetch else batches

    def _plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Visiting order of epoch ``epoch``: positions into ``anchors``, and for each block
        the index of the group it is visited in.

        Shuffled, the blocks are permuted and taken ``shuffle_blocks`` at a time, and the
        samples within each such group are permuted; so at most two groups (the one being
        finished and the next) are ever held in memory. Unshuffled, blocks go in time order."""
        n_blocks = len(self._members)
        if not self.shuffle:
            return np.arange(self.num_samples), np.arange(n_blocks)
        rng = np.random.default_rng((self.seed, epoch))
        blocks = rng.permutation(n_blocks)
        group = np.empty(n_blocks, np.int64)
        group[blocks] = np.arange(n_blocks) // self.shuffle_blocks
        order = [
            rng.permutation(np.concatenate([self._members[b] for b in np.flatnonzero(group == g)]))
            for g in range(group.max() + 1)
        ]
        return np.concatenate(order), group

    def _batches(self, epoch: int, start_batch: int) -> Iterator[Batch]:
        order, group = self._plan(epoch)
        size, rows = self.batch_size, self.local_batch_size
        first_row = self.process_index * rows
        # This process's positions of batch k: rows first_row .. first_row + rows of it (fewer,
        # or none, where the last batch is padding).
        local = [
            order[k * size + first_row : min(k * size + first_row + rows, (k + 1) * size)]
            for k in range(start_batch, len(self))
        ]
        remaining = self._block_of[np.concatenate([order[:0], *local])]
        _, first = np.unique(remaining, return_index=True)
        sequence = remaining[np.sort(first)]  # blocks in the order batches first need them
        # With a prefetch thread, the next group of blocks is read while this one is cut.
        cache = BlockCache(self._read_block, group, sequence, ahead=1 if self.prefetch else 0)
        try:
            for positions in local:
                needed = np.unique(self._block_of[positions])
                batch = self._assemble(positions, cache.get(needed) if needed.size else {})
                if self.crop is not None:
                    batch = self._cropped(batch, epoch)
                yield batch if self.sharding is None else self._to_device(batch)
        finally:
            cache.close()

    def _read_block(self, block: int) -> _Block:
        """Read every time step the samples of ``block`` touch, with one dask compute."""
        members = self.anchors[self._members[block]]
        lo = int(members[0]) - self.input_steps + 1
        hi = int(members[-1]) + max(self.leads) + 1
        data = self._source.isel(time=slice(lo, hi)).compute()
        stacked = [
            data[name]
            .to_numpy()
            .astype(np.float32, copy=False)
            .reshape(hi - lo, *self._spatial, -1)
            for name in self.inputs
        ]
        inputs = np.concatenate(stacked, axis=-1)
        finite = np.isfinite(inputs)
        if self.mask_channel:
            mask = finite.all(axis=-1, keepdims=True).astype(np.float32)
            inputs = np.concatenate([inputs, mask], axis=-1)
            finite = np.concatenate([finite, np.ones_like(mask, dtype=bool)], axis=-1)
        inputs[~finite] = 0.0
        target = data[self.target].to_numpy().astype(np.float32)  # a copy: filled below
        valid = np.isfinite(target)
        target[~valid] = 0.0
        return _Block(lo, inputs, target, valid.astype(np.float32))

    def _assemble(self, positions: np.ndarray, blocks: dict[int, _Block]) -> Batch:
        n, size = len(positions), self.local_batch_size
        x = np.zeros((size, *self._input_shape), np.float32)
        y = np.zeros((size, len(self.leads), *self._target_spatial), np.float32)
        y_valid = np.zeros_like(y)
        history = np.zeros((size, self.input_steps, *self._target_spatial), np.float32)
        anchor = np.full(size, -1, np.int64)
        anchor[:n] = self.anchors[positions]
        weight = (np.arange(size) < n).astype(np.float32)
        window = np.arange(1 - self.input_steps, 1)
        leads = np.asarray(self.leads)
        block_of = self._block_of[positions]
        for b in np.unique(block_of):
            rows = np.flatnonzero(block_of == b)
            block = blocks[int(b)]
            rel = anchor[rows] - block.start  # anchor's index inside the block
            _gather(block.inputs, rel[:, None] + window, x, rows)
            _gather(block.target, rel[:, None] + window, history, rows)
            _gather(block.target, rel[:, None] + leads, y, rows)
            _gather(block.valid, rel[:, None] + leads, y_valid, rows)
        return Batch(x, y, y_valid, history, weight, anchor)

    def _cropped(self, batch: Batch, epoch: int) -> Batch:
        """Each real row cut to its crop (padding rows: the top-left corner)."""
        s = self.crop.size
        corners = [
            crop_offset(y, valid, self.crop, np.random.default_rng((self.seed, epoch, int(a))))
            if a >= 0
            else (0, 0)
            for y, valid, a in zip(batch.y, batch.y_valid, batch.anchor, strict=True)
        ]

        def cut(a: np.ndarray, channel_axis: bool = False) -> np.ndarray:
            tail = (slice(None),) if channel_axis else ()
            return np.stack(
                [
                    a[i][(..., slice(r, r + s), slice(c, c + s), *tail)]
                    for i, (r, c) in enumerate(corners)
                ]
            )

        return Batch(
            cut(batch.x, channel_axis=True),
            cut(batch.y),
            cut(batch.y_valid),
            cut(batch.target_history),
            batch.weight,
            batch.anchor,
        )

    def _bytes_per_step(self) -> int:
        spatial = int(np.prod(self._spatial, dtype=np.int64))
        target = int(np.prod(self._target_spatial, dtype=np.int64))
        return 4 * (spatial * (self._channels + 1) + 2 * target)

    def _to_device(self, batch: Batch) -> Batch:
        import jax

        if self.process_count == 1:
            arrays = jax.device_put(tuple(batch[:-1]), self.sharding)
        else:
            arrays = [jax.make_array_from_process_local_data(self.sharding, a) for a in batch[:-1]]
        return Batch(*arrays, batch.anchor)


def _gather(source: np.ndarray, index: np.ndarray, out: np.ndarray, rows: np.ndarray) -> None:
    """``out[rows] = source[index]``, written in place when ``rows`` is one contiguous run
    (the usual case: a whole batch from one block), so each batch is copied once."""
    first, last = rows[0], rows[-1]
    if last - first + 1 == len(rows):
        np.take(source, index, axis=0, out=out[first : last + 1], mode="clip")
    else:
        out[rows] = source[index]


def _check_crop(crop: RainCrop, spatial: tuple[int, ...], target: tuple[int, ...]) -> None:
    """Crops need inputs and target on one grid of at least two dims, at least crop-sized."""
    if len(spatial) < 2 or spatial[-2:] != target[-2:]:
        want = "inputs and target sharing their last two spatial dims"
        raise ConfigError(expected("data.crop", want, f"inputs {spatial}, target {target}"))
    if crop.size > min(spatial[-2:]):
        want = f"at most the grid's {spatial[-2]} x {spatial[-1]}"
        raise ConfigError(expected("data.crop.size", want, crop.size))


def _input_layout(
    ds: xr.Dataset, inputs: list[str], target: str
) -> tuple[xr.Dataset, tuple[int, ...], int]:
    """The variables to read, transposed to ``(time, *spatial[, channel])``; the spatial shape
    shared by the inputs; and the total number of input channels."""
    if not inputs:
        raise ConfigError(expected("data.inputs", "at least one variable", inputs))
    validate_dataset(ds, [*inputs, target], ("time",))
    first = ds[inputs[0]]
    spatial_dims = [d for d in first.dims if d != "time" and d not in CHANNEL_DIMS]
    source, channels = {}, 0
    for name in inputs:
        var = ds[name]
        extra = [d for d in var.dims if d in CHANNEL_DIMS]
        if sorted(d for d in var.dims if d != "time" and d not in extra) != sorted(spatial_dims):
            found = f"{name} {var.dims} vs {inputs[0]} {first.dims}"
            raise DataError(expected("data.inputs", "variables with the same non-time dims", found))
        source[name] = var.transpose("time", *spatial_dims, *extra)
        channels += int(np.prod([var.sizes[d] for d in extra], dtype=np.int64))
    if target not in source:  # an input doubling as target keeps its input layout
        source[target] = ds[target].transpose("time", ...)
    spatial = tuple(first.sizes[d] for d in spatial_dims)
    return xr.Dataset(source), spatial, channels


def _check_int(field: str, value: Any, least: int) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < least:
        raise ConfigError(expected(field, f"an integer >= {least}", repr(value)))


def _check_leads(leads: Sequence[int]) -> tuple[int, ...]:
    leads = tuple(leads) if not isinstance(leads, int | np.integer) else (leads,)
    if not leads:
        raise ConfigError(expected("data.leads", "at least one lead", leads))
    for lead in leads:
        _check_int("data.leads", lead, 0)
    return tuple(int(lead) for lead in leads)


def _check_anchors(anchors: Any, n_time: int, input_steps: int, leads: tuple[int, ...]):
    anchors = np.asarray(anchors)
    if anchors.ndim != 1 or anchors.size == 0 or anchors.dtype.kind not in "iu":
        found = f"shape {anchors.shape}, dtype {anchors.dtype}"
        raise ConfigError(expected("anchors", "a non-empty 1-D array of time indices", found))
    lo, hi = input_steps - 1, n_time - 1 - max(leads)
    bad = anchors[(anchors < lo) | (anchors > hi)]
    if bad.size:
        want = f"indices in [{lo}, {hi}] (room for {input_steps} input steps and lead {max(leads)})"
        raise ConfigError(expected("anchors", want, f"{bad[:5].tolist()}"))
    return np.sort(anchors.astype(np.int64))


def _check_sharding(sharding: Any, batch_size: int) -> None:
    """The batch axis must split evenly over the devices of ``sharding``."""
    try:
        sharding.shard_shape((batch_size,))
    except ValueError as err:
        raise ConfigError(
            expected(
                "data.batch_size", "a multiple of the devices the batch is sharded over", batch_size
            )
        ) from err
