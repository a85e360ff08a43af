"""Batch-job figures: the start-up a warm compilation cache saves a rescheduled CLI job, and
streaming prediction's throughput and peak memory against predicting in one piece.

1. ``climml train`` of a small quickstart (a fresh run directory each time, so it really
   trains) in a child process, timed from launch to exit: with the compilation cache off, with
   an empty cache (the first run of a job: compiles and writes the cache) and with that cache
   filled (the rescheduled job). Rounds alternate the three.
2. ``climml.predict_stream.predict_store`` over a zarr store of ``--months`` monthly steps of
   the quickstart's synthetic ocean, after one warm-up call (imports, compilation): samples/s
   and tracemalloc's peak, for chunks of 64 initializations, the default chunking, and the whole
   store as one chunk (what holding the input in memory costs).

    python benchmarks/batch_jobs.py            # 3 rounds, 4500-month store
    python benchmarks/batch_jobs.py --quick    # 1 round, 1200 months
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
# the quickstart on 30 years of a 12 x 24 grid, 2 epochs: a job whose start-up matters
SMALL = [
    "data.source_args={n_months: 360, seed: 0, nlat: 12, nlon: 24}",
    "data.splits={train: [1870-01, 1884-12], val: [1885-01, 1889-12], test: [1890-01, 1899-12]}",
    "model.filters=[8]",
    "model.hidden=[8]",
    "train.epochs=2",
    "output.progress=false",
    "eval.explain.enabled=false",
]


def train_seconds(workdir: Path, cache: str) -> float:
    """Wall seconds of one ``climml train`` child process with ``CLIMML_COMPILATION_CACHE``."""
    env = {**os.environ, "CLIMML_COMPILATION_CACHE": cache, "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "climml.cli", "train", str(QUICKSTART),
           "--workdir", str(workdir), "--set", *SMALL]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - started


def compilation_cache(rounds: int, scratch: Path) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"off": [], "empty cache": [], "filled cache": []}
    for r in range(rounds):
        cache = scratch / f"cache{r}"
        times["off"].append(train_seconds(scratch / f"off{r}", "off"))
        times["empty cache"].append(train_seconds(scratch / f"cold{r}", str(cache)))
        times["filled cache"].append(train_seconds(scratch / f"warm{r}", str(cache)))
        files = sum(1 for _ in cache.iterdir())
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items())
              + f"; cache {files} files")  # fmt: skip
    return times


def streaming(months: int, scratch: Path) -> list[tuple[str, int, float, float]]:
    from climml import config
    from climml.cli import main
    from climml.data import synthetic
    from climml.predict_stream import predict_store

    os.environ.setdefault("CLIMML_COMPILATION_CACHE", "off")
    run = scratch / "run"
    assert main(["train", str(QUICKSTART), "--workdir", str(run), "--set", *SMALL]) == 0
    cfg = config.load(QUICKSTART, SMALL)
    store = scratch / "input.zarr"
    ds = synthetic.enso(n_months=months, seed=1, nlat=12, nlon=24)
    ds.chunk({"time": 24}).to_zarr(store)
    input_mib = ds[["sst", "heat_content"]].nbytes / 2**20
    print(f"input: {months} months, {input_mib:.1f} MiB of inputs")
    warm = scratch / "warm.zarr"
    predict_store(cfg, run, store, warm, chunk_steps=64)  # imports, compilation
    rows = []
    for label, chunk in (("chunks of 64", 64), ("default chunks", None), ("one chunk", months)):
        out = scratch / f"out-{label.replace(' ', '-')}.zarr"
        tracemalloc.start()
        started = time.perf_counter()
        done = predict_store(cfg, run, store, out, chunk_steps=chunk)
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        samples = months - cfg.data.input_steps + 1
        rows.append((label, done.chunks, samples / seconds, peak))
        print(f"{label:>15}: {done.chunks:4d} chunks, {samples / seconds:8.0f} samples/s, "
              f"peak {peak:6.1f} MiB")  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--months", type=int, default=4500)  # 1870-2244: datetime64[ns]
    args = parser.parse_args()
    rounds, months = (1, 1200) if args.quick else (args.rounds, args.months)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    scratch = Path(tempfile.mkdtemp(prefix="climml-batch-"))
    try:
        times = compilation_cache(rounds, scratch)
        best = {k: min(v) for k, v in times.items()}
        median = {k: float(np.median(v)) for k, v in times.items()}
        print("compilation cache, best (median) of rounds: " + ", ".join(
            f"{k} {best[k]:.1f} s ({median[k]:.1f})" for k in times))  # fmt: skip
        saved_off = best["off"] - best["filled cache"]
        saved_first = best["empty cache"] - best["filled cache"]
        print(f"start-up saved by a filled cache: {saved_off:.1f} s vs off, "
              f"{saved_first:.1f} s vs the first run")  # fmt: skip
        streaming(months, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
