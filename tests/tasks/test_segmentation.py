"""Segmentation: losses against hand computations and PyTorch; a U-Net learns to find cyclones."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import xarray as xr
from flax import nnx

from climml.config import TrainConfig
from climml.data.synthetic.weather import extreme_weather
from climml.errors import ConfigError
from climml.metrics import iou
from climml.models import IOSpec, build
from climml.models.unet import UNetConfig
from climml.train.losses import LOSSES, make_loss
from climml.train.steps import graphdefs, init_state, make_predict, make_train_step


def batch_of(labels, valid=None, weight=None):
    labels = np.asarray(labels, np.float32)
    return {
        "y": jnp.asarray(labels),
        "y_valid": jnp.ones_like(labels) if valid is None else jnp.asarray(valid, jnp.float32),
        "weight": jnp.ones(labels.shape[0]) if weight is None else jnp.asarray(weight),
    }


def test_class_weighted_cross_entropy_equals_hand_computation():
    # Two pixels: logits (2, 0, 0) with true class 0, logits (0, 1, 0) with true class 2.
    logits = jnp.array([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])  # (B=1, N=2, K=3)
    batch = batch_of([[0, 2]])
    ce0 = -np.log(np.exp(2) / (np.exp(2) + 2))
    ce1 = -np.log(1 / (2 + np.e))
    cfg = TrainConfig(class_weights=(1.0, 1.0, 4.0))
    want = (1.0 * ce0 + 4.0 * ce1) / (1.0 + 4.0)
    np.testing.assert_allclose(LOSSES["cross_entropy"](logits, batch, cfg), want, rtol=1e-6)
    np.testing.assert_allclose(
        LOSSES["cross_entropy"](logits, batch, TrainConfig()), (ce0 + ce1) / 2, rtol=1e-6
    )


def test_cross_entropy_equals_torch_with_class_weights_and_masks():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 2, 4, 5, 3)).astype(np.float32)  # (B, L, lat, lon, K)
    labels = rng.integers(0, 3, size=(3, 2, 4, 5))
    valid = rng.random((3, 2, 4, 5)) > 0.2
    weights = (0.5, 3.0, 2.0)
    got = LOSSES["cross_entropy"](
        logits, batch_of(labels, valid), TrainConfig(class_weights=weights)
    )
    ref = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights), ignore_index=-1)
    masked = np.where(valid, labels, -1)
    want = ref(torch.from_numpy(np.moveaxis(logits, -1, 1)), torch.from_numpy(masked)).item()
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_soft_jaccard_and_dice_equal_hand_computation():
    logits = jnp.log(jnp.array([[[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]]]))  # softmax = these probs
    batch = batch_of([[0, 1, 1]])
    p = np.array([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]])
    t = np.array([[1, 0], [0, 1], [0, 1]])
    inter, ps, ts = (p * t).sum(0), p.sum(0), t.sum(0)
    jac = 1 - np.mean((inter + 1) / (ps + ts - inter + 1))
    dic = 1 - np.mean((2 * inter + 1) / (ps + ts + 1))
    np.testing.assert_allclose(LOSSES["jaccard"](logits, batch, TrainConfig()), jac, rtol=1e-5)
    np.testing.assert_allclose(LOSSES["dice"](logits, batch, TrainConfig()), dic, rtol=1e-5)


def test_overlap_losses_vanish_for_perfect_predictions_and_ignore_masked_points():
    labels = np.array([[0, 1, 2, 2]])
    perfect = 50.0 * jax.nn.one_hot(labels, 3)
    for name in ("jaccard", "dice"):
        assert float(LOSSES[name](perfect, batch_of(labels), TrainConfig())) < 1e-6
        wrong = perfect.at[0, 3].set(jnp.array([50.0, 0.0, 0.0]))  # last point predicted class 0
        masked = batch_of(labels, valid=[[1, 1, 1, 0]])
        assert float(LOSSES[name](wrong, batch_of(labels), TrainConfig())) > 0.05
        assert float(LOSSES[name](wrong, masked, TrainConfig())) < 1e-6


def test_losses_combine_with_weights_and_check_class_weight_count():
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(2, 6, 3)), jnp.float32)
    batch = batch_of(rng.integers(0, 3, size=(2, 6)))
    cfg = TrainConfig(loss={"cross_entropy": 1.0, "dice": 0.5})
    want = LOSSES["cross_entropy"](logits, batch, cfg) + 0.5 * LOSSES["dice"](logits, batch, cfg)
    np.testing.assert_allclose(make_loss(cfg)(logits, batch), want, rtol=1e-6)
    with pytest.raises(ConfigError, match="train.class_weights"):
        LOSSES["cross_entropy"](logits, batch, TrainConfig(class_weights=(1.0, 2.0)))


def _normalized_xy(ds):
    x = np.stack([(ds[v] - ds[v].mean()) / ds[v].std() for v in ("iwv", "u850", "v850", "slp")], -1)
    return x[:, None].astype(np.float32), ds["label"].values[:, None].astype(np.float32)


def test_unet_learns_cyclones_far_better_than_all_background():
    kw = dict(nlat=32, nlon=64, lat_max=48.0, cyclones=4.0, rivers=4.0)
    x_train, y_train = _normalized_xy(extreme_weather(64, seed=0, **kw))
    x_test, y_test = _normalized_xy(extreme_weather(24, seed=1, **kw))
    assert 0 < np.mean(y_train == 1) < 0.01  # cyclones are rare
    spec = IOSpec(x_train.shape[1:], y_train.shape[1:], num_classes=3)
    model = build(UNetConfig(depth=2, base_filters=8, lon_periodic=True), spec, nnx.Rngs(0))
    cfg = dataclasses.replace(
        TrainConfig(), loss={"cross_entropy": 1.0, "dice": 1.0}, class_weights=(1.0, 10.0, 3.0)
    )
    tx = optax.adam(3e-3)
    state = init_state(model, tx)
    train_def, eval_def = graphdefs(model)
    step = make_train_step(train_def, make_loss(cfg), tx)
    rng = np.random.default_rng(0)
    for i in range(100):
        idx = rng.choice(len(x_train), 8, replace=False)
        batch = batch_of(y_train[idx])
        batch["x"] = jnp.asarray(x_train[idx])
        state, loss = step(state, batch, jax.random.key(i))
    pred = make_predict(eval_def)(state.params, state.rest, jnp.asarray(x_test)).argmax(-1)
    cyclone_iou = float(iou(pred, y_test, num_classes=3)[1])
    trivial = float(iou(jnp.zeros_like(pred), y_test, num_classes=3)[1])
    assert trivial == 0.0
    assert cyclone_iou > 0.3, cyclone_iou


# --------------------------------------------------------------------------- pipeline and maps

SMALL_RUN = [
    "data.source_args.n_times=200",
    "data.splits.train=['2000-01-01', '2000-02-05']",
    "data.splits.val=['2000-02-08', '2000-02-14']",
    "data.splits.test=['2000-02-17', '2000-02-28']",
    "model.base_filters=4",
    "train.epochs=1",
    "output.progress=false",
]


def test_segmentation_run_writes_scores_masks_and_map(tmp_path):
    from climml import config, pipeline

    every_metric = (
        "eval.metrics=[iou, mean_iou, precision, recall, accuracy, confusion_matrix, brier, auc,"
        " {bootstrap: {n: 10, ci: 0.5}}]"
    )
    cfg = config.load("configs/unet_extremes.yaml", overrides=[*SMALL_RUN, every_metric])
    result = pipeline.run(cfg, tmp_path / "run")
    m = result.metrics
    assert {"model", "majority"} <= set(m)
    assert list(m["model"])[:3] == ["iou", "iou:p25", "iou:p75"]
    names = ["background", "tropical_cyclone", "atmospheric_river"]
    assert list(m["model"]["iou"]) == names and list(m["model"]["recall"]) == names
    assert m["majority"]["iou"]["tropical_cyclone"] == 0.0  # background everywhere finds nothing
    assert m["majority"]["recall"]["background"] == 1.0
    assert len(m["model"]["confusion_matrix"]) == 9
    ds = xr.open_zarr(tmp_path / "run" / "predictions.zarr")
    assert ds["model"].dtype == np.int8 and ds["model"].dims == ("time", "lead", "lat", "lon")
    # the scores in metrics.json are the area-weighted scores of the masks in predictions.zarr
    obs, pred = ds["observed"].values, ds["model"].values
    lat = ds.lat.values.astype(np.float64)  # bands between midpoints, half a step past the ends
    edges = np.r_[
        1.5 * lat[0] - 0.5 * lat[1], (lat[1:] + lat[:-1]) / 2, 1.5 * lat[-1] - 0.5 * lat[-2]
    ]
    band = np.abs(np.diff(np.sin(np.deg2rad(np.clip(edges, -90, 90)))))
    w = np.broadcast_to(band[:, None], obs.shape) * (obs >= 0)
    tc_iou = np.sum(w * ((obs == 1) & (pred == 1))) / np.sum(w * ((obs == 1) | (pred == 1)))
    np.testing.assert_allclose(m["model"]["iou"]["tropical_cyclone"], tc_iou, rtol=1e-5)
    accuracy = np.sum(w * (obs == pred)) / np.sum(w)
    np.testing.assert_allclose(m["model"]["accuracy"]["all"], accuracy, rtol=1e-5)
    np.testing.assert_allclose(
        sum(m["model"]["confusion_matrix"].values()), np.sum(obs >= 0), rtol=1e-5
    )
    # the majority baseline is certain of background: its Brier score of a class is the
    # (weighted) frequency of the pixels it gets wrong for that class, its AUC is 0.5
    frequency = {c: np.sum(w * (obs == i)) / np.sum(w) for i, c in enumerate(names)}
    majority_brier = m["majority"]["brier"]
    np.testing.assert_allclose(majority_brier["background"], 1 - frequency["background"], rtol=1e-5)
    np.testing.assert_allclose(
        majority_brier["tropical_cyclone"], frequency["tropical_cyclone"], rtol=1e-5
    )
    np.testing.assert_allclose(list(m["majority"]["auc"].values()), 0.5, rtol=1e-5)
    for c in names:
        assert 0 <= m["model"]["brier"][c] <= 1 and 0 <= m["model"]["auc"][c] <= 1
        assert m["model"]["iou:p25"][c] <= m["model"]["iou:p75"][c]
    assert (tmp_path / "run" / "segmentation_map.png").stat().st_size > 10_000


def test_segmentation_config_errors_name_the_field():
    from climml import config, tasks

    cfg = config.load("configs/unet_extremes.yaml", overrides=["eval.metrics=[iou, rmse]"])
    with pytest.raises(ConfigError, match="eval.metrics"):
        tasks.get("segmentation").check(cfg)
    cfg = config.load("configs/unet_extremes.yaml", overrides=["data.num_classes=null"])
    with pytest.raises(ConfigError, match="data.num_classes"):
        tasks.get("segmentation").check(cfg)
