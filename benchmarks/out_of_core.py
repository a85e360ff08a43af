"""Out-of-core scoring: ``climml.tasks.out_of_core.score_dataset`` vs xarray + dask computing
the same RMSE directly from the same zarr store.

The store holds a forecast and observations (``time, lead, lat, lon`` float32, ~2% of the
observations missing, chunked ``--chunk`` steps along time), larger than what a scoring job
would hold at once. Both contenders compute, per lead, WeatherBench 2's RMSE: the square root
of the time mean of the latitude-weighted spatial MSE, reading the store chunk by chunk on
dask's threaded scheduler:

* climml: ``score_dataset(store, ["model"], specs=[rmse], weights=cos(lat))``: per chunk the
  ``ErrorSums`` kernel (one jitted program), summed in a tree, the ratio last;
* xarray (the peer a user would write):
  ``np.sqrt(((f - o) ** 2).weighted(w).mean(("lat", "lon")).mean("time")).compute()``.

Rounds alternate the two; the script prints each round's throughput and ratio (MiB of store read per
second), tracemalloc's peak, the ratio and the largest difference between the two RMSEs.

    python benchmarks/out_of_core.py            # 3 rounds, 2400 steps x 2 leads x 48 x 96
    python benchmarks/out_of_core.py --quick    # 1 round, 480 steps
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import xarray as xr


def make_store(path: Path, steps: int, chunk: int, grid=(48, 96)) -> int:
    """Write the forecast/observation store chunk by chunk; returns its bytes (uncompressed)."""
    lat = np.linspace(-88.125, 88.125, grid[0])
    lon = np.arange(grid[1]) * 360 / grid[1]
    coords = {"lead": [1, 2], "lat": lat, "lon": lon}
    dims = ("time", "lead", "lat", "lon")
    shape = (steps, 2, *grid)
    rng = np.random.default_rng(0)
    for start in range(0, steps, chunk):
        n = min(chunk, steps - start)
        observed = 280 + rng.normal(0, 5, (n, *shape[1:])).astype(np.float32)
        model = observed + rng.normal(0.1, 1.0, observed.shape).astype(np.float32)
        observed[rng.random(observed.shape) < 0.02] = np.nan
        part = xr.Dataset(
            {"model": (dims, model), "observed": (dims, observed)},
            {**coords, "time": np.arange(start, start + n)},
        ).chunk({"time": chunk})
        if start == 0:
            part.to_zarr(path, mode="w")
        else:
            part.to_zarr(path, append_dim="time")
    return 2 * 4 * int(np.prod(shape))


def climml_rmse(path: Path) -> np.ndarray:
    from climml.tasks import metric_specs, out_of_core

    store = xr.open_zarr(path)
    weights = np.cos(np.deg2rad(store["lat"].values))[:, None]
    specs = metric_specs.parse(["rmse"])
    scores = out_of_core.score_dataset(store, ["model"], specs=specs, weights=weights)
    return np.array(list(scores["model"]["rmse"].values()))


def xarray_rmse(path: Path) -> np.ndarray:
    store = xr.open_zarr(path)
    weights = np.cos(np.deg2rad(store["lat"]))
    squared = (store["model"] - store["observed"]) ** 2
    mse = squared.weighted(weights).mean(("lat", "lon")).mean("time")
    return np.sqrt(mse.compute().values)


def timed(fn, path: Path) -> tuple[np.ndarray, float, int]:
    tracemalloc.start()
    start = time.perf_counter()
    out = fn(path)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2400)
    parser.add_argument("--chunk", type=int, default=100)
    args = parser.parse_args()
    rounds, steps = (1, 480) if args.quick else (args.rounds, args.steps)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    scratch = Path(tempfile.mkdtemp(prefix="climml-ooc-"))
    try:
        path = scratch / "scores.zarr"
        nbytes = make_store(path, steps, args.chunk)
        mib = nbytes / 2**20
        print(f"store: {steps} steps x 2 leads x 48 x 96, {mib:.0f} MiB, chunks of {args.chunk}")
        contenders = {"climml": climml_rmse, "xarray": xarray_rmse}
        for fn in contenders.values():
            fn(path)  # warm-up: imports, compilation
        rates: dict[str, list[float]] = {k: [] for k in contenders}
        peaks: dict[str, int] = {}
        results = {}
        for r in range(rounds):
            order = list(contenders) if r % 2 == 0 else list(contenders)[::-1]
            for name in order:
                results[name], seconds, peak = timed(contenders[name], path)
                rates[name].append(mib / seconds)
                peaks[name] = max(peaks.get(name, 0), peak)
            ratio = rates["climml"][-1] / rates["xarray"][-1]
            each = ", ".join(f"{k} {rates[k][-1]:.0f} MiB/s" for k in contenders)
            print(f"round {r + 1}: {each}, ratio {ratio:.2f}x")
        diff = np.max(np.abs(results["climml"] / results["xarray"] - 1))
        best = {k: max(v) for k, v in rates.items()}
        print(", ".join(f"{k}: best {best[k]:.0f} MiB/s, peak {peaks[k] / 2**20:.1f} MiB"
                        for k in contenders))  # fmt: skip
        median = np.median(np.divide(rates["climml"], rates["xarray"]))
        print(
            f"ratio climml / xarray: best of rounds {best['climml'] / best['xarray']:.2f}x, "
            f"median of the rounds' ratios {median:.2f}x; "
            f"RMSE {results['climml'].round(4).tolist()}, max relative difference {diff:.1e}"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
