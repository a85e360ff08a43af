"""Autoencoder: shapes, checks, VAE KL term, and reconstruction error as an anomaly detector."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from climml.config import TrainConfig
from climml.errors import ConfigError, DataError
from climml.models import IOSpec, build
from climml.models._aux_loss import aux_loss
from climml.models.autoencoder import AutoencoderConfig, kl_to_standard_normal
from climml.train.losses import make_loss
from climml.train.steps import graphdefs, init_state, make_predict, make_train_step

GRID = (16, 32)


def make(variational=False, **cfg):
    spec = IOSpec((1, *GRID, 1), (1, *GRID))
    cfg = AutoencoderConfig(
        **{"filters": (8, 16), "latent_dim": 8, "variational": variational, **cfg}
    )
    return build(cfg, spec, nnx.Rngs(params=0, dropout=1))


def traced(model, x, method=lambda m, x: m(x)):
    """Shape/dtype of ``method(model, x)`` by tracing only (no compile: fast)."""
    graphdef, state = nnx.split(model)
    return jax.eval_shape(lambda s, x: method(nnx.merge(graphdef, s), x), state, x)


def test_shapes_and_bad_grids():
    model = make()
    x = jnp.ones((3, 1, *GRID, 1))
    assert traced(model, x).shape == (3, 1, *GRID)
    assert traced(model, x, lambda m, x: m.encode(x)[0]).shape == (3, 8)
    with pytest.raises(DataError, match="multiples of 4"):
        traced(model, jnp.ones((1, 1, 18, 32, 1)))
    with pytest.raises(ConfigError, match="model.filters"):
        make(filters=(4, 4, 4, 4, 4))  # 2**5 does not divide 16
    with pytest.raises(ConfigError, match="model.latent_dim"):
        make(latent_dim=0)


def test_kl_equals_closed_form_and_vae_modes():
    mean = np.array([[0.5, -1.0], [0.0, 2.0]])
    log_var = np.array([[0.0, np.log(0.25)], [np.log(4.0), 0.0]])
    # closed form per latent dimension: 0.5 * (var + mean^2 - 1 - log var)
    per = 0.5 * (np.exp(log_var) + mean**2 - 1 - log_var)
    np.testing.assert_allclose(kl_to_standard_normal(mean, log_var), per.sum(1).mean(), rtol=1e-6)
    vae = make(variational=True, kl_weight=0.1)
    x = jax.random.normal(jax.random.key(0), (2, 1, *GRID, 1))
    assert not np.allclose(vae(x), vae(x))  # training mode samples the latent
    mu, lv = vae.encode(x)
    np.testing.assert_allclose(aux_loss(vae), 0.1 * kl_to_standard_normal(mu, lv), rtol=1e-5)
    vae.eval()
    np.testing.assert_array_equal(vae(x), vae(x))  # eval mode decodes the mean
    np.testing.assert_allclose(vae(x), vae.decode(mu), rtol=1e-5, atol=1e-6)
    assert float(aux_loss(make())) == 0.0  # a plain autoencoder has no auxiliary loss


def smooth_fields(n, seed):
    """Normal weather: random mixtures of four large-scale patterns plus a little noise."""
    lat, lon = np.meshgrid(
        np.linspace(-1, 1, GRID[0]), np.linspace(0, 2 * np.pi, GRID[1]), indexing="ij"
    )
    patterns = np.stack([np.cos(lon), np.sin(lon) * lat, np.cos(2 * lon) * (1 - lat**2), lat])
    rng = np.random.default_rng(seed)
    coef = rng.normal(size=(n, 4))
    fields = np.einsum("nk,khw->nhw", coef, patterns) + 0.05 * rng.normal(size=(n, *GRID))
    return fields[:, None, :, :, None].astype(np.float32)  # (n, T=1, lat, lon, C=1)


def test_reconstruction_error_flags_injected_anomalies():
    x_train, x_test = smooth_fields(256, 0), smooth_fields(16, 1)
    bump = np.zeros(GRID, np.float32)
    bump[5:8, 20:24] = 3.0  # a compact, strong anomaly (3 sd) that no pattern explains
    x_anom = x_test + bump[None, None, :, :, None]
    model = make()
    tx = optax.adam(3e-3)
    state, (train_def, eval_def) = init_state(model, tx), graphdefs(model)
    step = make_train_step(train_def, make_loss(TrainConfig(loss="mse")), tx)
    rng = np.random.default_rng(0)
    for i in range(150):
        xb = jnp.asarray(x_train[rng.choice(256, 32, replace=False)])
        batch = {
            "x": xb,
            "y": xb[..., 0],
            "y_valid": jnp.ones(xb.shape[:-1]),
            "weight": jnp.ones(32),
        }
        state, loss = step(state, batch, jax.random.key(i))
    predict = make_predict(eval_def)
    err_normal = jnp.square(predict(state.params, state.rest, x_test) - x_test[..., 0])
    err_anom = jnp.square(predict(state.params, state.rest, x_anom) - x_anom[..., 0])
    assert float(err_normal.mean()) < 0.2 * float(jnp.var(x_test))  # it learned normal fields
    per_field_normal = err_normal.mean(axis=(1, 2, 3))
    per_field_anom = err_anom.mean(axis=(1, 2, 3))
    assert np.all(per_field_anom > per_field_normal)  # every anomalous field scores higher
    # and the error map points at the anomaly: most of the excess error is inside the bump
    excess = np.asarray(err_anom - err_normal).mean(axis=(0, 1))
    assert excess[5:8, 20:24].sum() > 0.5 * excess.clip(0).sum()


def test_reconstruction_run_writes_error_maps(tmp_path):
    import xarray as xr

    from climml import config, pipeline

    overrides = [
        "data.source_args.n_times=200",
        "data.splits.train=['2000-01-01', '2000-01-28']",
        "data.splits.val=['2000-01-31', '2000-02-05']",
        "data.splits.test=['2000-02-08', '2000-02-19']",
        "model.filters=[4, 8, 8]",
        "train.epochs=1",
        "output.progress=false",
    ]
    cfg = config.load("configs/autoencoder.yaml", overrides=overrides)
    result = pipeline.run(cfg, tmp_path / "run")
    assert set(result.metrics) == {"model", "climatology", "model_beats"}
    ds = xr.open_zarr(tmp_path / "run" / "predictions.zarr").load()
    np.testing.assert_allclose(ds["error"], (ds["model"] - ds["observed"]) ** 2, rtol=1e-6)
    # The anomaly score and the scores (of anomalies: same error) are area-weighted by default:
    # each latitude band by its share of the sphere, sin(north edge) - sin(south edge).
    lat = np.deg2rad(ds["lat"].values)
    half = np.abs(np.diff(lat)).mean() / 2
    band = np.sin(np.minimum(lat + half, np.pi / 2)) - np.sin(np.maximum(lat - half, -np.pi / 2))
    area = xr.DataArray(band, dims="lat")
    np.testing.assert_allclose(
        ds["anomaly_score"], ds["error"].weighted(area).mean(("lat", "lon")), rtol=1e-5
    )
    rmse = float(np.sqrt(ds["error"].weighted(area).mean()))
    np.testing.assert_allclose(result.metrics["model"]["rmse"]["0"], rmse, rtol=1e-4)
    assert (tmp_path / "run" / "reconstruction_map.png").is_file()


def test_vae_kl_term_has_gradients_for_the_encoder():
    vae = make(variational=True, kl_weight=1.0)
    graphdef, params, rest = nnx.split(vae, nnx.Param, ...)
    x = jax.random.normal(jax.random.key(3), (2, 1, *GRID, 1))

    def kl_of(params):
        model = nnx.merge(graphdef, params, rest, copy=True)
        model(x)
        return aux_loss(model)

    grads = jax.jit(jax.grad(kl_of))(params)
    assert float(jnp.abs(grads["to_latent"]["kernel"][...]).max()) > 0  # the encoder feels the KL
    assert float(jnp.abs(grads["head"]["kernel"][...]).max()) == 0  # the decoder does not
