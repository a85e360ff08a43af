"""Mixed precision: ``train.dtype: bfloat16`` computes the model in bfloat16 while parameters,
optimizer state and the loss stay float32."""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from climml import pipeline
from climml.errors import ConfigError
from climml.models import IOSpec, build
from climml.models.unet import UNetConfig
from climml.train.loop import Trainer, fit
from climml.train.steps import graphdefs, init_state, make_train_step, step_batch


def _fit(small_config, dtype, *extra):
    exp = pipeline.prepare(small_config(f"train.dtype={dtype}", "model.dropout=0.0", *extra))
    model = pipeline.build_model(exp)
    loaders = exp.loader("train", training=True), exp.loader("val")
    return exp, fit(model, *loaders, exp.cfg.train, seed=0, progress=False)


def _matmul_dtypes(jaxpr) -> set[str]:
    """Operand dtypes of every matrix product and convolution in ``jaxpr``, sub-jaxprs included."""
    found = set()
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in ("dot_general", "conv_general_dilated"):
            found |= {str(v.aval.dtype) for v in eqn.invars}
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            found |= _matmul_dtypes(sub)
    return found


@pytest.fixture(scope="module")
def runs(small_config):
    return {dtype: _fit(small_config, dtype, "train.epochs=4") for dtype in ("float32", "bfloat16")}


def test_bf16_training_keeps_float32_parameters_and_the_loss_falls(runs):
    exp, result = runs["bfloat16"]
    for leaf in jax.tree.leaves(result.params):
        assert leaf.dtype == jnp.float32
    train = [h["train_loss"] for h in result.history]
    assert train[-1] < 0.8 * train[0]
    # bfloat16 keeps 8 bits of mantissa: the run follows the float32 one closely, not exactly.
    _, reference = runs["float32"]
    bf16_val = [h["val_loss"] for h in result.history]
    f32_val = [h["val_loss"] for h in reference.history]
    np.testing.assert_allclose(bf16_val, f32_val, rtol=0.05)
    assert bf16_val != f32_val


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_step_multiplies_in_the_configured_dtype_and_returns_a_float32_loss(
    small_config, dtype
):
    exp = pipeline.prepare(small_config(f"train.dtype={dtype}"))
    loader = exp.loader("train", training=True)
    model = pipeline.build_model(exp)
    trainer = Trainer(model, exp.cfg.train, steps_per_epoch=len(loader), batch_size=16)
    batch = step_batch(next(iter(loader)))
    key = jax.random.key(0)
    closed = jax.make_jaxpr(trainer.train_step)(trainer.initial, batch, key)
    products = _matmul_dtypes(closed.jaxpr)
    # Forward and backward products both run in the compute dtype, none in the other.
    assert products == {dtype}
    state, loss = trainer.train_step(trainer.initial, batch, key)
    assert loss.dtype == jnp.float32 and np.isfinite(float(loss))
    for before, after in zip(
        jax.tree.leaves(trainer.initial.opt_state), jax.tree.leaves(state.opt_state), strict=True
    ):
        assert after.dtype == before.dtype  # optimizer moments stay float32


def test_bf16_batch_norm_statistics_stay_float32_from_step_to_step():
    """A U-Net's batch-norm statistics (state besides the parameters) are updated from bfloat16
    activations but keep float32, so every step reuses one compiled step."""
    spec = IOSpec((1, 16, 16, 2), (1, 16, 16))
    model = build(UNetConfig(depth=1, base_filters=4), spec, nnx.Rngs(0))
    train_def, _ = graphdefs(model)
    tx = optax.adam(1e-2)
    step = make_train_step(train_def, lambda pred, b: jnp.mean((pred - b["y"]) ** 2), tx,
                           jnp.bfloat16)  # fmt: skip
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, *spec.input_shape)).astype(np.float32)
    batch = {"x": x, "y": x[..., 0] ** 2, "y_valid": np.ones((8, 1, 16, 16), np.float32),
             "weight": np.ones(8, np.float32)}  # fmt: skip
    state = first = init_state(model, tx)
    losses = []
    for i in range(5):
        state, loss = step(state, batch, jax.random.key(i))
        losses.append(float(loss))
    assert step._cache_size() == 1
    for new, old in zip(jax.tree.leaves(state.rest), jax.tree.leaves(first.rest), strict=True):
        assert new.dtype == old.dtype
    stats = [
        (np.asarray(new), np.asarray(old))
        for new, old in zip(jax.tree.leaves(state.rest), jax.tree.leaves(first.rest), strict=True)
        if old.dtype == jnp.float32
    ]
    assert stats and any(np.any(new != old) for new, old in stats)  # statistics were updated
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
    assert losses[-1] < losses[0]


def test_unknown_dtype_is_a_config_error_naming_the_field(small_config):
    with pytest.raises(
        ConfigError, match=r"train.dtype: expected one of \['float32', 'bfloat16'\]"
    ):
        pipeline.prepare(small_config("train.dtype=float16"))
