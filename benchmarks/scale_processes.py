"""Overhead of training over 2 processes instead of 1, for the same global work (issue 14).

Both runs train the quickstart CNN on the quickstart data with the same global batch (32
samples) for the same steps. One run is a single process with one CPU device; the other is two
local processes joined by ``jax.distributed`` (gloo collectives), one CPU device each, each
loading and computing half of every batch and all-reducing the gradients. Timed: the steady
state (an epoch after a warm-up epoch that compiles), loading included, until the last step's
parameters are ready. Reported: seconds per epoch for both and the ratio 2 processes / 1 process
(the target is an overhead under 20%, i.e. a ratio below 1.2), best of ``--rounds`` rounds
with the two alternating, since the machine may be shared.

    python benchmarks/scale_processes.py             # quickstart data, best of 3 rounds
    python benchmarks/scale_processes.py --quick     # small smoke run

On a machine with P cores the 2-process run can be faster (ratio < 1): each process runs its
own XLA thread pool on half of the batch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICK = [
    "data.source_args={n_months: 360, seed: 0, nlat: 12, nlon: 24}",
    "data.splits={train: [1870-01, 1884-12], val: [1885-01, 1889-12], test: [1890-01, 1899-12]}",
]


def worker(overrides: list[str], epochs: int) -> None:
    """One process of a run: train ``epochs`` epochs, print process 0's per-epoch seconds."""
    import jax

    from climml import config, pipeline
    from climml.train import distributed
    from climml.train.loop import Trainer

    cfg = config.load(ROOT / "configs/quickstart.yaml", overrides)
    distributed.initialize(cfg.train.distributed)
    exp = pipeline.prepare(cfg)
    loader = exp.loader("train", training=True)
    if jax.process_count() > 1:
        loader = loader.shard(jax.process_index(), jax.process_count())
    trainer = Trainer(
        pipeline.build_model(exp),
        cfg.train,
        steps_per_epoch=len(loader),
        batch_size=loader.batch_size,
    )
    state, key, seconds = trainer.initial, jax.random.key(0), []
    for epoch in range(epochs):
        start = time.perf_counter()
        for step, batch in enumerate(loader.epoch(epoch)):
            state, _ = trainer.train_step(
                state, trainer.device_batch(batch), jax.random.fold_in(key, step)
            )
        jax.block_until_ready(state.params)
        seconds.append(time.perf_counter() - start)
    if jax.process_index() == 0:
        print(json.dumps({"seconds": seconds, "steps": len(loader), "samples": loader.num_samples}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run(processes: int, overrides: list[str], epochs: int) -> dict:
    """Launch ``processes`` workers (one CPU device each); process 0's report."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}  # fmt: skip
    port = _free_port()
    procs = []
    for i in range(processes):
        extra = ["train.devices=null"]
        if processes > 1:
            extra.append(
                f"train.distributed={{coordinator: 'localhost:{port}', "
                f"num_processes: {processes}, process_id: {i}}}"
            )
        cmd = [sys.executable, __file__, "--worker", str(epochs), json.dumps([*overrides, *extra])]
        procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE))
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"a worker failed: {[p.returncode for p in procs]}")
    return json.loads(outs[0].decode().strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid, 15 years")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (first: warm-up)")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker[1]), int(args.worker[0]))
        return
    overrides = QUICK if args.quick else []
    best: dict[int, float] = {}
    for r in range(args.rounds):
        for processes in (1, 2):
            report = run(processes, overrides, args.epochs)
            epoch_s = min(report["seconds"][1:])  # the first epoch compiles
            best[processes] = min(best.get(processes, float("inf")), epoch_s)
            print(
                f"round {r + 1}: {processes} process(es): {epoch_s:.3f} s/epoch "
                f"({report['steps']} steps, {report['samples']} samples; epochs "
                + ", ".join(f"{s:.3f}" for s in report["seconds"])
                + " s)",
                flush=True,
            )
    ratio = best[2] / best[1]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"best s/epoch: 1 process {best[1]:.3f}, 2 processes {best[2]:.3f}")
    print(f"ratio 2 processes / 1 process: {ratio:.2f} (overhead {100 * (ratio - 1):+.0f}%)")


if __name__ == "__main__":
    main()
