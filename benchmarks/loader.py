"""Window loading from a zarr store: climml's WindowLoader vs xbatcher's BatchGenerator, one run.

Both read the same lazily opened zarr store (two float32 fields on a grid, chunked along time)
and produce the same windows: every ``input_steps``-long window in time order, ``batch_size``
windows per batch, delivered as a NumPy array ``(batch, time, lat, lon, variable)``, the form a
model consumes. xbatcher is used the way its docs batch overlapping windows (``input_overlap``
plus a duplicated ``batch_dims`` entry, ``concat_input_dims=True``), followed by ``.to_numpy()``.
climml additionally cuts targets, target history and validity masks for each sample.

Reported: samples/s (best of ``--rounds`` rounds, contenders alternating, since the CPU may be
shared), the speed ratio, peak traced memory (tracemalloc, a separate pass) and, for a small
jitted CNN trained on the loader's batches, the fraction of the epoch spent waiting in
``next(batches)``, with and without the background prefetch thread.

    python benchmarks/loader.py            # 4096 steps of a 64 x 64 grid
    python benchmarks/loader.py --quick    # small smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import xarray as xr
import xbatcher
from flax import nnx

import climml.data as cd

VARIABLES = ("a", "b")


def write_store(path: Path, n_time: int, size: int, chunk: int, seed: int = 0) -> None:
    """Two AR(1)-in-time random fields (time, lat, lon) and their domain mean ``index`` (time,)."""
    rng = np.random.default_rng(seed)
    fields = {}
    for name in VARIABLES:
        noise = rng.standard_normal((n_time, size, size), dtype=np.float32)
        for t in range(1, n_time):
            noise[t] = 0.8 * noise[t - 1] + 0.6 * noise[t]
        fields[name] = (("time", "lat", "lon"), noise)
    fields["index"] = (("time",), fields["a"][1].mean(axis=(1, 2)))
    coords = {
        "time": pd.date_range("1900-01-01", periods=n_time, freq="D"),
        "lat": np.linspace(-60, 60, size),
        "lon": np.linspace(0, 360, size, endpoint=False),
    }
    ds = xr.Dataset(fields, coords=coords).chunk({"time": chunk})
    ds.to_zarr(path, mode="w", consolidated=True, zarr_format=2)


def xbatcher_batches(
    path: Path, steps: int, batch: int, size: int, in_memory: bool = False
) -> Iterator[np.ndarray]:
    """xbatcher's batches as arrays; ``in_memory`` loads the whole store first (no laziness)."""
    ds = xr.open_zarr(path)[list(VARIABLES)]
    if in_memory:
        ds = ds.load()
    gen = xbatcher.BatchGenerator(
        ds,
        input_dims={"time": steps, "lat": size, "lon": size},
        input_overlap={"time": steps - 1},
        batch_dims={"time": batch},
        concat_input_dims=True,
    )
    for item in gen:
        yield np.stack([item[v].to_numpy() for v in VARIABLES], axis=-1)


def climml_loader(path: Path, steps: int, batch: int, n_windows: int, **kwargs) -> cd.WindowLoader:
    """The same windows as xbatcher: anchors are the last steps of windows 0..n_windows-1."""
    ds = cd.open_dataset(path)
    return cd.WindowLoader(
        ds,
        inputs=list(VARIABLES),
        target="index",
        input_steps=steps,
        leads=[0],
        anchors=np.arange(steps - 1, steps - 1 + n_windows),
        batch_size=batch,
        **kwargs,
    )


def climml_batches(loader: cd.WindowLoader) -> Iterator[np.ndarray]:
    for item in loader.epoch(0):
        yield item.x


def rate(batches: Callable[[], Iterator[np.ndarray]], max_batches: int) -> tuple[float, int]:
    """Samples per second over (at most) ``max_batches`` batches, and the samples counted."""
    start, samples = time.perf_counter(), 0
    for i, x in enumerate(batches()):
        samples += x.shape[0]
        if i + 1 == max_batches:
            break
    return samples / (time.perf_counter() - start), samples


def peak_mib(batches: Callable[[], Iterator[np.ndarray]], max_batches: int) -> float:
    tracemalloc.start()
    for i, _ in enumerate(batches()):
        if i + 1 == max_batches:
            break
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


class SmallCNN(nnx.Module):
    """Two strided 3x3 convolutions and a linear head: (B, T, H, W, C) -> (B, 1)."""

    def __init__(self, channels: int, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(channels, 16, (3, 3), strides=(2, 2), rngs=rngs)
        self.conv2 = nnx.Conv(16, 32, (3, 3), strides=(2, 2), rngs=rngs)
        self.head = nnx.Linear(32, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, h, w, c = x.shape
        x = jnp.moveaxis(x, 1, -2).reshape(b, h, w, t * c)  # steps as channels
        x = nnx.relu(self.conv2(nnx.relu(self.conv1(x))))
        return self.head(x.mean(axis=(1, 2)))


def make_train_step(model: nnx.Module, tx: optax.GradientTransformation):
    graphdef, params = nnx.split(model)

    def loss_fn(params, x, y, weight):
        pred = nnx.merge(graphdef, params)(x)
        return jnp.sum(weight[:, None] * (pred - y) ** 2) / jnp.maximum(weight.sum(), 1.0)

    @jax.jit
    def step(params, opt_state, x, y, weight):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y, weight)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step, params


def data_wait(loader: cd.WindowLoader, epochs: int) -> list[tuple[float, float, float]]:
    """Train ``epochs`` epochs of a small CNN on ``loader``; for each, the fraction of its wall
    time spent blocked in ``next(batches)``, the part of it spent on the first batch (filling
    the pipeline), and the wall time in seconds."""
    model = SmallCNN(loader.spec.input_shape[-1] * loader.input_steps, nnx.Rngs(0))
    tx = optax.adam(1e-3)
    step, params = make_train_step(model, tx)
    opt_state = tx.init(params)
    first = next(iter(loader.epoch(0)))
    params, opt_state, loss = step(params, opt_state, first.x, first.y, first.weight)  # compile
    loss.block_until_ready()
    results = []
    for epoch in range(1, epochs + 1):
        waits = []
        start = time.perf_counter()
        batches = loader.epoch(epoch)
        while True:
            before = time.perf_counter()
            batch = next(batches, None)
            waits.append(time.perf_counter() - before)
            if batch is None:
                break
            params, opt_state, loss = step(params, opt_state, batch.x, batch.y, batch.weight)
            loss.block_until_ready()  # per-step loss logging: no overlap from async dispatch
        wall = time.perf_counter() - start
        results.append((sum(waits) / wall, waits[0] / wall, wall))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds per contender")
    args = parser.parse_args()
    n_time, size, chunk = (512, 32, 64) if args.quick else (4096, 64, 128)
    rounds = args.rounds or (1 if args.quick else 3)
    steps, batch = 4, 32
    xb_batches = 4 if args.quick else 20  # xbatcher is slow: time its first batches only
    epochs = 1 if args.quick else 3  # of CNN training, for the data-wait fraction

    workdir = Path(tempfile.mkdtemp(prefix="climml-loader-bench-"))
    try:
        path = workdir / "fields.zarr"
        write_store(path, n_time, size, chunk)
        n_windows = (n_time - steps + 1) // batch * batch  # xbatcher drops the partial batch
        ordered = climml_loader(path, steps, batch, n_windows)
        shuffled = climml_loader(path, steps, batch, n_windows, shuffle=True)
        check_same_windows(path, steps, batch, size, ordered)

        contenders = {
            "xbatcher": (lambda: xbatcher_batches(path, steps, batch, size), xb_batches),
            "xbatcher, store loaded in memory first": (
                lambda: xbatcher_batches(path, steps, batch, size, in_memory=True),
                xb_batches,
            ),
            "climml": (lambda: climml_batches(ordered), len(ordered)),
            "climml shuffled": (lambda: climml_batches(shuffled), len(shuffled)),
        }
        best = {name: 0.0 for name in contenders}
        for _ in range(rounds):
            for name, (batches, limit) in contenders.items():
                best[name] = max(best[name], rate(batches, limit)[0])
        memory = {name: peak_mib(batches, xb_batches) for name, (batches, _) in contenders.items()}
        memory["climml (whole epoch)"] = peak_mib(contenders["climml"][0], len(ordered))

        train = climml_loader(path, steps, batch, n_windows, shuffle=True)
        inline = climml_loader(path, steps, batch, n_windows, shuffle=True, prefetch=0)
        wait = data_wait(train, epochs)
        wait_inline = data_wait(inline, epochs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    report(
        args, n_time, size, chunk, steps, batch, rounds, xb_batches, best, memory, wait, wait_inline
    )


def check_same_windows(path, steps, batch, size, loader) -> None:
    """Both contenders must produce identical arrays, or the comparison means nothing."""
    ours = next(climml_batches(loader))
    theirs = next(xbatcher_batches(path, steps, batch, size))
    np.testing.assert_array_equal(ours, theirs)


def report(
    args, n_time, size, chunk, steps, batch, rounds, xb_batches, best, memory, wait, wait_inline
) -> None:
    ratio = best["climml"] / best["xbatcher"]
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"jax {jax.__version__}, xarray {xr.__version__}, xbatcher {xbatcher.__version__}")
    print(
        f"store: {n_time} steps x {size} x {size} x {len(VARIABLES)} float32, "
        f"chunks of {chunk} steps; windows of {steps} steps, batches of {batch}"
    )
    print(f"best of {rounds} rounds (xbatcher: first {xb_batches} batches per round)")
    print()
    print("| loader | samples/s | peak traced MiB |")
    print("|---|---:|---:|")
    for name in best:
        print(f"| {name} | {best[name]:,.0f} | {memory[name]:.1f} |")
    print(f"| climml (whole epoch) | | {memory['climml (whole epoch)']:.1f} |")
    print()
    print(f"climml / xbatcher speed: {ratio:.1f}x (lazy store, as climml reads it)")
    in_memory = best["climml"] / best["xbatcher, store loaded in memory first"]
    print(f"climml / xbatcher with the store preloaded: {in_memory:.1f}x")
    print()
    print("| CNN training epoch | wall s | waiting for data | of which first batch |")
    print("|---|---:|---:|---:|")
    for label, runs in (("prefetch=2", wait), ("prefetch=0", wait_inline)):
        for i, (fraction, first, wall) in enumerate(runs, start=1):
            row = f"{wall:.2f} | {100 * fraction:.1f}% | {100 * first:.1f}%"
            print(f"| {label}, epoch {i} | {row} |")


if __name__ == "__main__":
    main()
