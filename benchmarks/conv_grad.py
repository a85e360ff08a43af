"""Convolution formulations, forward + backward, on CPU: XLA's conv vs im2col (patch matmul).

For each 3x3 "SAME" convolution shape of the U-Net and the GAN (NHWC, batch 8) it times one
jitted ``grad`` of ``sum(conv(x, w) * probe)`` w.r.t. the input and the kernel (forward, input
gradient, weight gradient) in these formulations:

* ``xla``: ``lax.conv_general_dilated``, channels last (what ``nnx.Conv`` and climml's
  ``Conv(conv_impl="xla")`` run);
* ``xla NCHW``: the same, channels first;
* ``patches``: climml's ``patch_conv`` (``conv_impl="patches"``): the window's shifted slices
  concatenated, one matmul; autodiff gives the weight gradient as one matmul
  ``patches^T @ dout`` and the input gradient by col2im;
* ``patches vjp``: the same forward with a ``jax.custom_vjp`` that keeps only the input (patches
  rebuilt in the backward), weight gradient ``patches^T @ dout``, input gradient by XLA's
  transposed convolution;
* ``lax patches``: ``lax.conv_general_dilated_patches`` + one matmul;
* ``torch``: ``torch.nn.functional.conv2d`` forward + ``autograd.grad`` (input, weight),
  channels_last, ``torch.set_num_threads(2)`` (the peer; oneDNN).

Then the ensemble case (issue 14): 8 members with different kernels, on one shared batch or on
a batch each, as ``jax.vmap`` over the members (XLA turns the convolution into a grouped one)
or unrolled in one jitted program (``climml.train.ensemble`` on CPU), for ``xla`` and
``patches`` (vmapped: one batched matmul); torch runs the 8 members one after another.

Last, the GAN nowcaster's whole G+D training step (CPU size, batch 8) built with each
``model.conv_impl``: its convolutions are small (32 x 32 crops down to 1 x 1, 2-D and 3-D,
inside ``lax.scan``), where the per-convolution cost dominates.

Timing: every contender is compiled and checked against ``xla`` first; then rounds alternate
the contenders (the CPU may be shared), each timing a few calls; the best round is reported
in ms per call, with the ratio ``xla time / contender time`` (> 1: faster than XLA's conv).
The load average is printed before and after.

    python benchmarks/conv_grad.py            # all shapes, 3 rounds (a few minutes idle)
    python benchmarks/conv_grad.py --quick    # small smoke run
    python benchmarks/conv_grad.py --parts gan  # only the GAN training step
"""

from __future__ import annotations

import argparse
import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from climml.models.conv import patch_conv

NHWC = ("NHWC", "HWIO", "NHWC")
# (grid, c_in, c_out): the U-Net's levels (benchmarks/unet.py: filters 32, depth 3, and the
# default 16 filters), then the CPU-size GAN's (configs/nowcast_gan.yaml: 32 x 32 crops, base 4:
# a context block at 16 x 16, ConvGRU gates at 8 x 8 and 4 x 4)
SHAPES = [
    (128, 8, 8),
    (128, 32, 32),
    (64, 32, 64),
    (64, 64, 64),
    (32, 64, 64),
    (32, 16, 16),
    (16, 4, 8),
    (8, 32, 32),
    (4, 64, 64),
]
# (name, batch, (H, W), c_in, c_out, window): per-member shapes of the ensemble case; the
# quickstart CNN's first conv (4x8 window on the 24x48 ENSO grid, 7 channels, batch 32) and
# two U-Net levels
MEMBER_SHAPES = [
    ("quickstart conv1", 32, (24, 48), 7, 16, (4, 8)),
    ("U-Net 32x32", 8, (32, 32), 16, 16, (3, 3)),
    ("U-Net 64x64", 8, (64, 64), 8, 8, (3, 3)),
]
MEMBERS = 8


def xla(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC)


def xla_nchw(x, w):  # x (N, C, H, W), w (O, I, H, W)
    return lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NCHW", "OIHW", "NCHW")
    )


def patches(x, w):
    return patch_conv(x, w, (1, 1), "SAME", dimension_numbers=None)


def _im2col(x, window):
    """(N, H, W, C) already padded -> (N, H', W', kh * kw * C), the kernel's (kh, kw, C) order."""
    n, h, w, c = x.shape
    out = (h - window[0] + 1, w - window[1] + 1)
    cols = [
        lax.slice(x, (0, i, j, 0), (n, i + out[0], j + out[1], c))
        for i, j in itertools.product(range(window[0]), range(window[1]))
    ]
    return jnp.concatenate(cols, axis=-1)


@jax.custom_vjp
def _patches_vjp(xp, w):
    return jnp.tensordot(_im2col(xp, w.shape[:2]), w.reshape(-1, w.shape[-1]), 1)


def _patches_vjp_fwd(xp, w):
    return _patches_vjp(xp, w), (xp, w)


def _patches_vjp_bwd(res, g):
    xp, w = res
    cols = _im2col(xp, w.shape[:2])  # rebuilt here: only the input is kept for the backward
    dw = jnp.tensordot(cols, g, axes=((0, 1, 2), (0, 1, 2))).reshape(w.shape)
    _, transpose = jax.vjp(
        lambda xp: lax.conv_general_dilated(xp, w, (1, 1), "VALID", dimension_numbers=NHWC), xp
    )
    return transpose(g)[0], dw


_patches_vjp.defvjp(_patches_vjp_fwd, _patches_vjp_bwd)


def patches_vjp(x, w):
    kh, kw = w.shape[:2]
    pads = [(0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)]
    return _patches_vjp(jnp.pad(x, pads), w)


def lax_patches(x, w):
    cols = lax.conv_general_dilated_patches(x, w.shape[:2], (1, 1), "SAME", dimension_numbers=NHWC)
    kernel = jnp.transpose(w, (2, 0, 1, 3)).reshape(-1, w.shape[-1])  # features (C, kh, kw)
    return jnp.tensordot(cols, kernel, 1)


def grad_fn(conv):
    """Forward + backward: gradients of sum(conv(x, w) * probe) w.r.t. x and w."""
    return jax.grad(lambda x, w, probe: jnp.vdot(conv(x, w), probe), argnums=(0, 1))


def members_fn(conv, shared: bool, vmapped: bool):
    """The 8 members' forward + backward in one jitted program, vmapped or unrolled."""
    grad = grad_fn(conv)
    if vmapped:
        return jax.jit(jax.vmap(grad, in_axes=(None if shared else 0, 0, 0)))

    def unrolled(x, w, probe):
        outs = [grad(x if shared else x[m], w[m], probe[m]) for m in range(MEMBERS)]
        return jax.tree.map(lambda *a: jnp.stack(a), *outs)

    return jax.jit(unrolled)


def bound(fn, *args):
    """``fn(*args)`` as a no-argument call that waits for its result."""
    return lambda: jax.block_until_ready(fn(*args))


def calls_per_timing(fn, target_s: float) -> int:
    """Calls of ``fn`` that take about ``target_s`` (from one timed call after warm-up)."""
    fn()
    t0 = time.perf_counter()
    fn()
    return max(1, int(target_s / max(time.perf_counter() - t0, 1e-6)))


def race(contenders: dict, rounds: int, target_s: float) -> dict[str, float]:
    """Best seconds per call of each ``contenders[name]()``, rounds alternating them."""
    reps = {name: calls_per_timing(fn, target_s) for name, fn in contenders.items()}
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(rounds):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            for _ in range(reps[name]):
                fn()
            best[name] = min(best[name], (time.perf_counter() - t0) / reps[name])
    return best


def check(got, want, name: str) -> None:
    """Gradients of ``name`` equal XLA's to float32 accuracy (else the timing means nothing)."""
    for g, r in zip(got, want, strict=True):
        err = float(jnp.max(jnp.abs(g - r)) / jnp.max(jnp.abs(r)))
        if err > 1e-4:
            raise AssertionError(f"{name}: gradients differ from XLA's by {err:.1e} (relative)")


def torch_grad(torch, x, w, probe):
    """torch conv2d forward + input and weight gradients, channels_last, from NHWC arrays."""
    cl = torch.channels_last
    tx = torch.tensor(np.asarray(x).transpose(0, 3, 1, 2)).contiguous(memory_format=cl)
    tw = torch.tensor(np.asarray(w).transpose(3, 2, 0, 1)).contiguous(memory_format=cl)
    tp = torch.tensor(np.asarray(probe).transpose(0, 3, 1, 2)).contiguous(memory_format=cl)
    tx.requires_grad_(True)
    tw.requires_grad_(True)
    pad = (w.shape[0] // 2, w.shape[1] // 2)
    same = w.shape[0] % 2 == 1 and w.shape[1] % 2 == 1

    def go():
        if same:
            y = torch.nn.functional.conv2d(tx, tw, padding=pad)
        else:  # even window: "SAME" pads (k - 1) // 2 before, k // 2 after, as XLA does
            lo = [(k - 1) // 2 for k in w.shape[:2]]
            hi = [k // 2 for k in w.shape[:2]]
            xp = torch.nn.functional.pad(tx, (lo[1], hi[1], lo[0], hi[0]))
            y = torch.nn.functional.conv2d(xp, tw)
        return torch.autograd.grad(y, (tx, tw), tp)

    return go


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def single_convs(shapes, batch, rounds, target_s, torch) -> None:
    names = ["xla", "xla NCHW", "patches", "patches vjp", "lax patches", "torch"]
    print(f"\nforward + backward of one 3x3 SAME conv, batch {batch}: ms per call (xla / it)")
    print(f"{'grid':>4s} {'c_in':>4s} {'c_out':>5s} " + " ".join(f"{n:>18s}" for n in names))
    rng = np.random.default_rng(0)
    for grid, c_in, c_out in shapes:
        x = jnp.asarray(rng.normal(size=(batch, grid, grid, c_in)), jnp.float32)
        w = jnp.asarray(rng.normal(size=(3, 3, c_in, c_out)) / np.sqrt(9 * c_in), jnp.float32)
        probe = jnp.asarray(rng.normal(size=(batch, grid, grid, c_out)), jnp.float32)
        nchw = (x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), probe.transpose(0, 3, 1, 2))
        fns = {
            "xla": (jax.jit(grad_fn(xla)), (x, w, probe)),
            "xla NCHW": (jax.jit(grad_fn(xla_nchw)), nchw),
            "patches": (jax.jit(grad_fn(patches)), (x, w, probe)),
            "patches vjp": (jax.jit(grad_fn(patches_vjp)), (x, w, probe)),
            "lax patches": (jax.jit(grad_fn(lax_patches)), (x, w, probe)),
        }
        want = fns["xla"][0](x, w, probe)
        for name, (fn, args) in fns.items():
            got = fn(*args)
            if name == "xla NCHW":
                got = (got[0].transpose(0, 2, 3, 1), got[1].transpose(2, 3, 1, 0))
            check(got, want, name)
        contenders = {n: bound(f, *a) for n, (f, a) in fns.items()}
        contenders["torch"] = torch_grad(torch, x, w, probe)
        best = race(contenders, rounds, target_s)
        cells = [f"{best[n] * 1e3:9.2f} ({best['xla'] / best[n]:5.2f}x)" for n in names]
        print(f"{grid:4d} {c_in:4d} {c_out:5d} " + " ".join(f"{c:>18s}" for c in cells), flush=True)


def member_convs(shapes, rounds, target_s, torch) -> None:
    names = [
        "xla unrolled",
        "xla vmap",
        "patches unrolled",
        "patches vmap",
        "torch 8 in turn",
    ]
    print(
        f"\n{MEMBERS} members, different kernels, forward + backward: ms per call "
        "(xla unrolled / it)"
    )
    print(f"{'shape':32s} {'batch':>6s} " + " ".join(f"{n:>18s}" for n in names))
    rng = np.random.default_rng(1)
    for label, batch, (h, w_), c_in, c_out, window in shapes:
        x = jnp.asarray(rng.normal(size=(MEMBERS, batch, h, w_, c_in)), jnp.float32)
        w = rng.normal(size=(MEMBERS, *window, c_in, c_out)) / np.sqrt(np.prod(window) * c_in)
        w = jnp.asarray(w, jnp.float32)
        probe = jnp.asarray(rng.normal(size=(MEMBERS, batch, h, w_, c_out)), jnp.float32)
        for shared in (True, False):
            xs = x[0] if shared else x
            fns = {
                f"{impl} {how}": members_fn(conv, shared, how == "vmap")
                for impl, conv in (("xla", xla), ("patches", patches))
                for how in ("unrolled", "vmap")
            }
            want = fns["xla unrolled"](xs, w, probe)
            for name, fn in fns.items():
                check(fn(xs, w, probe), want, name)
            contenders = {n: bound(f, xs, w, probe) for n, f in fns.items()}
            members = [
                torch_grad(torch, xs if shared else x[m], w[m], probe[m]) for m in range(MEMBERS)
            ]
            contenders["torch 8 in turn"] = lambda members=members: [go() for go in members]
            best = race(contenders, rounds, target_s)
            ref = best["xla unrolled"]
            cells = [f"{best[n] * 1e3:9.1f} ({ref / best[n]:5.2f}x)" for n in names]
            where = f"{label} {c_in}->{c_out} {'x'.join(map(str, window))}"
            kind = "shared" if shared else "own"
            print(f"{where:32s} {kind:>6s} " + " ".join(f"{c:>18s}" for c in cells), flush=True)


def gan_steps(batch: int, rounds: int, base: int, disc: int) -> None:
    """One G+D training step (2 discriminator updates, 1 generator update) of the GAN nowcaster
    at the CPU size (32 x 32 crops, 4 -> 6 frames) with each ``model.conv_impl``."""
    from flax import nnx

    from climml.models.nowcast_gan import NowcastGAN, NowcastGANConfig
    from climml.train import adversarial
    from climml.types import IOSpec

    steps, leads, side = 4, 6, 32
    rain = np.abs(np.random.default_rng(2).normal(size=(batch, steps + leads, side, side)))
    rain = jnp.asarray(rain, jnp.float32)
    data = {
        "x": rain[:, :steps, ..., None],
        "history": rain[:, :steps],
        "y": rain[:, steps:],
        "y_valid": jnp.ones((batch, leads, side, side), bool),
        "weight": jnp.ones((batch,), jnp.float32),
    }
    spec = IOSpec((steps, side, side, 1), (leads, side, side))
    runs, losses = {}, {}
    for impl in ("xla", "patches"):
        cfg = NowcastGANConfig(base_channels=base, disc_channels=disc, conv_impl=impl)
        model = NowcastGAN(cfg, spec, nnx.Rngs(0))
        d_step, g_step = adversarial.make_steps(model)
        state = [adversarial.init_gan_state(model)]
        t0 = time.perf_counter()
        _, d_loss, g_loss = adversarial.train_step(
            d_step, g_step, cfg.disc_steps, state[0], data, jax.random.key(0)
        )
        losses[impl] = (float(d_loss), float(g_loss))
        print(f"GAN {impl}: compile + first step {time.perf_counter() - t0:.1f} s", flush=True)

        def go(d_step=d_step, g_step=g_step, state=state, disc_steps=cfg.disc_steps):
            state[0], _, g_loss = adversarial.train_step(
                d_step, g_step, disc_steps, state[0], data, jax.random.key(1)
            )
            jax.block_until_ready(g_loss)

        runs[impl] = go
    if not np.allclose(losses["xla"], losses["patches"], rtol=1e-4):
        raise AssertionError(f"GAN losses differ between conv_impl: {losses}")
    best = race(runs, rounds, 0.0)
    print(
        f"GAN G+D train step, base_channels {base}, disc_channels {disc}, batch {batch}: "
        f"xla {best['xla']:.3f} s, patches {best['patches']:.3f} s: "
        f"patches {best['xla'] / best['patches']:.2f}x faster",
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small smoke run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=0.3, help="about this long per timing")
    p.add_argument(
        "--parts",
        default="convs,members,gan",
        help="comma-separated: convs (one conv), members (8 members), gan (GAN train step)",
    )
    a = p.parse_args()
    parts = set(a.parts.split(","))
    shapes, member_shapes = SHAPES, MEMBER_SHAPES
    if a.quick:
        shapes, member_shapes = [(16, 4, 8)], [("small", 4, (8, 16), 3, 4, (3, 3))]
        a.rounds, a.seconds = 1, 0.02

    import torch

    torch.set_num_threads(2)
    print(
        f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__} "
        f"(2 threads); load average {load()}"
    )
    if "convs" in parts:
        single_convs(shapes, a.batch, a.rounds, a.seconds, torch)
    if "members" in parts:
        member_convs(member_shapes, a.rounds, a.seconds, torch)
    if "gan" in parts:
        print()
        for base, disc in ((1, 2),) if a.quick else ((4, 8), (2, 4)):  # defaults, the YAML's
            gan_steps(a.batch, a.rounds, base, disc)
    print(f"\nload average {load()}")


if __name__ == "__main__":
    main()
