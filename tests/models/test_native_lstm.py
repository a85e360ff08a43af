"""The C++ LSTM kernel (climml.native): opt-in, against the XLA path and the textbook equations,
and its declining (one warning, the XLA path) where a machine cannot build it.

Kernel tests take the ``kernel`` fixture: it asks for the kernel and skips, with the reason, where
this machine cannot have it (no compiler, a CPU without AVX2, not x86-64). Where the kernel can be
built, a failure is a failure.
"""

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

import climml as cm
from climml import native, pipeline
from climml.errors import ConfigError
from climml.models import _recurrence
from climml.models._native_lstm import native_lstm_layer
from climml.models._recurrence import Plan, _layer, scan_cell
from climml.models.rnn import LSTMConfig, build_rnn
from climml.native import build
from climml.types import IOSpec


def _kernel_or_skip() -> None:
    if not build.load():
        pytest.skip(f"native LSTM kernel unavailable on this machine: {build.reason}")


@pytest.fixture
def kernel():
    """The kernel asked for inside the test; skipped, with the reason, where it cannot be built."""
    _kernel_or_skip()
    with native.enabled():
        yield


@pytest.fixture
def fresh_build(tmp_path, monkeypatch):
    """``build.load()`` starts over (restored after the test) with an empty cache and no
    warning given yet; the default request (``CLIMML_NATIVE`` unset)."""
    monkeypatch.setenv("CLIMML_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CLIMML_NATIVE", raising=False)
    monkeypatch.setattr(build, "_loaded", None)
    monkeypatch.setattr(build, "reason", None)
    monkeypatch.setattr(native, "_warned", False)
    return tmp_path / "cache"


def _no_compiler(monkeypatch) -> None:
    """This process as on a machine without a C++ compiler."""
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(build, "_loaded", None)
    assert build._compiler() is None


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


def test_forward_matches_textbook_numpy(kernel):
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
def test_values_and_gradients_match_xla_path(kernel, layer, features, masked, reverse):
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
def test_unread_outputs_and_data_inputs(kernel, layer, read):
    """Symbolic-zero cotangents (many-to-one or many-to-many heads) and undifferentiated x."""
    x, params, _ = _inputs(16, seed=3)

    def loss(layer, params):
        ys, last = layer(x, params, None)
        return jnp.sum(last**2) if read == "last" else jnp.sum(jnp.sin(ys))

    ours = jax.jit(jax.grad(loss, 1), static_argnums=0)(layer, params)
    ref = jax.jit(jax.grad(loss, 1), static_argnums=0)(_xla_layer, params)
    _close(ours, ref)


def test_scan_cell_dispatch(kernel):
    """Asked for, scan_cell uses the kernel (outputs equal to the kernel's bit for bit)."""
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


def test_default_is_the_xla_path(monkeypatch):
    """Not asked for, scan_cell is the XLA path bit for bit, and no build is attempted."""
    monkeypatch.delenv("CLIMML_NATIVE", raising=False)
    monkeypatch.setattr(build, "_loaded", None)
    x, params, mask = _inputs(16, seed=4, masked=True)
    ys, last = jax.jit(lambda x, p: scan_cell("lstm", x, *p, mask))(x, params)
    ref_ys, ref_last = jax.jit(lambda x, p: _layer("lstm", Plan(T, keep=True), 1, x, p, mask))(
        x, params
    )
    np.testing.assert_array_equal(ys, ref_ys)
    np.testing.assert_array_equal(last, ref_last)
    assert build._loaded is None  # never even looked for a compiler


def test_thread_count_does_not_change_results(kernel, monkeypatch):
    """Rows are independent, so splitting them across threads is exact, not approximately so."""
    x, params, _ = _inputs(16, seed=5)
    step = jax.jit(jax.value_and_grad(lambda p: jnp.sum(_chunked(x, p, None)[0] ** 2)))
    many = step(params)
    monkeypatch.setenv("CLIMML_NATIVE_THREADS", "1")
    one = jax.jit(jax.value_and_grad(lambda p: jnp.sum(_chunked(x + 0.0, p, None)[0] ** 2)))(params)
    for a, b in zip(jax.tree.leaves(many), jax.tree.leaves(one), strict=True):
        np.testing.assert_array_equal(a, b)


def test_vmap_equals_loop(kernel):
    x, params, _ = _inputs(5, seed=6)
    xs = jnp.stack([x, 2 * x, -x])
    batched = jax.vmap(lambda x: _kept(x, params, None)[1])(xs)
    for k in range(3):
        np.testing.assert_allclose(batched[k], _kept(xs[k], params, None)[1], atol=1e-6)


def test_batch_sharded_over_devices_equals_one_device(kernel):
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


def test_hidden_size_must_fit_vectors(kernel):
    x, (w_in, b_in, _, b_rec), _ = _inputs(5)
    with pytest.raises(ConfigError, match="hidden: expected a multiple of 16 units, found 24"):
        native.lstm_forward(x, w_in[:, :96], b_in[:96], jnp.zeros((24, 96)), jnp.ones((T, B)))


def test_failed_build_falls_back_and_leaves_nothing(fresh_build, monkeypatch):
    """A source that does not compile: the reason names the compiler error, no library, no temp
    files, and ``load()`` False; the caller then uses the XLA path."""
    bad = fresh_build.parent / "bad.cc"
    bad.write_text("this is not C++\n")
    monkeypatch.setattr(build, "SOURCE", bad)
    assert build.load() is False
    assert "failed to build" in build.reason and "error" in build.reason
    assert list(fresh_build.rglob("*")) == [fresh_build / "native"]


def _unbuildable_isa(monkeypatch):
    monkeypatch.setattr(build, "isa_flags", lambda: ("-march=no-such-cpu",))


def _avx2_cpu(monkeypatch):
    monkeypatch.setattr(build.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(build, "_cpu_flags", lambda: {"sse2", "avx", "avx2", "fma"})  # Zen 3


def _arm_cpu(monkeypatch):
    monkeypatch.setattr(build.platform, "machine", lambda: "aarch64")


@pytest.mark.parametrize(
    ("machine", "why"),
    [
        (_unbuildable_isa, "failed to build"),
        (_avx2_cpu, "lacks AVX-512"),
        (_arm_cpu, "x86-64 CPUs only"),
        (_no_compiler, "no C++ compiler"),
    ],
)
def test_requested_where_unsupported_falls_back_with_one_warning(
    fresh_build, monkeypatch, machine, why
):
    """Asked for on a machine that cannot have it: one warning with the reason for any number
    of layers traced, the XLA path's results bit for bit, and the kernel tests skip, not fail."""
    machine(monkeypatch)
    x, params, mask = _inputs(16, seed=2, masked=True)
    ref = jax.jit(lambda x, p: _layer("lstm", Plan(T, keep=True), 1, x, p, mask))(x, params)
    monkeypatch.setenv("CLIMML_NATIVE", "1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = jax.jit(lambda x, p: scan_cell("lstm", x, *p, mask))(x, params)
        again = jax.jit(lambda x, p: scan_cell("lstm", x[:5], *p, mask[:5]))(x, params)
    messages = [str(w.message) for w in caught if "native LSTM kernel" in str(w.message)]
    assert len(messages) == 1 and why in messages[0] and "using the XLA path" in messages[0]
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    assert again[0].shape == (5, B, H)
    assert not list(fresh_build.rglob("*.so"))
    with pytest.raises(pytest.skip.Exception, match=re.escape(why)):
        _kernel_or_skip()


def test_instruction_set_from_cpu_features(monkeypatch):
    monkeypatch.setattr(build.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(build, "_cpu_flags", lambda: {"avx", "avx2", "fma", "avx512f", "avx512bw"})
    assert build.isa_flags() == ("-mavx2", "-mfma", "-mavx512f")
    monkeypatch.setattr(build, "_cpu_flags", lambda: {"avx", "avx2", "fma"})  # e.g. Zen 3
    assert "lacks AVX-512" in build.isa_flags()
    monkeypatch.setattr(build.platform, "machine", lambda: "aarch64")
    assert "x86-64 CPUs only (this one is aarch64)" in build.isa_flags()


@pytest.mark.parametrize("isa", [build._AVX2, build._AVX512], ids=["avx2", "avx512"])
def test_source_compiles_for_avx2_and_avx512(tmp_path, isa):
    """The register-pinning asm only where a vector fits a register: both builds compile on
    any x86-64 machine (AVX2 is declined at run time for speed, not for want of compiling; the
    build this CPU loads is compiled by the kernel tests already)."""
    compiler = build._compiler()
    if compiler is None or build.platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("needs a C++ compiler targeting x86-64")
    if build.isa_flags() == isa:
        pytest.skip("this CPU's own build: compiled by the kernel tests")
    target = tmp_path / "lib.so"
    build._compile(compiler, (*build.FLAGS, *isa), target)
    assert target.stat().st_size > 0


def test_request_switches(monkeypatch):
    """CLIMML_NATIVE sets the process default; the innermost block wins over it."""
    monkeypatch.delenv("CLIMML_NATIVE", raising=False)
    assert not native.requested()
    with native.enabled():
        assert native.requested()
        with native.disabled():
            assert not native.requested()
        with native.enabled(False):  # a config switch left off changes nothing
            assert native.requested()
    monkeypatch.setenv("CLIMML_NATIVE", "1")
    assert native.requested()
    with native.disabled():
        assert not native.requested()
    monkeypatch.setenv("CLIMML_NATIVE", "0")
    assert not native.requested()
    monkeypatch.setenv("CLIMML_NATIVE", "yes")
    with pytest.raises(ConfigError, match="CLIMML_NATIVE: expected 0 .* or 1 .*, found yes"):
        native.requested()


def test_cache_key_changes_with_source_and_flags(tmp_path, monkeypatch):
    compiler = build._compiler()
    if compiler is None:
        pytest.skip("no C++ compiler")
    src = tmp_path / "k.cc"
    src.write_text("int a;\n")
    monkeypatch.setattr(build, "SOURCE", src)
    first = build._library_path(compiler, build.FLAGS)
    assert build._library_path(compiler, (*build.FLAGS, "-mavx2")) != first
    src.write_text("int b;\n")
    assert build._library_path(compiler, build.FLAGS) != first
    assert first.parent == build._library_path(compiler, build.FLAGS).parent


@pytest.mark.parametrize("head", ["many_to_one", "many_to_many"])
def test_bidirectional_network_matches_xla_path(kernel, head):
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
def test_other_shapes_match_xla_path(kernel, batch, hidden, features):
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


# ------------------------------------------------------------------ the default path, end to end


def _train_step_outputs():
    """Loss and gradients of a small bidirectional LSTM network (a hidden size the kernel could
    serve), jitted afresh."""
    steps, batch, features = 6, 5, 3
    cfg = LSTMConfig(hidden=(16,), bidirectional=True)
    graphdef, params = nnx.split(build_rnn(cfg, IOSpec((steps, features), (2,)), nnx.Rngs(0)))
    x = jax.random.normal(jax.random.key(1), (batch, steps, features))
    y = jax.random.normal(jax.random.key(2), (batch, 2))
    lengths = jnp.array([6, 2, 5, 6, 1])
    loss = lambda p: jnp.mean((nnx.merge(graphdef, p)(x, lengths) - y) ** 2)  # noqa: E731
    return jax.tree.leaves(jax.jit(jax.value_and_grad(loss))(params))


def test_default_train_step_identical_without_a_compiler(monkeypatch):
    monkeypatch.delenv("CLIMML_NATIVE", raising=False)
    with_compiler = _train_step_outputs()
    _no_compiler(monkeypatch)
    for a, b in zip(with_compiler, _train_step_outputs(), strict=True):
        np.testing.assert_array_equal(a, b)


RUN = [
    "model.hidden=[16]",  # a size the kernel serves, so a default that used it would show
    "train.epochs=1",
    "eval.baselines=[persistence]",
    "output.plots=false",
    "output.save_predictions=false",
    "output.progress=false",
]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """One epoch of configs/lstm_nino.yaml (real data, shipped) on the default path: the
    trained parameters and the test metrics."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CLIMML_NATIVE", raising=False)
        return _lstm_run(tmp_path_factory.mktemp("default"), [])


def _lstm_run(workdir, overrides):
    cfg = cm.config.load("configs/lstm_nino.yaml", RUN + overrides)
    result = cm.run(cfg, workdir)
    params = pipeline.trained_model(pipeline.prepare(cfg), workdir).params
    return jax.tree.leaves(params), result.metrics


def test_lstm_run_identical_without_a_compiler(default_run, tmp_path, monkeypatch):
    """An LSTM config trained and scored on the default path gives the same bits whether or
    not the machine has a C++ compiler."""
    _no_compiler(monkeypatch)
    params, metrics = _lstm_run(tmp_path / "run", [])
    for a, b in zip(default_run[0], params, strict=True):
        np.testing.assert_array_equal(a, b)
    assert metrics == default_run[1]


def test_config_switch_runs_the_kernel(default_run, tmp_path, monkeypatch):
    """``train.native_lstm: true`` turns the kernel on for that run: its layers go through it
    in training and scoring, and the result agrees with the default path to float rounding."""
    _kernel_or_skip()
    monkeypatch.delenv("CLIMML_NATIVE", raising=False)
    calls = []

    def recording(*args):
        calls.append(native.requested())
        return native_lstm_layer(*args)

    monkeypatch.setattr(_recurrence, "native_lstm_layer", recording)
    params, metrics = _lstm_run(tmp_path / "run", ["train.native_lstm=true"])
    assert calls and all(calls)
    assert not native.requested()  # only for that run
    for a, b in zip(default_run[0], params, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    model, ref = metrics["model"]["rmse"], default_run[1]["model"]["rmse"]
    assert model.keys() == ref.keys()
    for lead in ref:
        assert model[lead] == pytest.approx(ref[lead], rel=1e-4)


def test_fit_honours_the_config_switch(monkeypatch):
    """``climml.train.fit`` called directly (research code, no pipeline) asks for the kernel
    when its ``TrainConfig`` has ``native_lstm=True``, and only then."""
    import dataclasses

    _kernel_or_skip()
    monkeypatch.delenv("CLIMML_NATIVE", raising=False)
    calls = []

    def recording(*args):
        calls.append(native.requested())
        return native_lstm_layer(*args)

    monkeypatch.setattr(_recurrence, "native_lstm_layer", recording)
    cfg = cm.config.load("configs/lstm_nino.yaml", RUN)
    exp = pipeline.prepare(cfg)
    for switch in (False, True):
        calls.clear()
        train = dataclasses.replace(cfg.train, native_lstm=switch)
        model = pipeline.build_model(exp)
        loaders = exp.loader("train", training=True), exp.loader("val")
        cm.train.fit(model, *loaders, train, seed=0, progress=False)
        assert bool(calls) is switch and all(calls)
    assert not native.requested()
