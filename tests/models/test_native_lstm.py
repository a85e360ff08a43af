"""The C++ LSTM kernel (climml.native) against the XLA path and the textbook equations."""

import os
import re
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from climml import native
from climml.errors import ConfigError
from climml.models._native_lstm import native_lstm_layer
from climml.models._recurrence import Plan, _layer, scan_cell
from climml.native import build

# Skipped only where the kernel cannot exist; with a compiler, a build that fails fails the tests.
pytestmark = pytest.mark.skipif(
    build._compiler() is None or os.environ.get("CLIMML_NATIVE") == "0",
    reason="no C++ compiler, or CLIMML_NATIVE=0",
)

T, B, H = 9, 13, 32  # 13 rows: three full 4-row tiles and a remainder row


def _inputs(features: int, seed: int = 0, masked: bool = False):
    keys = jax.random.split(jax.random.key(seed), 6)
    x = jax.random.normal(keys[0], (T, B, features))
    params = (
        jax.random.normal(keys[1], (features, 4 * H)) / features**0.5,
        0.3 * jax.random.normal(keys[2], (4 * H,)),
        jax.random.normal(keys[3], (H, 4 * H)) / H**0.5,
        0.3 * jax.random.normal(keys[4], (4 * H,)),
    )
    mask = None
    if masked:
        lengths = jax.random.randint(keys[5], (B,), 1, T + 1)
        mask = (jnp.arange(T)[:, None] < lengths)[..., None]
    return x, params, mask


def _kept(x, params, mask):
    """The kernel keeping every step's gates."""
    return native_lstm_layer(x, params, mask, x.shape[0])


def _chunked(x, params, mask):
    """The kernel recomputing gates in chunks of 4 steps (9 = 4 + 4 + 1: a short last chunk)."""
    return native_lstm_layer(x, params, mask, 4)


def _xla_layer(x, params, mask):
    return _layer("lstm", Plan(x.shape[0], keep=True), 1, x, params, mask)


def _close(a, b, rtol=2e-5):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=rtol * float(jnp.abs(v).max()))


def test_forward_matches_textbook_numpy():
    """h_t, c_t from NumPy float64 equations (sigmoid gates i, f, o; tanh g), same weights."""
    x, (w_in, b_in, w_rec, b_rec), _ = _inputs(5)
    ys, last = jax.jit(_kept)(x, (w_in, b_in, w_rec, b_rec), None)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    xs, wi, wr, b = (np.asarray(a, np.float64) for a in (x, w_in, w_rec, b_in + b_rec))
    h, c = np.zeros((B, H)), np.zeros((B, H))
    for t in range(T):
        z = xs[t] @ wi + h @ wr + b
        i, f, g, o = (
            sig(z[:, :H]),
            sig(z[:, H : 2 * H]),
            np.tanh(z[:, 2 * H : 3 * H]),
            sig(z[:, 3 * H :]),
        )
        c = f * c + i * g
        h = o * np.tanh(c)
        np.testing.assert_allclose(ys[t], h, atol=2e-6)
    np.testing.assert_allclose(last, h, atol=2e-6)


@pytest.mark.parametrize("layer", [_kept, _chunked])
@pytest.mark.parametrize("features", [5, 16])  # 16: the input cotangent comes from the kernel
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_values_and_gradients_match_xla_path(layer, features, masked, reverse):
    x, params, mask = _inputs(features, seed=features, masked=masked)
    d_ys = jax.random.normal(jax.random.key(7), (T, B, H))
    d_last = jax.random.normal(jax.random.key(8), (B, H))

    def loss(layer, x, params):
        if reverse:
            x, m = jnp.flip(x, 0), None if mask is None else jnp.flip(mask, 0)
        else:
            m = mask
        ys, last = layer(x, params, m)
        return jnp.sum(ys * d_ys) + jnp.sum(last * d_last), (ys, last)

    grad = lambda layer: jax.jit(jax.grad(loss, (1, 2), has_aux=True), static_argnums=0)  # noqa: E731
    ours, ours_out = grad(layer)(layer, x, params)
    ref, ref_out = grad(_xla_layer)(_xla_layer, x, params)
    _close((ours_out, ours), (ref_out, ref))


@pytest.mark.parametrize("layer", [_kept, _chunked])
@pytest.mark.parametrize("read", ["last", "sequence"])
def test_unread_outputs_and_data_inputs(layer, read):
    """Symbolic-zero cotangents (many-to-one or many-to-many heads) and undifferentiated x."""
    x, params, _ = _inputs(16, seed=3)

    def loss(layer, params):
        ys, last = layer(x, params, None)
        return jnp.sum(last**2) if read == "last" else jnp.sum(jnp.sin(ys))

    ours = jax.jit(jax.grad(loss, 1), static_argnums=0)(layer, params)
    ref = jax.jit(jax.grad(loss, 1), static_argnums=0)(_xla_layer, params)
    _close(ours, ref)


def test_scan_cell_dispatch():
    """scan_cell uses the kernel (outputs equal to the kernel's bit for bit)."""
    x, params, mask = _inputs(16, seed=4, masked=True)
    ys, last = scan_cell("lstm", x, *params, mask, plan=Plan(3, keep=False))
    ys_k, last_k = _chunked(x, params, mask)
    np.testing.assert_array_equal(ys, ys_k)
    np.testing.assert_array_equal(last, last_k)
    assert native.lstm_supported(jnp.float32, 32)
    assert not native.lstm_supported(jnp.float32, 24)  # not a multiple of 16: XLA path
    assert not native.lstm_supported(jnp.bfloat16, 32)
    with native.disabled():
        assert not native.lstm_supported(jnp.float32, 32)
        ys_xla, _ = scan_cell("lstm", x, *params, mask)
    _close(ys_xla, ys)


def test_thread_count_does_not_change_results(monkeypatch):
    """Rows are independent, so splitting them across threads is exact, not approximately so."""
    x, params, _ = _inputs(16, seed=5)
    step = jax.jit(jax.value_and_grad(lambda p: jnp.sum(_chunked(x, p, None)[0] ** 2)))
    many = step(params)
    monkeypatch.setenv("CLIMML_NATIVE_THREADS", "1")
    one = jax.jit(jax.value_and_grad(lambda p: jnp.sum(_chunked(x + 0.0, p, None)[0] ** 2)))(params)
    for a, b in zip(jax.tree.leaves(many), jax.tree.leaves(one), strict=True):
        np.testing.assert_array_equal(a, b)


def test_vmap_equals_loop():
    x, params, _ = _inputs(5, seed=6)
    xs = jnp.stack([x, 2 * x, -x])
    batched = jax.vmap(lambda x: _kept(x, params, None)[1])(xs)
    for k in range(3):
        np.testing.assert_allclose(batched[k], _kept(xs[k], params, None)[1], atol=1e-6)


def test_batch_sharded_over_devices_equals_one_device():
    """Each device runs the kernel on its own rows: same result, and no gathering of the batch."""
    if len(jax.devices()) < 2:
        pytest.skip("needs several (simulated) devices")
    devices = np.array(jax.devices()[:4])
    x, params, _ = _inputs(16, seed=9)
    x = jnp.concatenate([x, x[:, :3]], axis=1)  # 16 rows, divisible by 4 devices
    mesh = jax.sharding.Mesh(devices, ("batch",))
    sharded = jax.device_put(x, NamedSharding(mesh, PartitionSpec(None, "batch")))
    step = jax.jit(jax.grad(lambda p, x: jnp.sum(_chunked(x, p, None)[1] ** 2)))
    _close(step(params, sharded), step(params, x), rtol=1e-5)
    program = step.lower(params, sharded).compile().as_text()
    calls = [line for line in program.splitlines() if "climml_lstm_" in line]
    rows = {int(r) for line in calls for r in re.findall(r"f32\[\d+,(\d+),\d+\]", line)}
    assert calls and rows == {4}  # every kernel call on a device sees 4 of the 16 rows
    assert "all-gather" not in program


def test_hidden_size_must_fit_vectors():
    x, (w_in, b_in, _, b_rec), _ = _inputs(5)
    with pytest.raises(ConfigError, match="hidden: expected a multiple of 16 units, found 24"):
        native.lstm_forward(x, w_in[:, :96], b_in[:96], jnp.zeros((24, 96)), jnp.ones((T, B)))


def test_failed_build_falls_back_and_leaves_nothing(tmp_path, monkeypatch):
    """A source that does not compile: a warning naming the compiler error, no library, no temp
    files, and ``load()`` False; the caller then uses the XLA path."""
    bad = tmp_path / "bad.cc"
    bad.write_text("this is not C++\n")
    monkeypatch.setenv("CLIMML_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(build, "SOURCE", bad)
    monkeypatch.setattr(build, "_loaded", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert build.load() is False
    assert "failed to build" in build.reason and "error" in build.reason
    assert any("using the XLA path" in str(w.message) for w in caught)
    assert list(Path(tmp_path / "cache").rglob("*")) == [Path(tmp_path / "cache" / "native")]


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("CLIMML_NATIVE", "0")
    monkeypatch.setattr(build, "_loaded", None)
    assert build.load() is False and "CLIMML_NATIVE=0" in build.reason
    monkeypatch.setattr(build, "_loaded", None)
    monkeypatch.delenv("CLIMML_NATIVE")
    assert build.load() is True


def test_cache_key_changes_with_source(tmp_path, monkeypatch):
    src = tmp_path / "k.cc"
    src.write_text("int a;\n")
    monkeypatch.setattr(build, "SOURCE", src)
    first = build._library_path(build._compiler())
    src.write_text("int b;\n")
    assert build._library_path(build._compiler()) != first
    assert os.path.dirname(first) == os.path.dirname(build._library_path(build._compiler()))


@pytest.mark.parametrize("head", ["many_to_one", "many_to_many"])
def test_bidirectional_network_matches_xla_path(head):
    """A stacked bidirectional LSTM with ragged lengths: loss and every parameter gradient equal
    with the kernel and without it (both directions and both layers go through the kernel)."""
    from flax import nnx

    from climml.models.rnn import LSTMConfig, build_rnn
    from climml.types import IOSpec

    steps, batch, features = 11, 6, 3
    out = (1,) if head == "many_to_one" else (steps, 1)
    cfg = LSTMConfig(hidden=(16, 32), bidirectional=True, head=head)
    graphdef, params = nnx.split(build_rnn(cfg, IOSpec((steps, features), out), nnx.Rngs(0)))
    x = jax.random.normal(jax.random.key(1), (batch, steps, features))
    y = jax.random.normal(jax.random.key(2), (batch, *out))
    lengths = jnp.array([11, 7, 1, 11, 4, 9])

    def loss(p):
        return jnp.mean((nnx.merge(graphdef, p)(x, lengths) - y) ** 2)

    kernel_step = jax.jit(jax.value_and_grad(loss))
    # 2 layers x 2 directions: 4 forward calls, and 4 backward ones each re-running its forward.
    assert kernel_step.lower(params).compile().as_text().count('"climml_lstm_forward"') >= 4
    with native.disabled():
        xla_step = jax.jit(jax.value_and_grad(lambda p: loss(p) + 0.0))
        assert "climml_lstm" not in xla_step.lower(params).compile().as_text()
        ref = xla_step(params)
    _close(kernel_step(params), ref, rtol=3e-5)


@pytest.mark.parametrize(("batch", "hidden", "features"), [(1, 16, 3), (2, 48, 32), (6, 80, 48)])
def test_other_shapes_match_xla_path(batch, hidden, features):
    """Batches smaller than a 4-row tile, and hidden / input sizes that are not multiples of the
    4-vector (64-float) column block the matmuls prefer."""
    keys = jax.random.split(jax.random.key(batch), 5)
    x = jax.random.normal(keys[0], (7, batch, features))
    params = (
        jax.random.normal(keys[1], (features, 4 * hidden)) / features**0.5,
        0.3 * jax.random.normal(keys[2], (4 * hidden,)),
        jax.random.normal(keys[3], (hidden, 4 * hidden)) / hidden**0.5,
        jnp.zeros(4 * hidden),
    )
    d_ys = jax.random.normal(keys[4], (7, batch, hidden))

    def loss(layer, x, params):
        ys, last = layer(x, params, None)
        return jnp.sum(ys * d_ys) + jnp.sum(last)

    grad = lambda layer: jax.jit(jax.value_and_grad(loss, (1, 2)), static_argnums=0)  # noqa: E731
    chunk3 = lambda x, p, m: native_lstm_layer(x, p, m, 3)  # noqa: E731
    _close(grad(chunk3)(chunk3, x, params), grad(_xla_layer)(_xla_layer, x, params))
