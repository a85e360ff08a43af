"""U-Net training throughput: climml (JAX/Flax NNX) vs an equivalent PyTorch U-Net, same run.

Both nets: ``depth`` levels of [conv3x3 -> BatchNorm -> ReLU] x 2, 2x2 max pooling, a bottleneck
block, 2x2 stride-2 transposed-conv upsampling, skip concatenation, a 1x1 head to class logits,
pixel cross-entropy, Adam. Same depth, filters, grid, batch; PyTorch limited to the same number
of threads as XLA's CPU client uses (all cores of the machine).

Also timed: the same climml U-Net with ``model.conv_impl: patches`` (im2col convolutions,
``climml.models.conv``), printed as its speed relative to the default ``xla``. Also printed: the
forward + backward speed of one 3x3 conv through ``lax.conv_general_dilated``
compiled with XLA's defaults, and climml's achieved FLOP/s as a fraction of a float32 matmul
peak measured in the same run.

Timing: rounds alternate between the contenders (the CPU may be shared), each round times
``--steps`` train steps; the best round per contender is reported, with its process CPU time
per step (less sensitive to other jobs on a shared machine than wall time).

    python benchmarks/unet.py            # batch 8, 128x128 grid, depth 3, 32 filters
    python benchmarks/unet.py --quick    # small smoke run
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import lax

from climml.models import IOSpec, build
from climml.models.unet import UNetConfig


def best_time(fn, rounds: int) -> float:
    """Best wall time of ``fn()`` (which must block until its work is done) over ``rounds``."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def matmul_peak(n: int, rounds: int) -> float:
    """float32 GFLOP/s of an (n, n) @ (n, n) matmul compiled with XLA's defaults."""
    a = jax.random.normal(jax.random.key(0), (n, n))
    f = jax.jit(jnp.dot)
    f(a, a).block_until_ready()
    return 2 * n**3 / best_time(lambda: f(a, a).block_until_ready(), rounds) / 1e9


def conv_gflops(batch: int, grid: int, rounds: int) -> float:
    """Forward + backward GFLOP/s of a 3x3, 32->64 conv compiled with XLA's defaults."""
    x = jax.random.normal(jax.random.key(1), (batch, grid, grid, 32))
    w = jax.random.normal(jax.random.key(2), (3, 3, 32, 64)) * 0.1

    def loss(x, w):
        y = lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return jnp.sum(y * y)

    flops = 3 * 2 * batch * grid * grid * 9 * 32 * 64  # forward + d/dx + d/dw
    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    jax.block_until_ready(grad(x, w))
    return flops / best_time(lambda: jax.block_until_ready(grad(x, w)), rounds) / 1e9


def unet_flops(batch: int, grid: int, channels: int, depth: int, filters: int, classes: int) -> int:
    """Multiply-add FLOPs x 2 of one training step (forward x 3, the usual fwd+bwd rule)."""
    fwd, size, c_in = 0, grid * grid, channels
    widths = [filters * 2**i for i in range(depth + 1)]
    for i in range(depth + 1):  # encoder blocks and bottleneck
        fwd += 2 * size * 9 * (c_in * widths[i] + widths[i] * widths[i])
        c_in, size = widths[i], size // 4 if i < depth else size
    for i in reversed(range(depth)):  # upsample (1x1 to 4 c) + decoder block on 2c -> c
        size *= 4
        fwd += 2 * (size // 4) * widths[i + 1] * 4 * widths[i]
        fwd += 2 * size * 9 * (2 * widths[i] * widths[i] + widths[i] * widths[i])
    fwd += 2 * size * widths[0] * classes
    return 3 * fwd * batch


def climml_step(
    batch: int,
    grid: int,
    channels: int,
    depth: int,
    filters: int,
    classes: int,
    conv_impl: str = "xla",
):
    """A climml U-Net train step (functional NNX form) and its first arguments; ``conv_impl``
    as ``model.conv_impl`` (``climml.models.conv``)."""
    spec = IOSpec((1, grid, grid, channels), (1, grid, grid), num_classes=classes)
    cfg = UNetConfig(depth=depth, base_filters=filters, conv_impl=conv_impl)
    model = build(cfg, spec, nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(1e-3)

    def loss_fn(params, rest, x, y):
        logits, rest = _apply(graphdef, params, rest, x)
        onehot = jax.nn.one_hot(y, logits.shape[-1], dtype=logits.dtype)  # as climml's loss
        return -jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(logits), axis=-1)), rest

    def step(params, rest, opt_state, x, y):
        (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), rest, opt_state, loss

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, 1, grid, grid, channels)), jnp.float32)
    y = jnp.asarray(rng.integers(0, classes, size=(batch, 1, grid, grid)), jnp.int32)
    return step, (params, rest, tx.init(params), x, y)


def _apply(graphdef, params, rest, x):
    # copy=True: fresh Variables at this trace level, so BatchNorm may update its statistics.
    model = nnx.merge(graphdef, params, rest, copy=True)
    return model(x), nnx.split(model, nnx.Param, ...)[2]


def run_jax(step, args, steps: int):
    """Run ``steps`` updates; returns a callable timing that many (state carried across calls)."""
    state = list(args[:3])
    x, y = args[3:]

    def go():
        for _ in range(steps):
            state[0], state[1], state[2], loss = step(state[0], state[1], state[2], x, y)
        loss.block_until_ready()

    return go


def torch_step(
    batch: int,
    grid: int,
    channels: int,
    depth: int,
    filters: int,
    classes: int,
    channels_last: bool,
):
    """A PyTorch U-Net train-step runner with the same architecture and data sizes."""
    import torch
    from torch import nn

    def block(c_in, c_out):
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
        )

    class TorchUNet(nn.Module):
        def __init__(self):
            super().__init__()
            w = [filters * 2**i for i in range(depth + 1)]
            self.down = nn.ModuleList(
                [block(channels if i == 0 else w[i - 1], w[i]) for i in range(depth)]
            )
            self.mid = block(w[-2], w[-1])
            self.up = nn.ModuleList(
                [nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2) for i in range(depth)]
            )
            self.dec = nn.ModuleList([block(2 * w[i], w[i]) for i in range(depth)])
            self.head = nn.Conv2d(w[0], classes, 1)

        def forward(self, x):
            skips = []
            for blk in self.down:
                x = blk(x)
                skips.append(x)
                x = nn.functional.max_pool2d(x, 2)
            x = self.mid(x)
            for i in reversed(range(depth)):
                x = self.dec[i](torch.cat([self.up[i](x), skips[i]], dim=1))
            return self.head(x)

    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = TorchUNet().to(memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(batch, channels, grid, grid).contiguous(memory_format=fmt)
    y = torch.randint(0, classes, (batch, grid, grid))
    loss_fn = nn.CrossEntropyLoss()

    def make(steps):
        def go():
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(net(x), y)
                loss.backward()
                opt.step()

        return go

    return make


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small smoke run")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--grid", type=int, default=128)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--filters", type=int, default=32)
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--classes", type=int, default=3)
    p.add_argument("--steps", type=int, default=3, help="train steps per timed round")
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    if a.quick:
        a.batch, a.grid, a.filters, a.depth, a.steps, a.rounds = 2, 32, 8, 2, 2, 2

    import torch

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    print(
        f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__}, "
        f"{threads} CPU threads; batch {a.batch}, grid {a.grid}x{a.grid}, depth {a.depth}, "
        f"filters {a.filters}, channels {a.channels}, classes {a.classes}"
    )

    peak = matmul_peak(1024 if a.quick else 2048, a.rounds)
    print(f"float32 matmul peak: {peak:.1f} GFLOP/s")
    print(f"3x3 conv 32->64 fwd+bwd: {conv_gflops(a.batch, a.grid, a.rounds):.1f} GFLOP/s")

    dims = (a.batch, a.grid, a.channels, a.depth, a.filters, a.classes)
    step, args = climml_step(*dims)
    patch_step, patch_args = climml_step(*dims, conv_impl="patches")
    contenders = {
        "climml (jax.jit)": run_jax(jax.jit(step), args, a.steps),
        "climml conv_impl=patches": run_jax(jax.jit(patch_step), patch_args, a.steps),
        "torch": torch_step(*dims, channels_last=False)(a.steps),
        "torch channels_last": torch_step(*dims, channels_last=True)(a.steps),
    }
    for go in contenders.values():  # compile / warm up
        go()
    wall = {name: [] for name in contenders}
    cpu = {name: [] for name in contenders}
    for _ in range(a.rounds):
        for name, go in contenders.items():
            c0, t0 = time.process_time(), time.perf_counter()
            go()
            wall[name].append((time.perf_counter() - t0) / a.steps)
            cpu[name].append((time.process_time() - c0) / a.steps)
    best = {name: min(t) for name, t in wall.items()}
    flops = unet_flops(*dims)
    print(f"{'':32s} {'samples/s':>10s} {'GFLOP/s':>8s} {'CPU s/step':>11s}")
    for name, t in best.items():
        print(f"{name:32s} {a.batch / t:10.2f} {flops / t / 1e9:8.1f} {min(cpu[name]):11.3f}")
    torch_t = min(best["torch"], best["torch channels_last"])
    climml_t = best["climml (jax.jit)"]
    print(
        f"ratio climml (jax.jit) / best torch: {torch_t / climml_t:.2f}x; "
        f"FLOP/s / matmul peak: {flops / climml_t / 1e9 / peak:.0%}; "
        f"conv_impl=patches / xla: {climml_t / best['climml conv_impl=patches']:.2f}x"
    )


if __name__ == "__main__":
    main()
