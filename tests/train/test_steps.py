"""Pure train/eval steps, losses and optimizers on tiny batches."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from climml import config, models
from climml.errors import ConfigError
from climml.train.losses import make_loss
from climml.train.optimizer import build_optimizer
from climml.train.steps import graphdefs, init_state, make_eval_step, make_train_step

SPEC = models.IOSpec(input_shape=(3, 8, 16, 2), output_shape=(2,))


def _batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *SPEC.input_shape)).astype(np.float32)
    y = np.stack([x[:, -1, 2:6, 4:12, 0].mean((1, 2)), x[:, 0, :, :, 1].mean((1, 2))], 1)
    return {
        "x": x,
        "y": y.astype(np.float32),
        "y_valid": np.ones_like(y),
        "weight": np.ones(n, np.float32),
    }


def _train_cfg(**kw):
    return config.from_dict({"model": {"name": "cnn"}, "train": kw}).train


@pytest.mark.parametrize("name", ["cnn", "mlp"])
def test_train_step_lowers_loss_on_a_tiny_batch(name):
    cfg_model = config.from_dict({"model": {"name": name, "dropout": 0.0}}).model
    model = models.build(cfg_model, SPEC, nnx.Rngs(params=0, dropout=1))
    cfg = _train_cfg(lr=3e-3)
    tx = build_optimizer(cfg, total_steps=100)
    train_def, eval_def = graphdefs(model)
    loss_fn = make_loss(cfg)
    step = make_train_step(train_def, loss_fn, tx)
    evaluate = make_eval_step(eval_def, loss_fn)
    state, batch = init_state(model, tx), _batch()
    first = float(evaluate(state.params, state.rest, batch)[0]) / 8
    for i in range(30):
        state, _ = step(state, batch, jax.random.key(i))
    last = float(evaluate(state.params, state.rest, batch)[0]) / 8
    assert int(state.step) == 30
    assert last < 0.5 * first


def test_padding_and_invalid_targets_do_not_count():
    cfg = _train_cfg(loss={"mse": 1.0, "mae": 0.5})
    loss = make_loss(cfg)
    pred = jnp.array([[1.0, 2.0], [5.0, 5.0], [0.0, 9.0]])
    batch = {
        "y": jnp.zeros((3, 2)),
        "y_valid": jnp.array([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]]),
        "weight": jnp.array([1.0, 0.0, 1.0]),
    }
    # valid elements: 1, 2 (sample 0) and 0 (sample 2); sample 1 is padding
    expected = (1 + 4 + 0) / 3 + 0.5 * (1 + 2 + 0) / 3
    assert float(loss(pred, batch)) == pytest.approx(expected)


def test_huber_matches_optax_formula():
    cfg = _train_cfg(loss="huber", huber_delta=0.5)
    pred, y = jnp.array([[0.2, 3.0]]), jnp.zeros((1, 2))
    batch = {"y": y, "y_valid": jnp.ones((1, 2)), "weight": jnp.ones(1)}
    want = (0.5 * 0.2**2 + 0.5 * (3.0 - 0.25)) / 2
    assert float(make_loss(cfg)(pred, batch)) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("opt", ["adam", "adamw", "sgd", "rmsprop"])
@pytest.mark.parametrize("schedule", ["constant", "cosine", "warmup_cosine", "exponential"])
def test_optimizers_and_schedules_build(opt, schedule):
    tx = build_optimizer(_train_cfg(optimizer=opt, schedule=schedule, warmup_steps=2), 10)
    params = {"w": jnp.ones(3)}
    opt_state = tx.init(params)
    for _ in range(3):  # past the warmup's zero first step
        updates, opt_state = tx.update({"w": jnp.ones(3)}, opt_state, params)
    assert np.all(np.asarray(updates["w"]) < 0)  # descends along a positive gradient


def test_clipping_bounds_the_update():
    tx = build_optimizer(_train_cfg(optimizer="sgd", momentum=0.0, lr=1.0, clip_norm=1.0), 10)
    params = {"w": jnp.zeros(4)}
    updates, _ = tx.update({"w": jnp.full(4, 100.0)}, tx.init(params), params)
    assert float(optax.tree.norm(updates)) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("train.optimizer=lbfgsx", "train.optimizer"),
        ("train.schedule=zigzag", "train.schedule"),
        ("train.loss=hinge", "train.loss"),
        ("train.lr=-1", "train.lr"),
    ],
)
def test_bad_training_settings_are_config_errors(override, field):
    with pytest.raises(ConfigError, match=field):  # when loading or, at the latest, building
        cfg = config.from_dict({"model": {"name": "mlp"}}, [override]).train
        build_optimizer(cfg, 10)
        make_loss(cfg)


def test_train_step_adds_the_models_own_loss_terms():
    from climml.models._aux_loss import AuxLoss

    class Penalized(nnx.Module):
        """A linear map that reports 0.5·|w|² as an auxiliary loss in its forward pass."""

        def __init__(self, rngs):
            self.lin = nnx.Linear(3, 1, rngs=rngs)
            self.penalty = AuxLoss(jnp.zeros(()))

        def __call__(self, x):
            self.penalty[...] = 0.5 * jnp.sum(jnp.square(self.lin.kernel[...]))
            return self.lin(x.reshape(x.shape[0], -1))

    model = Penalized(nnx.Rngs(0))
    cfg = _train_cfg(optimizer="sgd", momentum=0.0, lr=0.1)
    tx = build_optimizer(cfg, 10)
    state = init_state(model, tx)
    batch = {
        "x": jnp.ones((4, 3)),
        "y": jnp.zeros((4, 1)),
        "y_valid": jnp.ones((4, 1)),
        "weight": jnp.ones(4),
    }
    step = make_train_step(graphdefs(model)[0], make_loss(cfg), tx)
    _, loss = step(state, batch, jax.random.key(0))
    w, b = model.lin.kernel[...], model.lin.bias[...]
    pred = jnp.ones((4, 3)) @ w + b
    want = jnp.mean(jnp.square(pred)) + 0.5 * jnp.sum(jnp.square(w))
    assert float(loss) == pytest.approx(float(want), rel=1e-5)
