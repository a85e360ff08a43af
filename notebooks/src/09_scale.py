# %% [markdown]
# # 9. Scale: many devices, a Dask cluster, ensembles and resumable batch jobs
#
# The same experiment that trains on a laptop must run on a GPU node, a TPU pod or a cluster
# queue without being rewritten. climml gets there with the engines that already exist, and
# every one of them can be tried on one laptop CPU:
#
# 1. **data parallelism** over a device mesh (`jax.sharding`), here with 8 *simulated* devices;
# 2. **Dask** for the statistics of big data, here on a `LocalCluster`;
# 3. an **ensemble** of models trained in one vmapped program;
# 4. **batch jobs** that survive being killed and resume where they stopped.
#
# The experiment throughout is the README's quickstart (the ENSO CNN of notebook 2), shrunk.

# %%
import os

# JAX fixes its devices when it starts: ask for 8 simulated CPU devices before importing it.
# (On a GPU/TPU machine leave this out and the real devices are used.)
flags = os.environ.get("XLA_FLAGS", "")
if "--xla_force_host_platform_device_count" not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=8".strip()

import json  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import distributed  # noqa: E402, F401  (imported first so that its loggers exist)
import jax  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

import climml as cm  # noqa: E402
from climml.viz import plots  # noqa: E402

FAST = os.environ.get("CLIMML_NOTEBOOK_FAST") == "1"  # the test suite's shrunken run
SMALL = [  # 30 years on a 12 x 24 grid, one small conv layer
    "data.source_args={n_months: 360, seed: 0, nlat: 12, nlon: 24}",
    "data.splits={train: [1870-01, 1884-12], val: [1885-01, 1889-12], test: [1890-01, 1899-12]}",
    "model.filters=[8]",
    "model.hidden=[8]",
    "eval.explain.enabled=false",
    "output.progress=false",
    "output.plots=false",
    f"train.epochs={1 if FAST else 8}",
]
root = Path(tempfile.mkdtemp(prefix="climml_scale_"))
for name in list(logging.root.manager.loggerDict):  # quiet the Dask cluster's start-up chatter
    if name.startswith("distributed"):
        logging.getLogger(name).setLevel(logging.WARNING)
print(len(jax.devices()), "devices:", jax.devices()[:2], "...")

# %% [markdown]
# ## 1. Data parallelism: one model, eight devices
#
# With `train.devices: 8` every batch is split into 8 shards along the sample axis, one per
# device; each device computes the gradient of its shard, the gradients are averaged across
# devices (an all-reduce XLA inserts), and the replicated parameters take the same step. The
# result does not depend on the number of devices: the same batches, the same mean gradient.


# %%
def fit(overrides):
    cfg = cm.config.load("../configs/quickstart.yaml", overrides=[*SMALL, *overrides])
    exp = cm.pipeline.prepare(cfg)
    model = cm.pipeline.build_model(exp)
    start = time.perf_counter()
    result = cm.train.fit(
        model,
        exp.loader("train", training=True),
        exp.loader("val"),
        cfg.train,
        seed=0,
        progress=False,
    )
    return result.history, time.perf_counter() - start


one, t1 = fit(["train.devices=1"])
eight, t8 = fit(["train.devices=8"])
for a, b in zip(one, eight, strict=True):
    print(
        f"epoch {a['epoch']}: validation loss {a['val_loss']:.6f} on 1 device, "
        f"{b['val_loss']:.6f} on 8"
    )
print(f"wall time: {t1:.1f} s on 1 device, {t8:.1f} s on 8 simulated ones")

# %% [markdown]
# The losses agree to float32 rounding (the order of the sums differs). Simulated devices share
# this machine's cores, so they show the mechanics, not a speed-up; on 8 GPUs the same config
# trains on 8 times the batch per step. `train.devices: null` takes every device of every
# process (several hosts: `train.distributed`, see the README).
#
# ## 2. Dask: statistics of data larger than memory
#
# Before training, the normalizer computes means and standard deviations over the training
# years. climml keeps the data lazy (dask arrays) and lets dask compute such reductions chunk by
# chunk: on threads by default, or on a **Dask cluster** with `data.dask` (a `LocalCluster` of
# worker processes here; a scheduler address for a cluster started by dask-jobqueue on Slurm or
# PBS). The statistics are the same wherever they are computed.

# %%
threads = cm.pipeline.prepare(
    cm.config.load(
        "../configs/quickstart.yaml", overrides=[*SMALL, "data.dask={scheduler: threads}"]
    )
)
cluster = cm.pipeline.prepare(
    cm.config.load(
        "../configs/quickstart.yaml",
        overrides=[*SMALL, "data.dask={scheduler: local, n_workers: 2, threads_per_worker: 1}"],
    )
)
a, b = threads.normalizer.to_dataset(), cluster.normalizer.to_dataset()
print(
    "largest difference between the statistics:",
    max(float(np.nanmax(np.abs(a[v] - b[v]))) for v in a.data_vars),
)

# %% [markdown]
# ## 3. An ensemble in one program
#
# An ensemble of networks trained from different random initializations gives a spread that
# says how much to trust a forecast. Training N members one after the other costs N runs;
# `train.ensemble_members: N` stacks the N members' parameters along a new axis and `vmap`s the
# single-model train step over it, so they compile once and train as one program (their small
# matrix products become one larger one). Each member keeps its own early stopping and best
# parameters. The forecasts gain a `member` dimension, and the evaluation adds the CRPS,
# spread and rank histograms of notebook 7.

# %%
ens_cfg = cm.config.load(
    "../configs/quickstart.yaml",
    overrides=[*SMALL, "train.ensemble_members=4", "eval.metrics=[rmse, acc, crps]"],
)
result = cm.run(ens_cfg, workdir=root / "ensemble")
for name in ("model", "persistence"):
    crps = ", ".join(f"{v:.3f}" for v in result.metrics[name]["crps"].values())
    print(f"{name:>12}: CRPS {crps} degC at leads 1, 3, 6 months")
forecast = xr.open_zarr(root / "ensemble" / "predictions.zarr")
print("forecast dims:", dict(forecast["model"].sizes))
plots.plot_rank_histogram(
    forecast["model"].sel(lead=6).transpose("time", "member").values,
    forecast["observed"].sel(lead=6).values,
    name="4-member CNN ensemble, 6 months ahead",
)

# %% [markdown]
# Four members cannot describe a distribution well, and members that differ only in their
# initialization are usually too alike: the observation falls outside all of them too often
# (high bars at both ends, a U: under-dispersive), and a pile at one end says the ensemble is
# biased (rank 0: the observation below every member). Bootstrap
# resampling of the training set (`train.ensemble_bootstrap: true`) widens the spread.
#
# ## 4. A batch job that survives being killed
#
# On a shared cluster, jobs are pre-empted: the scheduler sends SIGTERM and, a little later,
# kills the process. `climml run` checkpoints parameters, optimizer state, loader position and
# history (orbax), and on SIGTERM it finishes the current step, saves, and exits with status
# 143; running the same command again continues from the checkpoint. We play the scheduler:
# start `climml train` (the training stage of `climml run`), send SIGTERM once the first
# checkpoint exists, and start it again.

# %%
job = root / "job"
command = [
    sys.executable,
    "-m",
    "climml.cli",
    "train",
    "../configs/quickstart.yaml",
    "--workdir",
    str(job),
    "--set",
    *SMALL,
    f"train.epochs={2 if FAST else 4}",
    "train.checkpoint_every=3",
    "train.patience=null",
]
process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
deadline = time.time() + 300
while not any((job / "checkpoints").glob("*")) and process.poll() is None:
    if time.time() > deadline:
        raise TimeoutError("no checkpoint within 5 minutes")
    time.sleep(0.5)
process.send_signal(signal.SIGTERM)
output, _ = process.communicate()
print("first attempt, exit status", process.returncode)
print("   ", output.strip().splitlines()[-1])

# %%
again = subprocess.run(command, capture_output=True, text=True)
print("second attempt, exit status", again.returncode)
print("   ", "\n    ".join((again.stdout + again.stderr).strip().splitlines()[-3:]))
history = json.loads((job / "history.json").read_text())
print("epochs in the final history:", [h["epoch"] for h in history])

# %% [markdown]
# The second attempt picked up at the saved step and finished the run; the history has every
# epoch once. Re-running a finished job is a one-line no-op (`--force` starts over), so a
# scheduler can retry a job list blindly. `output.compilation_cache` keeps JAX's compiled
# programs on disk so that the restart does not pay the compilation again.
#
# **Takeaways.** Scale by configuration, not by rewriting: `train.devices` for data parallelism,
# `data.dask` for out-of-core statistics, `train.ensemble_members` for ensembles, and
# `climml run` as the resumable unit of a batch job.
