"""Members in one vmapped run vs the same members as sequential runs (issue 14).

Two claims, each the same work in the same process:

* ensemble: 8 members of the quickstart CNN (seeds 0..7) trained by
  ``climml.train.ensemble.fit_members`` in one jitted step (members vmapped on accelerators,
  unrolled in the step on CPU), vs 8 ``climml.train.fit`` runs one after another (what a user
  without ensembles would do);
* learning-rate sweep: 8 learning rates (1e-4 .. 1e-2, log-spaced) as one ``climml.sweep.run``
  (one compiled run of 8 members), vs 8 ``fit`` runs, one per learning rate.

Both sides train the same epochs on the same batches and validate every epoch. Reported:
end-to-end seconds (compilation, data loading and validation included: what a user waits for)
and steady-state seconds per epoch (the epochs after the first, which compiles), with the
ratio sequential / vmapped for each; best of ``--rounds`` rounds, the two sides alternating,
since the machine may be shared.

    python benchmarks/scale.py            # quickstart data and CNN, 3 epochs, 2 rounds
    python benchmarks/scale.py --quick    # smoke run: small grid, small CNN, 2 epochs
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
QUICK = [
    "data.source_args={n_months: 360, seed: 0, nlat: 12, nlon: 24}",
    "data.splits={train: [1870-01, 1884-12], val: [1885-01, 1889-12], test: [1890-01, 1899-12]}",
    "model.filters=[8]",
    "model.hidden=[8]",
]
MEMBERS = 8
LRS = [float(x) for x in np.geomspace(1e-4, 1e-2, MEMBERS)]


def _steady(history: list[dict]) -> float:
    """Seconds per epoch after the first (which compiles)."""
    later = [h["wall_s"] for h in history[1:]]
    return float(np.mean(later)) if later else float("nan")


def ensemble_round(exp, cfg) -> dict[str, float]:
    from climml import pipeline
    from climml.train.ensemble import fit_members, member_rngs, member_seeds
    from climml.train.loop import fit

    seeds = member_seeds(cfg.seed, MEMBERS)
    build = pipeline.model_builder(exp)
    t0 = time.perf_counter()
    vm = fit_members(
        build, exp.loader("train", training=True), exp.loader("val"), cfg.train,
        seeds=seeds, progress=False,
    )  # fmt: skip
    t_vm = time.perf_counter() - t0
    t0, per_epoch = time.perf_counter(), 0.0
    for s in seeds:
        one = fit(
            build(member_rngs(s)), exp.loader("train", training=True), exp.loader("val"),
            cfg.train, seed=s, progress=False,
        )  # fmt: skip
        per_epoch += _steady(one.history)
    t_seq = time.perf_counter() - t0
    return {"vmapped_s": t_vm, "sequential_s": t_seq,
            "vmapped_epoch_s": _steady(vm.history), "sequential_epoch_s": per_epoch}  # fmt: skip


def sweep_round(exp, cfg, overrides: list[str]) -> dict[str, float]:
    from climml import pipeline, sweep
    from climml.train.ensemble import member_rngs
    from climml.train.loop import fit

    build = pipeline.model_builder(exp)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = sweep.run(
            ROOT / "configs/quickstart.yaml", {"train.lr": LRS}, overrides=overrides,
            workdir=tmp, progress=False,
        )  # fmt: skip
        t_vm = time.perf_counter() - t0
        assert len(result.rows) == MEMBERS and result.rows[0]["members_in_group"] == MEMBERS
    t0, per_epoch = time.perf_counter(), 0.0
    for lr in LRS:
        train_cfg = dataclasses.replace(cfg.train, lr=lr)
        one = fit(
            build(member_rngs(cfg.seed)), exp.loader("train", training=True),
            exp.loader("val"), train_cfg, seed=cfg.seed, progress=False,
        )  # fmt: skip
        per_epoch += _steady(one.history)
    t_seq = time.perf_counter() - t0
    return {"vmapped_s": t_vm, "sequential_s": t_seq, "sequential_epoch_s": per_epoch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=None, help="default 3 (quick: 2)")
    args = parser.parse_args()

    from climml import config, pipeline

    epochs = args.epochs or (2 if args.quick else 3)
    overrides = (QUICK if args.quick else []) + [
        f"train.epochs={epochs}", "train.patience=null", "output.progress=false",
        "eval.explain.enabled=false",
    ]  # fmt: skip
    cfg = config.load(ROOT / "configs/quickstart.yaml", overrides)
    exp = pipeline.prepare(cfg)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  commit {commit}  "
          f"{platform.processor() or platform.machine()}  {os.cpu_count()} CPUs  "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{MEMBERS} members, {epochs} epochs of {len(exp.loader('train'))} steps "
          f"(batch {cfg.data.batch_size}), model {cfg.model}")  # fmt: skip
    ens, swp = [], []
    for r in range(args.rounds):
        ens.append(ensemble_round(exp, cfg))
        print(f"round {r + 1} ensemble: {ens[-1]}", flush=True)
        swp.append(sweep_round(exp, cfg, overrides))
        print(f"round {r + 1} lr sweep: {swp[-1]}", flush=True)

    def best(rows, key):
        return min(row[key] for row in rows)

    e_total = best(ens, "sequential_s") / best(ens, "vmapped_s")
    e_epoch = best(ens, "sequential_epoch_s") / best(ens, "vmapped_epoch_s")
    s_total = best(swp, "sequential_s") / best(swp, "vmapped_s")
    print(f"ensemble of {MEMBERS}: vmapped {best(ens, 'vmapped_s'):.1f} s vs sequential "
          f"{best(ens, 'sequential_s'):.1f} s end to end: {e_total:.2f}x; steady state "
          f"{best(ens, 'vmapped_epoch_s'):.2f} vs {best(ens, 'sequential_epoch_s'):.2f} s per "
          f"epoch of all members: {e_epoch:.2f}x")  # fmt: skip
    print(
        f"lr sweep of {MEMBERS}: climml sweep {best(swp, 'vmapped_s'):.1f} s vs "
        f"{MEMBERS} runs {best(swp, 'sequential_s'):.1f} s end to end: {s_total:.2f}x"
    )
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
