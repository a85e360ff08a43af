"""Adversarial training of the GAN nowcaster: losses by hand, steps, exact resume."""

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from climml.config import TrainConfig
from climml.models.nowcast_gan import NowcastGAN, NowcastGANConfig
from climml.train import adversarial as adv
from climml.types import IOSpec

ROOT = Path(__file__).resolve().parents[2]
SPEC = IOSpec((2, 32, 32, 1), (2, 32, 32))
CFG = NowcastGANConfig(
    base_channels=1,
    disc_channels=2,
    disc_frames=2,
    disc_crop=16,
    attention=False,
    reg_samples=2,
    disc_steps=2,
)


def test_hinge_losses_equal_hand_computation():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=6) * 2, rng.normal(size=6) * 2
    w = np.array([1, 1, 1, 1, 0, 0], np.float64)  # two padding rows
    d = adv.hinge_discriminator(jnp.asarray(real), jnp.asarray(fake), jnp.asarray(w))
    want = np.mean(np.maximum(0, 1 - real[:4])) + np.mean(np.maximum(0, 1 + fake[:4]))
    assert float(d) == pytest.approx(want, rel=1e-6)
    assert float(adv.hinge_generator(jnp.asarray(fake), jnp.asarray(w))) == pytest.approx(
        -np.mean(fake[:4]), rel=1e-6
    )


def test_grid_cell_loss_equals_hand_computation():
    rng = np.random.default_rng(1)
    s, b, lead, h, w = 3, 2, 2, 4, 5
    samples = rng.gamma(1.0, 5.0, size=(s, b, lead, h, w))
    y = rng.gamma(1.0, 8.0, size=(b, lead, h, w))  # values below 1 and above 24 mm/h
    valid = (rng.random((b, lead, h, w)) > 0.1).astype(np.float64)
    weight = np.array([1.0, 1.0])
    got = adv.grid_cell_loss(*(jnp.asarray(a) for a in (samples, y, valid, weight)), 24.0)
    want = 0.0
    for i in range(b):
        total = 0.0
        for t in range(lead):
            for r in range(h):
                for c in range(w):
                    mean = samples[:, i, t, r, c].mean()
                    wt = min(max(y[i, t, r, c], 1.0), 24.0)
                    total += abs(mean - y[i, t, r, c]) * wt * valid[i, t, r, c]
        want += total / (lead * h * w)
    assert float(got) == pytest.approx(want / b, rel=1e-5)


def test_fair_crps_loss_equals_scoringrules():
    sr = pytest.importorskip("scoringrules")
    rng = np.random.default_rng(2)
    s, b, lead, h, w = 4, 3, 2, 4, 5
    samples = rng.gamma(1.0, 5.0, size=(s, b, lead, h, w))
    y = rng.gamma(1.0, 8.0, size=(b, lead, h, w))
    valid = (rng.random((b, lead, h, w)) > 0.1).astype(np.float64)
    weight = np.array([1.0, 0.0, 1.0])  # a padding row
    got = adv.fair_crps_loss(*(jnp.asarray(a) for a in (samples, y, valid, weight)), 24.0)
    crps = np.asarray(sr.crps_ensemble(y, np.moveaxis(samples, 0, -1), estimator="fair"))
    per_example = (crps * np.clip(y, 1, 24) * valid).reshape(b, -1).mean(axis=1)
    assert float(got) == pytest.approx((per_example[0] + per_example[2]) / 2, rel=1e-5)
    # a collapsed ensemble scores worse than one with the right spread: y ~ N(10, 2) pixelwise
    y = rng.normal(10.0, 2.0, size=(1, 1, 64, 64))
    ones, right = np.ones((1, 1, 64, 64)), np.ones(1)
    collapsed = np.full((8, 1, 1, 64, 64), 10.0)
    spread = rng.normal(10.0, 2.0, size=(8, 1, 1, 64, 64))

    def score(members):
        return float(adv.fair_crps_loss(jnp.asarray(members), jnp.asarray(y), ones, right, 1.0))

    assert score(spread) < score(collapsed)


def _batch(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.normal(size=(2, 2, 32, 32, 1)).astype("f4"),
        "history": rng.gamma(0.5, 4.0, size=(2, 2, 32, 32)).astype("f4"),
        "y": rng.gamma(0.5, 4.0, size=(2, 2, 32, 32)).astype("f4"),
        "y_valid": np.ones((2, 2, 32, 32), "f4"),
        "weight": np.ones(2, "f4"),
    }


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(tree)]


def test_steps_change_both_networks_and_leave_generator_alone_in_d_step():
    model = NowcastGAN(CFG, SPEC, nnx.Rngs(0))
    d_step, g_step = adv.make_steps(model)
    state = adv.init_gan_state(model)
    after_d, d_loss = d_step(state, _batch(0), jax.random.key(0))
    for a, b in zip(_leaves(state.g_params), _leaves(after_d.g_params), strict=True):
        np.testing.assert_array_equal(a, b)  # the discriminator step never updates G
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(_leaves(state.d_params), _leaves(after_d.d_params), strict=True)
    )
    s = state
    for i in range(3):
        s, dl, gl = adv.train_step(d_step, g_step, CFG.disc_steps, s, _batch(i), jax.random.key(i))
        assert np.isfinite(float(dl)) and np.isfinite(float(gl))
    assert int(s.step) == 3
    for before, after in ((state.g_params, s.g_params), (state.d_params, s.d_params)):
        changed = [
            not np.array_equal(a, b) for a, b in zip(_leaves(before), _leaves(after), strict=True)
        ]
        assert np.mean(changed) > 0.5  # most parameter arrays of both networks moved


class _Loader:
    """Three fixed batches per epoch, order from (epoch): what fit_gan needs of a loader."""

    batch_size = 2

    def __init__(self, n=3):
        self.n = n

    def __len__(self):
        return self.n

    def epoch(self, e, start_batch=0):
        for i in range(start_batch, self.n):
            yield _LoaderBatch(10 * e + i)


class _LoaderBatch:
    def __init__(self, seed):
        b = _batch(seed)
        self.x, self.weight = b["x"], b["weight"]
        self.target_history, self.y, self.y_valid = b["history"], b["y"], b["y_valid"]


class _IdentityCodec:
    """Normalized units = mm/h (no normalizer in these tests)."""

    def to_rain(self, z):
        return np.maximum(np.asarray(z, np.float32), 0)

    def from_rain(self, r):
        return np.asarray(r, np.float32)


class _Kill(Exception):
    pass


def test_resume_after_kill_is_exact(tmp_path):
    cfg = TrainConfig(epochs=2, checkpoint_every=1)
    whole = adv.fit_gan(
        NowcastGAN(CFG, SPEC, nnx.Rngs(0)),
        _Loader(),
        _Loader(1),
        cfg,
        _IdentityCodec(),
        seed=3,
        workdir=tmp_path / "a",
        progress=False,
    )

    def kill(step):
        if step == 4:  # inside the second epoch
            raise _Kill

    with pytest.raises(_Kill):
        adv.fit_gan(
            NowcastGAN(CFG, SPEC, nnx.Rngs(0)),
            _Loader(),
            _Loader(1),
            cfg,
            _IdentityCodec(),
            seed=3,
            workdir=tmp_path / "b",
            progress=False,
            on_step=kill,
        )
    model = NowcastGAN(CFG, SPEC, nnx.Rngs(0))
    resumed = adv.fit_gan(
        model,
        _Loader(),
        _Loader(1),
        cfg,
        _IdentityCodec(),
        seed=3,
        workdir=tmp_path / "b",
        progress=False,
    )
    for a, b in zip(_leaves(whole.params), _leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(a, b)
    d_whole = nnx.split(whole.model.discriminator, nnx.Param, ...)[1]
    d_resumed = nnx.split(model.discriminator, nnx.Param, ...)[1]
    for a, b in zip(_leaves(d_whole), _leaves(d_resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert resumed.history[-1]["val_loss"] == pytest.approx(whole.history[-1]["val_loss"])
    loaded = adv.load_gan(NowcastGAN(CFG, SPEC, nnx.Rngs(1)), cfg, tmp_path / "b")
    for a, b in zip(_leaves(whole.params), _leaves(loaded.params), strict=True):
        np.testing.assert_array_equal(a, b)


# configs/nowcast_gan.yaml and configs/nowcast_synthetic.yaml shrunk alike: 5 events of 14
# frames on a 32 x 32 grid, 3 leads, 3 epochs.
DATA = [
    "data.source_args={events: 5, frames: 14, size: 32, lifetime: 240.0, seed: 0}",
    "data.splits={train: [2021-06-01, 2021-06-03], val: [2021-06-04, 2021-06-04],"
    " test: [2021-06-05, 2021-06-05]}",
    "data.leads=[1, 2, 3]",
    "train.epochs=3",
    "output.progress=false",
    "output.plots=false",
]


def _cli_run(config_path, workdir, overrides):
    import subprocess
    import sys

    args = [a for item in overrides for a in ("--set", item)]
    proc = subprocess.run(
        [sys.executable, "-m", "climml.cli", "run", config_path, "--workdir", str(workdir), *args],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _small_scale_power(spectra, name):
    """``(lead,)`` power of ``name`` at wavelengths under 4 pixels over the observed one."""
    k = spectra["wavenumber"].values
    small = k > k.max() / 2
    return (
        spectra[name][:, small].sum("wavenumber") / spectra["observed"][:, small].sum("wavenumber")
    ).values


@pytest.mark.slow
def test_trained_gan_spreads_and_keeps_small_scales_the_mse_unet_loses(tmp_path):
    import json

    import xarray as xr

    gan_dir, unet_dir = tmp_path / "gan", tmp_path / "unet"
    _cli_run(
        "configs/nowcast_gan.yaml",
        gan_dir,
        [*DATA, "model.base_channels=2", "eval.nowcast.members=3"],
    )
    _cli_run(
        "configs/nowcast_synthetic.yaml", unet_dir, [*DATA, "model.depth=1", "model.base_filters=8"]
    )
    metrics = json.loads((gan_dir / "metrics.json").read_text())
    assert set(metrics) >= {"model", "persistence", "advection"}
    for name in ("model", "persistence", "advection"):
        assert set(metrics[name]["csi@1"]) == {"5", "10", "15"}
        assert set(metrics[name]["crps"]) == {"5", "10", "15"}
    gan = _small_scale_power(xr.open_dataset(gan_dir / "spectra.nc"), "model")
    unet = _small_scale_power(xr.open_dataset(unet_dir / "spectra.nc"), "model")
    assert (gan > unet).all(), (gan, unet)
    # An ensemble, not copies: members differ by a meaningful amount of rain (a collapsed
    # generator's members differ by ~1e-5 mm/h; measured here 0.07-0.09 mm/h).
    spread = metrics["model"]["spread"]
    assert all(v > 0.01 for v in spread.values()), spread


RADAR = Path(os.environ.get("CLIMML_RADAR_DATA", ROOT.parent / "shared" / "data" / "pysteps-data"))


@pytest.mark.slow
@pytest.mark.skipif(
    not (RADAR / "radar" / "mch").is_dir(),
    reason=f"MeteoSwiss radar (pysteps-data) not found at {RADAR}; set CLIMML_RADAR_DATA",
)
def test_gan_crps_beats_persistence_at_30_minutes_on_meteoswiss_radar(tmp_path):
    """configs/nowcast_radar_gan.yaml end to end: the GAN ensemble's CRPS at 30 minutes on the
    2017-01-31 event is lower than persistence's."""
    import json

    _cli_run(
        "configs/nowcast_radar_gan.yaml",
        tmp_path,
        [f"data.source_args.root={RADAR}", "output.progress=false", "output.plots=false"],
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"model", "persistence", "advection"} <= set(metrics)
    crps = {name: metrics[name]["crps"]["30"] for name in ("model", "persistence")}
    assert crps["model"] < crps["persistence"], crps
