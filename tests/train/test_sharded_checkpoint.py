"""Checkpoints are saved shard by shard and restore onto a different number of devices.

Each side runs in its own process, because the simulated CPU device count is fixed when JAX
starts: a checkpoint written on 4 devices is read back on 2.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from climml import config, pipeline
from climml.train.loop import fit


def _python(code: str, devices: int, *args: str) -> str:
    """Run ``code`` in a fresh interpreter with ``devices`` simulated CPU devices; its stdout."""
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
    }
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


# A tree like a training state: an array split over the data axis, replicated arrays, a PRNG key
# and an integer step; the template (argv[2] == "restore") places each on the current mesh.
_TREE = """
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from climml.train.checkpoint import Checkpointer

    mesh = Mesh(np.array(jax.devices()), ("data",))
    split, whole = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    seed = 1 if sys.argv[2] == "restore" else 0  # the template holds other values
    rng = np.random.default_rng(seed)
    tree = {
        "split": jax.device_put(rng.normal(size=(8, 3)).astype(np.float32), split),
        "whole": jax.device_put(rng.normal(size=(5,)).astype(np.float32), whole),
        "key": jax.device_put(jax.random.key(seed), whole),
        "step": jax.device_put(np.int32(7 + seed), whole),
    }
    ckpt = Checkpointer(sys.argv[1])
    if sys.argv[2] == "save":
        ckpt.save(7, tree, {"epoch": 3})
        meta = {}
    else:
        tree, meta = ckpt.restore(tree)
    ckpt.close()
    out = {
        name: {
            "devices": len(a.sharding.device_set),
            "spec": str(a.sharding.spec),
            "shard_rows": [int(s.data.shape[0]) for s in a.addressable_shards if a.ndim],
            "value": np.asarray(jax.random.key_data(a) if name == "key" else a).tolist(),
        }
        for name, a in tree.items()
    }
    print(json.dumps({"tree": out, "meta": meta}))
"""


def test_checkpoint_saved_on_4_devices_restores_sharded_on_2(tmp_path):
    saved = json.loads(_python(_TREE, 4, str(tmp_path / "ckpt"), "save"))["tree"]
    out = json.loads(_python(_TREE, 2, str(tmp_path / "ckpt"), "restore"))
    restored = out["tree"]
    assert out["meta"] == {"epoch": 3}
    assert saved["split"]["shard_rows"] == [2, 2, 2, 2]
    for name in saved:
        assert restored[name]["value"] == saved[name]["value"], name
        assert restored[name]["devices"] == 2
        assert restored[name]["spec"] == saved[name]["spec"]  # the template's sharding
    assert restored["split"]["shard_rows"] == [4, 4]  # read straight into 2 shards
    assert (tmp_path / "ckpt" / "7").is_dir()
    assert not list((tmp_path / "ckpt").glob("*tmp*"))  # committed: no temporary left


_TRAIN = """
    import json, sys
    import numpy as np, jax
    from climml import config, pipeline
    from climml.train.loop import fit

    cfg = config.load("configs/quickstart.yaml", json.loads(sys.argv[2]))
    exp = pipeline.prepare(cfg)
    stop = int(sys.argv[3])

    def on_step(step):
        if step == stop:
            raise SystemExit(0)  # a job ending mid-training, after the checkpoint of step - 1

    result = fit(pipeline.build_model(exp), exp.loader("train", training=True),
                 exp.loader("val"), cfg.train, seed=cfg.seed, workdir=sys.argv[1],
                 progress=False, on_step=on_step if stop else None)
    print(json.dumps({
        "devices": len(jax.tree.leaves(result.params)[0].sharding.device_set),
        "history": result.history,
        "params": [np.asarray(a).tolist() for a in jax.tree.leaves(result.params)],
    }))
"""


@pytest.mark.slow
def test_training_checkpointed_on_4_devices_resumes_on_2(tmp_path, tiny_quickstart):
    overrides = [*tiny_quickstart, "train.devices=null", "train.checkpoint_every=4",
                 "model.dropout=0.0"]  # fmt: skip
    workdir, args = str(tmp_path / "run"), json.dumps(overrides)
    assert _python(_TRAIN, 4, workdir, args, "9").strip() == ""  # stopped after step 9
    assert (tmp_path / "run" / "checkpoints" / "8").is_dir()
    resumed = json.loads(_python(_TRAIN, 2, workdir, args, "0"))
    assert resumed["devices"] == 2

    cfg = config.load("configs/quickstart.yaml", [*overrides, "train.devices=1"])
    exp = pipeline.prepare(cfg)
    loaders = exp.loader("train", training=True), exp.loader("val")
    straight = fit(pipeline.build_model(exp), *loaders, cfg.train, seed=cfg.seed, progress=False)
    np.testing.assert_allclose(
        [h["val_loss"] for h in resumed["history"]],
        [h["val_loss"] for h in straight.history],
        rtol=1e-5,
    )
    for a, b in zip(resumed["params"], jax.tree.leaves(straight.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
