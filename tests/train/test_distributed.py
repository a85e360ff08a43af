"""Multi-process training: two CPU processes joined by ``jax.distributed`` (gloo collectives)
train like one process on the same global batches.

The processes are real ``climml train`` commands on one machine, one simulated CPU device each,
sharing a workdir, as a multi-host job shares a file system.
"""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from climml import config, pipeline
from climml.config import DistributedConfig
from climml.errors import ConfigError
from climml.train import distributed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _train(workdir, overrides, devices=1) -> subprocess.Popen:
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
    }
    cmd = [sys.executable, "-m", "climml.cli", "train", "configs/quickstart.yaml",
           "--workdir", str(workdir), "--set", *overrides]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out.decode()[-3000:]


def _params(overrides, workdir):
    """The best parameters saved in ``workdir``, restored in this (8-device) process."""
    cfg = config.load("configs/quickstart.yaml", overrides)
    return jax.tree.leaves(pipeline.trained_model(pipeline.prepare(cfg), workdir).params)


@pytest.mark.slow
def test_two_processes_train_like_one_on_the_same_global_batches(tmp_path, tiny_quickstart):
    port = _free_port()
    common = [*tiny_quickstart, "train.devices=null", "train.checkpoint_every=3"]
    procs = [
        _train(
            tmp_path / "two",
            [
                *common,
                f"train.distributed={{coordinator: 'localhost:{port}', "
                f"num_processes: 2, process_id: {i}}}",
            ],
        )
        for i in range(2)
    ]
    one = _train(tmp_path / "one", common)
    for proc in [*procs, one]:
        _wait(proc)

    two_hist = json.loads((tmp_path / "two" / "history.json").read_text())
    one_hist = json.loads((tmp_path / "one" / "history.json").read_text())
    assert len(two_hist) == len(one_hist) == 2
    for key in ("train_loss", "val_loss"):
        np.testing.assert_allclose(
            [h[key] for h in two_hist], [h[key] for h in one_hist], rtol=1e-5
        )
    assert two_hist[1]["train_loss"] < two_hist[0]["train_loss"]  # it trained
    # The two-process checkpoint (written shard by shard by both processes) restores in one
    # process, on 8 devices, and holds the single-process run's parameters.
    for a, b in zip(
        _params(common, tmp_path / "two"), _params(common, tmp_path / "one"), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


# Per-step losses of a small MLP trained on one fixed random batch of 16 samples, with the
# Trainer the fit loop uses; argv: coordinator ("" for one process), process count, process id.
_STEPS = """
import json, sys
import jax, numpy as np
from flax import nnx
from climml.config import DistributedConfig, TrainConfig
from climml.models import IOSpec, build
from climml.models.mlp import MLPConfig
from climml.train import distributed, parallel
from climml.train.loop import Trainer

coordinator, count, pid = sys.argv[1] or None, int(sys.argv[2]), int(sys.argv[3])
processes = DistributedConfig(coordinator, count, pid) if coordinator else DistributedConfig()
cfg = TrainConfig(lr=1e-2, devices=None, distributed=processes)
distributed.initialize(cfg.distributed)
model = build(MLPConfig(hidden=(32,)), IOSpec((2, 6, 3), (2,)), nnx.Rngs(0))
trainer = Trainer(model, cfg, steps_per_epoch=6, batch_size=16)
rows = slice(pid * 16 // count, (pid + 1) * 16 // count)  # this process's rows
x = np.random.default_rng(0).normal(size=(16, 2, 6, 3)).astype(np.float32)
batch = {"x": x, "y": x[:, -1, :2, 0] * 2.0, "y_valid": np.ones((16, 2), np.float32),
         "weight": np.ones(16, np.float32)}
state, losses = trainer.initial, []
for step in range(6):
    local = {k: v[rows] for k, v in batch.items()}
    global_batch = parallel.shard_batch(local, trainer.mesh)
    state, loss = trainer.train_step(state, global_batch, jax.random.key(step))
    losses.append(float(loss))
print(json.dumps(losses))
"""


def _steps(*args: str) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}  # fmt: skip
    cmd = [sys.executable, "-c", _STEPS, *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_two_processes_take_the_steps_of_one_with_half_the_rows_each():
    """The fast variant: each process passes only its 8 rows of every 16-sample batch."""
    coordinator = f"localhost:{_free_port()}"
    procs = [_steps(coordinator, "2", str(i)) for i in range(2)] + [_steps("", "1", "0")]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-3000:]
    # the last line: gloo reports its connections on stdout
    two_a, two_b, one = (json.loads(out.decode().splitlines()[-1]) for out, _ in outs)
    assert two_a == two_b  # both processes see the same global loss
    np.testing.assert_allclose(two_a, one, rtol=1e-6)
    assert one[-1] < one[0]


def test_process_shards_of_a_loader_make_up_its_batches(small_config):
    """Process p of P cuts rows p*B/P .. (p+1)*B/P of each global batch: shuffled order,
    padding and resume position as in the whole loader."""
    exp = pipeline.prepare(small_config("data.batch_size=12"))
    whole = exp.loader("train", training=True)
    assert whole.num_samples % 12  # the last batch is padded
    shards = [whole.shard(p, 3) for p in range(3)]
    for epoch, start in ((0, 0), (1, 2)):
        batches = list(whole.epoch(epoch, start_batch=start))
        parts = [list(s.epoch(epoch, start_batch=start)) for s in shards]
        assert all(len(p) == len(batches) for p in parts)
        for k, batch in enumerate(batches):
            for field in batch._fields:
                joined = np.concatenate([getattr(p[k], field) for p in parts])
                np.testing.assert_array_equal(joined, getattr(batch, field))
    last = [p[-1] for p in parts]
    assert last[0].x.shape[0] == 4 and last[-1].weight.sum() < 4  # padding in the last shard


def test_shard_checks_its_arguments(small_config):
    loader = pipeline.prepare(small_config("data.batch_size=12")).loader("train")
    with pytest.raises(ConfigError, match="data.batch_size: expected a multiple of the 5"):
        loader.shard(0, 5)
    with pytest.raises(ConfigError, match="process_index: expected an integer in \\[0, 1\\]"):
        loader.shard(2, 2)


def test_one_process_is_a_no_op():
    assert distributed.initialize(DistributedConfig()) == 1  # no cluster around the tests
    assert distributed.initialize(DistributedConfig("localhost:1234", 1, 0)) == 1
    assert not jax.distributed.is_initialized()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("{coordinator: 'localhost:1234'}", "train.distributed.num_processes: expected set"),
        ("{num_processes: 2, process_id: 0}", "train.distributed.coordinator: expected set"),
        ("{coordinator: localhost, num_processes: 2, process_id: 0}", "expected HOST:PORT"),
        (
            "{coordinator: 'localhost:1234', num_processes: 2, process_id: 2}",
            r"train.distributed.process_id: expected an integer in \[0, 1\]",
        ),
        ("{num_processes: 0}", r"train.distributed.num_processes: expected >= 1"),
    ],
)
def test_distributed_config_errors_name_the_field(small_config, section, message):
    with pytest.raises(ConfigError, match=message):
        pipeline.prepare(small_config(f"train.distributed={section}"))


def test_run_refuses_several_processes(small_config):
    cfg = small_config("train.distributed={coordinator: 'localhost:1', num_processes: 2, "
                       "process_id: 0}")  # fmt: skip
    with pytest.raises(ConfigError, match="train.distributed: expected one process for `run`"):
        pipeline.run(cfg, "unused")
