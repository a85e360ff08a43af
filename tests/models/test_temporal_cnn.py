"""Temporal CNN: convolution against a NumPy reference, causality, receptive field, learning."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from climml.errors import ConfigError, DataError
from climml.models.temporal_cnn import TemporalCNNConfig, build_temporal_cnn
from climml.types import IOSpec

B, T, F = 2, 12, 3


def _numpy_conv1d(x, kernel, bias, dilation, causal):
    """Textbook 1-D convolution (cross-correlation) over time, zero-padded to keep T steps.

    x: (B, T, F); kernel: (K, F, O). Causal pads the past only; same pads like flax/TF "SAME"
    (the extra step of an even effective kernel goes to the end).
    """
    k = kernel.shape[0]
    span = (k - 1) * dilation
    left = span if causal else span // 2
    padded = np.pad(x, ((0, 0), (left, span - left), (0, 0)))
    out = np.zeros((x.shape[0], x.shape[1], kernel.shape[2]))
    for t in range(x.shape[1]):
        for j in range(k):
            out[:, t] += padded[:, t + j * dilation] @ kernel[j]
    return out + bias


@pytest.mark.parametrize("padding", ["same", "causal"])
@pytest.mark.parametrize(("kernel", "dilation"), [(3, 1), (2, 3), (4, 2)])
def test_conv_layer_matches_numpy_reference(padding, kernel, dilation):
    cfg = TemporalCNNConfig(
        filters=(4,), kernel_size=(kernel,), dilation=(dilation,), padding=padding
    )
    model = build_temporal_cnn(cfg, IOSpec((T, F), (1,)), nnx.Rngs(0))
    conv = model.convs[0]
    x = np.random.default_rng(0).normal(size=(B, T, F))
    want = _numpy_conv1d(x, np.asarray(conv.kernel[...]), np.asarray(conv.bias[...]), dilation,
                         causal=padding == "causal")  # fmt: skip
    got = conv(jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(got, want, atol=1e-5)


def _dependence(model, t):
    """Which input steps the features at step ``t`` depend on (nonzero input gradient)."""
    x = jax.random.normal(jax.random.key(1), (1, T, F))
    grad = jax.grad(lambda x: model.features(x)[0, t].sum())(x)
    return np.flatnonzero(np.abs(np.asarray(grad[0])).sum(-1) > 0)


def test_causal_stack_sees_exactly_its_receptive_field_in_the_past():
    cfg = TemporalCNNConfig(
        filters=(4, 4, 4), kernel_size=(3, 2, 2), dilation=(1, 2, 4), padding="causal",
        activation="tanh",  # no dead units: every dependence shows in the gradient
    )  # fmt: skip
    model = build_temporal_cnn(cfg, IOSpec((T, F), (1,)), nnx.Rngs(0))
    field = 1 + (3 - 1) * 1 + (2 - 1) * 2 + (2 - 1) * 4  # 9 steps
    np.testing.assert_array_equal(_dependence(model, T - 1), np.arange(T - field, T))
    np.testing.assert_array_equal(_dependence(model, 4), np.arange(0, 5))  # truncated at t=0


def test_same_padding_sees_the_future_of_the_window():
    cfg = TemporalCNNConfig(filters=(4,), kernel_size=(3,), padding="same", activation="tanh")
    model = build_temporal_cnn(cfg, IOSpec((T, F), (1,)), nnx.Rngs(0))
    np.testing.assert_array_equal(_dependence(model, 5), [4, 5, 6])


def test_last_step_pooling_reads_only_the_receptive_field():
    cfg = TemporalCNNConfig(filters=(4, 4), dilation=(1, 2), padding="causal", pool="last")
    model = build_temporal_cnn(cfg, IOSpec((T, F), (2,)), nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(4), (B, T, F))
    field = 1 + 2 * 1 + 2 * 2  # kernel 3, dilations 1 and 2
    older = x.at[:, : T - field].set(100.0)
    np.testing.assert_array_equal(model(older), model(x))
    assert not np.allclose(model(x.at[:, T - field].add(1.0)), model(x))


def test_shapes_spatial_inputs_and_jit_equals_eager():
    cfg = TemporalCNNConfig(filters=(8, 16), kernel_size=(5, 3), hidden=(16,))
    spec = IOSpec((T, 2, 2, F), (3, 2))
    model = build_temporal_cnn(cfg, spec, nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(2), (B, *spec.input_shape))
    graphdef, state = nnx.split(model)
    jitted = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, x)
    assert jitted.shape == (B, 3, 2)
    np.testing.assert_allclose(jitted, model(x), atol=1e-6)


def test_learns_a_lagged_signal():
    """Target = the input 3 steps before the end: learnable only through the time kernels."""
    cfg = TemporalCNNConfig(filters=(16, 16), kernel_size=(3,), dilation=(1, 2), padding="causal")
    model = build_temporal_cnn(cfg, IOSpec((T, 1), (1,)), nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(3), (256, T, 1))
    y = x[:, T - 4, :]
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)  # rest: the dropout RNG state
    optimizer = optax.adam(3e-3)

    def loss(params):
        return jnp.mean((nnx.merge(graphdef, params, rest)(x) - y) ** 2)

    @jax.jit
    def step(params, opt_state):
        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    opt_state = optimizer.init(params)
    first = float(loss(params))
    for _ in range(300):
        params, opt_state, value = step(params, opt_state)
    assert float(value) < 0.2 * first, (first, float(value))


@pytest.mark.parametrize(
    ("cfg", "field"),
    [
        (TemporalCNNConfig(filters=()), "model.filters"),
        (TemporalCNNConfig(filters=(8, 0)), "model.filters"),
        (TemporalCNNConfig(filters=(8, 8), kernel_size=(3, 3, 3)), "model.kernel_size"),
        (TemporalCNNConfig(dilation=(0,)), "model.dilation"),
        (TemporalCNNConfig(padding="valid"), "model.padding"),
        (TemporalCNNConfig(pool="max"), "model.pool"),
        (TemporalCNNConfig(activation="swish2"), "model.activation"),
    ],
)
def test_bad_config_names_the_field(cfg, field):
    with pytest.raises(ConfigError, match=field):
        build_temporal_cnn(cfg, IOSpec((T, F), (1,)), nnx.Rngs(0))


def test_bad_input_raises_data_error():
    model = build_temporal_cnn(TemporalCNNConfig(), IOSpec((T, F), (1,)), nnx.Rngs(0))
    with pytest.raises(DataError, match="x: expected"):
        model(jnp.ones((B, T, F + 2)))


def test_tcnn_daily_config_beats_persistence_two_and_three_days_ahead(tmp_path):
    """configs/tcnn_daily.yaml end to end on Seattle 2015: lower RMSE than persistence at
    leads 2 and 3 days (at 1 day persistence is about as good; see benchmarks/RESULTS.md)."""
    from climml import config, pipeline

    quiet = ["output.plots=false", "output.save_predictions=false", "output.progress=false"]
    cfg = config.load(Path(__file__).parents[2] / "configs" / "tcnn_daily.yaml", overrides=quiet)
    scores = pipeline.run(cfg, workdir=tmp_path).metrics
    for lead in ("2", "3"):
        ours, theirs = scores["model"]["rmse"][lead], scores["persistence"]["rmse"][lead]
        assert ours < 0.95 * theirs, (lead, ours, theirs)
