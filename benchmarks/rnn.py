"""LSTM (or GRU) training throughput: climml vs ``torch.nn.LSTM`` / ``GRU`` (and a plain JAX
LSTM) on CPU.

All contenders train the same network in one process — a stacked LSTM (default 2 layers x 64
hidden units, 8 input features) with a dense layer on the last step's state — on the same batch
shape, with MSE loss and Adam. One training step is forward + backward + update. Throughput is
sequences per second, ``batch / seconds per step``, timed over blocks of steps that alternate
between the contenders (so load from other processes on a shared machine hits all alike); the
best block of each is reported. The peer is torch at its best thread count.

Contenders: ``climml`` (``climml.models.rnn`` as it runs by default: the pure-XLA path of
``climml.models._recurrence``, hoisted input projection, custom-VJP backpropagation through time
that keeps pre-activations or recomputes them per chunk; the same numbers on every machine);
``climml-native`` (LSTM only: the same model with the opt-in C++ kernel, ``CLIMML_NATIVE=1`` or
``train.native_lstm: true``, ``climml/native/lstm_cpu.cc``: a fused pass per tile of batch rows
and step, rows split across XLA's threads; absent where the kernel is declined, the reason is
printed); ``jax-scan`` (the textbook JAX LSTM a user would write: hoisted projection,
``jax.nn.sigmoid`` gates, ``lax.scan``, autodiff); ``torch/N`` (``torch.nn.LSTM`` eager, N
threads). The ratios are climml's throughput over the best torch's, for the default path and the
kernel. Compile time is XLA's for climml's train step (torch has none).

    python benchmarks/rnn.py            # batch 64, 2 x 64 hidden, 32 and 256 steps
    python benchmarks/rnn.py --quick    # small smoke run
    python benchmarks/rnn.py --cell gru # GRU vs torch.nn.GRU (same "reset after" equations)
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
import torch
from flax import nnx

from climml import native
from climml.models.rnn import RecurrentConfig, build_rnn
from climml.types import IOSpec

FEATURES = 8
LR = 1e-3


def jax_trainer(predict: Callable, params, batch: int, steps: int):
    """``(compile_seconds, run(n))`` for a jitted Adam/MSE step of ``predict(params, x)``."""
    optimizer = optax.adam(LR)
    key_x, key_y = jax.random.split(jax.random.key(0))
    x = jax.random.normal(key_x, (batch, steps, FEATURES))
    y = jax.random.normal(key_y, (batch, 1))

    def train_step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((predict(p, x) - y) ** 2))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = optimizer.init(params)
    start = time.perf_counter()
    step = jax.jit(train_step, donate_argnums=(0, 1)).lower(params, opt_state, x, y).compile()
    compile_s = time.perf_counter() - start
    state = {"params": params, "opt": opt_state}

    def run(n: int) -> None:
        for _ in range(n):
            state["params"], state["opt"], loss = step(state["params"], state["opt"], x, y)
        loss.block_until_ready()

    return compile_s, run


def climml_trainer(cell: str, batch: int, steps: int, hidden: int, layers: int):
    cfg = RecurrentConfig(name=cell, hidden=(hidden,) * layers)
    model = build_rnn(cfg, IOSpec((steps, FEATURES), (1,)), nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    return jax_trainer(lambda p, x: nnx.merge(graphdef, p)(x), params, batch, steps)


def plain_jax_trainer(batch: int, steps: int, hidden: int, layers: int):
    """The textbook JAX LSTM: same sizes and gate order, differentiated by ``jax.grad``."""
    keys = iter(jax.random.split(jax.random.key(0), 2 * layers + 1))
    params, width = [], FEATURES
    for _ in range(layers):
        params.append({
            "w_in": jax.random.normal(next(keys), (width, 4 * hidden)) / width**0.5,
            "w_rec": jax.random.normal(next(keys), (hidden, 4 * hidden)) / hidden**0.5,
            "b": jnp.zeros(4 * hidden),
        })  # fmt: skip
        width = hidden
    head = {"w": jax.random.normal(next(keys), (hidden, 1)) / hidden**0.5, "b": jnp.zeros(1)}

    def cell(w_rec, carry, xw_t):
        h, c = carry
        i, f, g, o = jnp.split(xw_t + h @ w_rec, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    def predict(p, x):
        seq = jnp.swapaxes(x, 0, 1)
        for layer in p["layers"]:
            zeros = jnp.zeros((x.shape[0], hidden))
            xw = seq @ layer["w_in"] + layer["b"]
            _, seq = jax.lax.scan(lambda c, s, w=layer["w_rec"]: cell(w, c, s), (zeros, zeros), xw)
        return seq[-1] @ p["head"]["w"] + p["head"]["b"]

    return jax_trainer(predict, {"layers": params, "head": head}, batch, steps)


class TorchRNN(torch.nn.Module):
    """The same network in PyTorch: stacked LSTM or GRU, dense head on the last step."""

    def __init__(self, cell: str, hidden: int, layers: int):
        super().__init__()
        kind = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        self.lstm = kind(FEATURES, hidden, num_layers=layers, batch_first=True)
        self.head = torch.nn.Linear(hidden, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def torch_trainer(cell: str, batch: int, steps: int, hidden: int, layers: int, threads: int):
    """``run(n)`` doing ``n`` eager PyTorch training steps on ``threads`` threads."""
    torch.manual_seed(0)
    model = TorchRNN(cell, hidden, layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    x = torch.randn(batch, steps, FEATURES)
    y = torch.randn(batch, 1)

    def run(n: int) -> None:
        torch.set_num_threads(threads)
        for _ in range(n):
            optimizer.zero_grad(set_to_none=True)
            loss = torch.mean((model(x) - y) ** 2)
            loss.backward()
            optimizer.step()

    return run


def compare(args, steps: int, block: int, kernel: bool) -> dict:
    """Best sequences/s of every contender at one sequence length, in alternating blocks."""
    sizes = (args.batch, steps, args.hidden, args.layers)
    with native.disabled():  # the default path, whatever CLIMML_NATIVE says
        compile_s, runners = {}, {}
        compile_s["climml"], runners["climml"] = climml_trainer(args.cell, *sizes)
    if args.cell == "lstm":  # the kernel and the textbook contender are LSTM-only
        if kernel:
            with native.enabled():
                compile_s["climml-native"], runners["climml-native"] = climml_trainer(
                    args.cell, *sizes
                )
        runners["jax-scan"] = plain_jax_trainer(*sizes)[1]
    for threads in args.torch_threads:
        runners[f"torch/{threads}"] = torch_trainer(args.cell, *sizes, threads)
    rates = {name: [] for name in runners}
    for repeat in range(args.repeats + 1):  # the first round warms caches and thread pools
        for name, run in runners.items():
            start = time.perf_counter()
            run(block)
            if repeat:
                rates[name].append(args.batch * block / (time.perf_counter() - start))
    best = {name: max(values) for name, values in rates.items()}
    peer = max((n for n in best if n.startswith("torch")), key=best.get)
    ratios = {n: best[n] / best[peer] for n in compile_s}
    return {"compile_s": compile_s, "best": best, "peer": peer, "ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks per contender")
    parser.add_argument(
        "--torch-threads", type=int, nargs="+", default=sorted({1, torch.get_num_threads()}),
        help="torch intra-op thread counts to try (its best one is the peer)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.batch, args.hidden, args.steps, args.repeats = 8, 16, [16], 2

    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__}, "
          f"torch {torch.__version__}")  # fmt: skip
    print(f"# {args.cell}, batch {args.batch}, {args.layers} layers x {args.hidden} hidden, "
          f"{FEATURES} features, Adam, best of {args.repeats} blocks")  # fmt: skip
    kernel = args.cell == "lstm" and native.build.load()
    status = "measured" if kernel else f"not measured ({native.build.reason or 'GRU'})"
    print(f"# climml default: pure XLA; opt-in native C++ LSTM kernel: {status}")
    ours = ["climml"] + ["climml-native"] * kernel
    names = ours + ["jax-scan"] * (args.cell == "lstm") + [f"torch/{t}" for t in args.torch_threads]
    header = " ".join(f"{n + ' seq/s':>15}" for n in names)
    ratios = " ".join(f"{n + ' x':>15}" for n in ours)
    compiles = " ".join(f"{n + ' compile s':>15}" for n in ours)
    print(f"{'steps':>6} {header} {ratios} {'vs':>8} {compiles}")
    for steps in args.steps:
        block = 2 if args.quick else max(2, 2048 // steps)
        r = compare(args, steps, block, kernel)
        rates = " ".join(f"{r['best'][n]:>15.0f}" for n in names)
        ratios = " ".join(f"{r['ratios'][n]:>14.2f}x" for n in ours)
        compiles = " ".join(f"{r['compile_s'][n]:>15.2f}" for n in ours)
        print(f"{steps:>6} {rates} {ratios} {r['peer']:>8} {compiles}")


if __name__ == "__main__":
    main()
