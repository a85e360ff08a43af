"""LSTM training throughput: climml (JAX scan) vs ``torch.nn.LSTM`` on CPU, in one process.

Both sides train the same network — a 2-layer LSTM with 64 hidden units on 8 input features,
followed by a dense layer on the last step's state — with the same batch, MSE loss and Adam.
One training step is forward + backward + update. Throughput is sequences per second,
``batch * steps / seconds``, timed over repeated blocks of steps that alternate between the two
frameworks (so load from other processes on a shared machine hits both alike); the best block of
each is reported. Compile time is how long XLA takes to compile climml's train step (torch runs
eagerly, it has none).

    python benchmarks/rnn.py            # batch 64, 32 and 256 steps
    python benchmarks/rnn.py --quick    # small smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import optax
import torch
from flax import nnx

from climml.models.registry import IOSpec
from climml.models.rnn import LSTMConfig, build_rnn

FEATURES = 8
LR = 1e-3


def climml_trainer(batch: int, steps: int, hidden: int, layers: int, unroll: int):
    """Return ``(compile_seconds, run(n))`` where ``run`` does ``n`` jitted training steps."""
    cfg = LSTMConfig(hidden=(hidden,) * layers, unroll=unroll)
    model = build_rnn(cfg, IOSpec((steps, FEATURES), (1,)), nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    optimizer = optax.adam(LR)
    opt_state = optimizer.init(params)

    def loss_fn(params, x, y):
        return jnp.mean((nnx.merge(graphdef, params)(x) - y) ** 2)

    def train_step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    key_x, key_y = jax.random.split(jax.random.key(0))
    x = jax.random.normal(key_x, (batch, steps, FEATURES))
    y = jax.random.normal(key_y, (batch, 1))
    start = time.perf_counter()
    step = jax.jit(train_step, donate_argnums=(0, 1)).lower(params, opt_state, x, y).compile()
    compile_s = time.perf_counter() - start
    state = {"params": params, "opt": opt_state}

    def run(n: int) -> None:
        for _ in range(n):
            state["params"], state["opt"], loss = step(state["params"], state["opt"], x, y)
        loss.block_until_ready()

    return compile_s, run


class TorchLSTM(torch.nn.Module):
    """The same network in PyTorch: stacked LSTM, dense head on the last step."""

    def __init__(self, hidden: int, layers: int):
        super().__init__()
        self.lstm = torch.nn.LSTM(FEATURES, hidden, num_layers=layers, batch_first=True)
        self.head = torch.nn.Linear(hidden, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def torch_trainer(batch: int, steps: int, hidden: int, layers: int):
    """Return ``run(n)`` doing ``n`` eager PyTorch training steps."""
    torch.manual_seed(0)
    model = TorchLSTM(hidden, layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    x = torch.randn(batch, steps, FEATURES)
    y = torch.randn(batch, 1)

    def run(n: int) -> None:
        for _ in range(n):
            optimizer.zero_grad(set_to_none=True)
            loss = torch.mean((model(x) - y) ** 2)
            loss.backward()
            optimizer.step()

    return run


def compare(args, steps: int, block: int) -> dict:
    """Time climml and torch (at each thread count) in alternating blocks for one length.

    The peer's figure is its best thread count: on a shared machine one thread often beats
    several, and the comparison should be against the faster torch a user could run.
    """
    compile_s, ours = climml_trainer(args.batch, steps, args.hidden, args.layers, args.unroll)
    theirs = torch_trainer(args.batch, steps, args.hidden, args.layers)
    runners = {"climml": ours}
    for threads in args.torch_threads:
        runners[f"torch/{threads}"] = (threads, theirs)
    rates = {name: [] for name in runners}
    for repeat in range(args.repeats + 1):  # the first round warms caches and thread pools
        for name, runner in runners.items():
            if name != "climml":
                torch.set_num_threads(runner[0])
            run = ours if name == "climml" else theirs
            start = time.perf_counter()
            run(block)
            if repeat:
                rates[name].append(args.batch * block / (time.perf_counter() - start))
    best = {name: max(values) for name, values in rates.items()}
    peer = max((n for n in best if n != "climml"), key=best.get)
    return {
        "steps": steps,
        "compile_s": compile_s,
        "best": best,
        "peer": peer,
        "ratio": best["climml"] / best[peer],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--unroll", type=int, default=1, help="climml scan unroll factor")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks per framework")
    parser.add_argument(
        "--torch-threads",
        type=int,
        nargs="+",
        default=sorted({1, torch.get_num_threads()}),
        help="torch intra-op thread counts to try (its best one is the peer)",
    )
    args = parser.parse_args()
    if args.quick:
        args.batch, args.hidden, args.steps, args.repeats = 8, 16, [16], 2

    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"jax {jax.__version__}, torch {torch.__version__}"
    )
    print(
        f"# batch {args.batch}, {args.layers} layers x {args.hidden} hidden, {FEATURES} "
        f"features, Adam, unroll {args.unroll}, best of {args.repeats} blocks"
    )
    names = ["climml"] + [f"torch/{t}" for t in args.torch_threads]
    print(
        f"{'steps':>6} "
        + " ".join(f"{n + ' seq/s':>15}" for n in names)
        + f" {'ratio':>7} {'vs':>8} {'compile s':>10}"
    )
    for steps in args.steps:
        block = 2 if args.quick else max(2, 2048 // steps)
        r = compare(args, steps, block)
        print(
            f"{steps:>6} "
            + " ".join(f"{r['best'][n]:>15.0f}" for n in names)
            + f" {r['ratio']:>6.2f}x {r['peer']:>8} {r['compile_s']:>10.2f}"
        )


if __name__ == "__main__":
    main()
