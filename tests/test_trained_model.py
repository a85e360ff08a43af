"""``TrainedModel.from_module`` wraps a snapshot of the module's parameters."""

import jax.numpy as jnp
import numpy as np
from flax import nnx

import climml as cm


def test_from_module_is_a_snapshot_of_the_parameters():
    spec = cm.models.IOSpec(input_shape=(4, 3), output_shape=(1,))
    model = cm.models.build("mlp", spec, rngs=nnx.Rngs(0), hidden=(4,))
    x = jnp.linspace(-1.0, 1.0, 24, dtype=jnp.float32).reshape(2, 4, 3)
    wrapped = cm.pipeline.TrainedModel.from_module(model)
    before = np.asarray(wrapped.predict_fn()(x))
    np.testing.assert_allclose(before, np.asarray(model(x)), rtol=1e-6)
    for _, value in nnx.iter_graph(model):  # what fit does: update the variables in place
        if isinstance(value, nnx.Param):
            value[...] = jnp.ones_like(value[...])
    np.testing.assert_array_equal(np.asarray(wrapped.predict_fn()(x)), before)
    assert not np.allclose(np.asarray(model(x)), before)  # the module itself did change
