"""Gradient saliency maps of gridded models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from climml.errors import ConfigError, DataError
from climml.explain import saliency

SHAPE = (6, 8, 2)  # (lat, lon, channels)


@pytest.fixture(scope="module")
def fields():
    return np.random.default_rng(0).standard_normal((5, *SHAPE)).astype(np.float32)


def test_linear_model_saliency_is_its_weights(fields):
    weights = jnp.asarray(np.random.default_rng(1).standard_normal((3, *SHAPE)), jnp.float32)

    def predict(x):  # three leads, each a weighted sum over the grid
        return jnp.einsum("nyxc,lyxc->nl", x, weights)

    grad = saliency(predict, fields, output_fn=lambda p: p[1])
    np.testing.assert_allclose(grad, np.broadcast_to(weights[1], fields.shape), rtol=1e-6)
    times_input = saliency(predict, fields, output_fn=lambda p: p[1], method="input_x_gradient")
    np.testing.assert_allclose(times_input, weights[1] * fields, rtol=1e-6)
    magnitude = saliency(predict, fields, output_fn=lambda p: p[1], absolute=True)
    np.testing.assert_allclose(magnitude, np.abs(np.asarray(grad)), rtol=1e-6)


class TinyCNN(nnx.Module):
    """Conv → tanh → mean over the grid → scalar per sample: a non-linear gridded model."""

    def __init__(self, rngs: nnx.Rngs):
        self.conv = nnx.Conv(SHAPE[-1], 4, kernel_size=(3, 3), rngs=rngs)
        self.head = nnx.Linear(4, 1, rngs=rngs)

    def __call__(self, x):
        return self.head(jnp.tanh(self.conv(x)).mean(axis=(1, 2)))[:, 0]


@pytest.fixture(scope="module")
def cnn_predict():
    graphdef, state = nnx.split(TinyCNN(nnx.Rngs(0)))
    return lambda x: nnx.merge(graphdef, state)(x)


def test_cnn_saliency_equals_per_sample_gradients_and_finite_differences(fields, cnn_predict):
    maps = np.asarray(saliency(cnn_predict, fields))
    for i in range(fields.shape[0]):  # a plain loop of per-sample gradients
        grad_i = jax.grad(lambda s: cnn_predict(s[None])[0])(jnp.asarray(fields[i]))
        np.testing.assert_allclose(maps[i], grad_i, rtol=1e-5, atol=1e-7)
    eps = 1e-2
    for idx in [(0, 2, 3, 0), (3, 5, 7, 1), (4, 0, 0, 1)]:
        up, down = fields.copy(), fields.copy()
        up[idx] += eps
        down[idx] -= eps
        central = (cnn_predict(up)[idx[0]] - cnn_predict(down)[idx[0]]) / (2 * eps)
        np.testing.assert_allclose(maps[idx], central, rtol=0.02, atol=1e-4)


def test_chunked_saliency_equals_vmapped(fields, cnn_predict):
    np.testing.assert_allclose(
        saliency(cnn_predict, fields, chunk_size=2), saliency(cnn_predict, fields), rtol=1e-6
    )


def test_bad_arguments_are_reported(fields, cnn_predict):
    with pytest.raises(ConfigError, match="^method: expected"):
        saliency(cnn_predict, fields, method="lrp")
    with pytest.raises(ConfigError, match="^output_fn: expected a scalar"):
        saliency(lambda x: x, fields, output_fn=lambda p: p)
    with pytest.raises(ConfigError, match="^chunk_size: expected"):
        saliency(cnn_predict, fields, chunk_size=0)
    with pytest.raises(DataError, match="^inputs: expected a float array"):
        saliency(cnn_predict, fields.astype(np.int32))
