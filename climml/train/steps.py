"""Pure jitted train / eval / predict steps over the functional (``nnx.split``) form of a model.

A model is split once into ``graphdef`` (static structure; train and eval modes differ, e.g. for
dropout) and a ``TrainState`` pytree. Steps are pure functions of ``(state, batch, key)``, so they
can be jitted once per run, sharded over devices, and checkpointed as plain arrays.

Mixed precision (``train.dtype: bfloat16``): the train step casts the float32 parameters and the
inputs to bfloat16, so the model's matrix products and convolutions run in bfloat16, and casts
the prediction back to float32 for the loss. Gradients flow back through the casts to the
float32 parameters, and the optimizer updates float32 parameters and moments, so small updates
are not rounded away. No loss scaling is needed: scaling exists for float16, whose 5 exponent
bits flush gradients below ~6e-8 to zero, while bfloat16 has float32's 8 exponent bits (range to
~1e-38) and only fewer mantissa bits. Validation and prediction run in float32.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from climml.errors import ConfigError, expected
from climml.models._aux_loss import aux_loss

# Batch fields the steps consume; the rest (anchors, history) stay on the host.
STEP_FIELDS = ("x", "y", "y_valid", "weight")
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}  # train.dtype


def compute_dtype(name: str) -> Any:
    """The ``jnp`` dtype of ``train.dtype`` ``name``."""
    if name not in COMPUTE_DTYPES:
        raise ConfigError(expected("train.dtype", f"one of {list(COMPUTE_DTYPES)}", repr(name)))
    return COMPUTE_DTYPES[name]


def _cast_floats(tree: Any, dtype: Any) -> Any:
    """``tree`` with its floating-point leaves cast to ``dtype`` (integers, keys unchanged)."""

    def cast(leaf):
        return leaf.astype(dtype) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf

    return jax.tree.map(cast, tree)


def _same_dtype(new: jax.Array, old: jax.Array) -> jax.Array:
    return new if new.dtype == old.dtype else new.astype(old.dtype)


class TrainState(NamedTuple):
    """Everything that changes during training, as a pytree of arrays."""

    params: nnx.State  # trainable parameters
    rest: nnx.State  # other variables: batch statistics, RNG streams
    opt_state: optax.OptState
    step: jax.Array  # int32 scalar: optimizer steps taken


def step_batch(batch: Any) -> dict[str, Any]:
    """The arrays of a loader ``Batch`` that the jitted steps need."""
    return {name: getattr(batch, name) for name in STEP_FIELDS}


def init_state(model: nnx.Module, tx: optax.GradientTransformation) -> TrainState:
    """Split ``model`` into a fresh ``TrainState`` with optimizer state for ``tx``."""
    _, params, rest = nnx.split(model, nnx.Param, ...)
    return TrainState(params, rest, tx.init(params), jnp.zeros((), jnp.int32))


def graphdefs(model: nnx.Module) -> tuple[Any, Any]:
    """Static structure of ``model`` in train mode and in eval mode (dropout off etc.)."""
    model.train()
    train_def = nnx.split(model, nnx.Param, ...)[0]
    model.eval()
    eval_def = nnx.split(model, nnx.Param, ...)[0]
    return train_def, eval_def


def make_train_step(
    train_def: Any,
    loss_fn: Callable[[jax.Array, Mapping[str, jax.Array]], jax.Array],
    tx: optax.GradientTransformation,
    dtype: Any = jnp.float32,
) -> Callable[[TrainState, Mapping[str, jax.Array], jax.Array], tuple[TrainState, jax.Array]]:
    """``train_step(state, batch, key) -> (state, loss)``: one jitted optimizer update, the
    model computing in ``dtype`` (float32 parameters and loss whatever ``dtype``)."""
    mixed = jnp.dtype(dtype) != jnp.float32

    def loss_and_rest(params, rest, batch):
        # Fresh Variable objects at this trace level, so dropout may advance its RNG count here.
        rest = jax.tree.map(lambda v: v, rest)
        x = batch["x"]
        if mixed:  # the casts are differentiated: gradients arrive in float32
            params, x = _cast_floats(params, dtype), x.astype(dtype)
        model = nnx.merge(train_def, params, rest)
        pred = model(x).astype(jnp.float32)
        loss = loss_fn(pred, batch) + aux_loss(model).astype(jnp.float32)  # e.g. a VAE's KL
        new_rest = nnx.split(model, nnx.Param, ...)[2]
        if mixed:  # statistics the model stored (batch norm) keep their dtype across steps
            new_rest = jax.tree.map(_same_dtype, new_rest, rest)
        return loss, new_rest

    def reseeded(state: TrainState, key):
        # Outside the grad trace: RNG variables may only be set at the trace level they live in.
        model = nnx.merge(train_def, state.params, state.rest)
        nnx.reseed(model, dropout=key)  # dropout masks depend only on (seed, step)
        return nnx.split(model, nnx.Param, ...)[2]

    @jax.jit
    def train_step(state: TrainState, batch, key):
        grad_fn = jax.value_and_grad(loss_and_rest, has_aux=True)
        (loss, rest), grads = grad_fn(state.params, reseeded(state, key), batch)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, rest, opt_state, state.step + 1), loss

    return train_step


def make_eval_step(
    eval_def: Any, loss_fn: Callable[[jax.Array, Mapping[str, jax.Array]], jax.Array]
) -> Callable[[nnx.State, nnx.State, Mapping[str, jax.Array]], tuple[jax.Array, jax.Array]]:
    """``eval_step(params, rest, batch) -> (loss * n, n)`` with ``n`` real samples in the batch."""

    @jax.jit
    def eval_step(params, rest, batch):
        pred = nnx.merge(eval_def, params, rest)(batch["x"])
        n = jnp.sum(batch["weight"])
        return loss_fn(pred, batch) * n, n

    return eval_step


def make_predict(eval_def: Any) -> Callable[[nnx.State, nnx.State, jax.Array], jax.Array]:
    """``predict(params, rest, x) -> model output`` in eval mode, jitted."""

    @jax.jit
    def predict(params, rest, x):
        return nnx.merge(eval_def, params, rest)(x)

    return predict
