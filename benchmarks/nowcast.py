"""GAN nowcaster (DGMR-style) on CPU: climml (JAX/Flax NNX) vs the dgmr PyTorch package.

Two measurements in one process, rounds alternating between the contenders (the CPU may be
shared), best and median round reported, ratio = torch time / climml time (> 1: climml faster):

1. one training step: ``disc_steps`` discriminator updates + one generator update whose
   grid-cell regularizer sees ``--samples`` generator samples per example (hinge losses, Adam).
   climml: ``climml.train.adversarial.train_step`` (``make_steps``, ``init_gan_state``). dgmr:
   its ``Generator`` / ``Discriminator`` modules driven by the same algorithm (the generator not
   differentiated in the discriminator step; the generator step scores the samples only, with
   the generator's samples drawn as ``--samples`` separate calls, since dgmr draws one latent per
   call). ``--shipped`` adds the step exactly as ``dgmr.DGMR.training_step`` runs it
   (``torch.utils.checkpoint``, the generator differentiated in the discriminator step, the real
   sequence re-scored with every sample, the trailing forward pass), minus Lightning and the
   ``torch.autograd.set_detect_anomaly(True)`` that ``DGMR.__init__`` switches on globally.
2. ensemble sampling, members x frames per second: ``--members`` latent draws for one window.
   climml: ``make_sampler`` (members in one ``vmap``). dgmr: ``--members`` calls of the generator
   in eval mode under ``torch.inference_mode`` (dgmr draws one latent per call and shares it
   across the batch, so members cannot be batched; the "tiled" row batches them anyway, every
   member then being the same forecast: a speed bound, not an ensemble).

Same sizes for both (printed): 4 input frames (dgmr's context stack assumes 4), ``--leads``
output frames, ``--grid`` square crops (dgmr's discriminators need >= 128: they halve it 7
times), generator width ``--base`` (climml ``base_channels`` c; dgmr ``context_channels =
latent_channels = 32 c``: the same ConvGRU state and latent-path widths 4c ... 32c at H/4 ...
H/32, and the latent stack's c, 2c, 8c, 32c), ``--latent`` noise channels, spatial
discriminator frames ``--disc-frames``; dgmr's discriminator widths are fixed (48 ... 768), so
climml's ``disc_channels`` is 48 and its temporal crop is half the grid (dgmr average-pools the
whole sequence 2x instead: the same number of pixels). The architectures still differ in detail
(dgmr: a non-upsampling GBlock per sampler scale, batch norm, two more 768-channel discriminator
blocks at 2 x 2 and 1 x 1 pixels); parameters and forward GFLOPs (convolutions and matmuls, one
generator call and one discriminator call) are printed for both.

Threads: XLA's CPU client uses every core; torch is timed at each of ``--threads`` (default 1
and 2, this machine's cores) as separate contenders, and the ratio is taken against the fastest.
On a loaded CPU, torch at 2 threads can be 20x slower than at 1 (its OpenMP threads spin-wait
for each other while other processes hold the cores), so the best thread count is the fair
peer. JAX compilation is excluded from the step times and printed separately; every contender
runs one untimed call first.

Install (the peer): dgmr pins tensorflow, pytorch_lightning, wandb and datasets, none of which
its model modules import, so it goes in without its dependencies; the ``[bench]`` extra has
torch, einops and huggingface_hub (< 1: 0.36 adds only hf-xet, 2.x an httpx stack)::

    pip install -e ".[bench]" && pip install --no-deps dgmr

dgmr's package ``__init__`` imports the Lightning module, so this script imports
``dgmr.common``, ``dgmr.generators`` and ``dgmr.discriminators`` without running it
(``load_dgmr``).

    python benchmarks/nowcast.py              # batch 2, 4 -> 6 frames, 128 x 128, base 4
    python benchmarks/nowcast.py --shipped    # + dgmr's training_step as shipped
    python benchmarks/nowcast.py --quick      # smoke run (1 round, 4 -> 2 frames, torch 1 thread)
    python benchmarks/nowcast.py --paper --only sample   # the paper's generator, 256 x 256
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from datetime import UTC, datetime

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.extend.core import ClosedJaxpr, Jaxpr

from climml.models.nowcast_gan import NowcastGAN, NowcastGANConfig
from climml.train.adversarial import init_gan_state, make_sampler, make_steps, train_step
from climml.types import IOSpec

STEPS_IN = 4  # dgmr's ContextConditioningStack hard-codes its channel split for 4 frames
DGMR_DISC_WIDTH = 48  # dgmr's discriminators: 48 ... 768 channels, not configurable


def load_dgmr() -> types.SimpleNamespace:
    """dgmr's model classes without its package ``__init__`` (which imports pytorch_lightning
    and torchvision through the Lightning module): a bare package object stands in for it."""
    spec = importlib.util.find_spec("dgmr")
    if spec is None or spec.submodule_search_locations is None:
        sys.exit("dgmr is not installed: pip install -e '.[bench]' && pip install --no-deps dgmr")
    if "dgmr" not in sys.modules:
        pkg = types.ModuleType("dgmr")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["dgmr"] = pkg
    from dgmr.common import ContextConditioningStack, LatentConditioningStack
    from dgmr.discriminators import Discriminator
    from dgmr.generators import Generator, Sampler

    return types.SimpleNamespace(
        Context=ContextConditioningStack,
        Latent=LatentConditioningStack,
        Sampler=Sampler,
        Generator=Generator,
        Discriminator=Discriminator,
    )


# --------------------------------------------------------------------------- data


def synthetic_rain(batch: int, frames: int, grid: int, seed: int = 0) -> np.ndarray:
    """``(batch, frames, grid, grid)`` float32 rain in mm/h: ~30% wet pixels, gamma amounts."""
    rng = np.random.default_rng(seed)
    shape = (batch, frames, grid, grid)
    return (rng.gamma(0.6, 3.0, shape) * (rng.random(shape) < 0.3)).astype(np.float32)


# --------------------------------------------------------------------------- FLOPs


def jaxpr_flops(jaxpr) -> float:
    """2 x multiply-adds of the convolutions and matmuls in a (closed) jaxpr, scan bodies times
    their length, the largest branch of a cond (what ``FlopCounterMode`` counts for torch)."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "conv_general_dilated":
            out, rhs = eqn.outvars[0].aval.shape, eqn.invars[1].aval.shape
            out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
            total += 2 * math.prod(out) * math.prod(rhs) / out_features
        elif name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[i] for i in contract)
        times = eqn.params.get("length", 1) if name == "scan" else 1
        for value in eqn.params.values():
            if isinstance(value, Jaxpr | ClosedJaxpr):
                total += times * jaxpr_flops(value)
            elif (
                isinstance(value, tuple)
                and value
                and all(isinstance(v, Jaxpr | ClosedJaxpr) for v in value)
            ):
                total += max(jaxpr_flops(v) for v in value)
    return total


def torch_flops(fn: Callable[[], object]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


# --------------------------------------------------------------------------- contenders


class Climml:
    """climml's GAN: jitted D / G steps and sampler on fixed synthetic batches."""

    def __init__(self, a, rain: np.ndarray):
        extra = {"conv_impl": a.conv_impl} if a.conv_impl else {}
        cfg = NowcastGANConfig(
            **extra,
            base_channels=a.base,
            latent_channels=a.latent,
            disc_channels=DGMR_DISC_WIDTH,
            disc_frames=a.disc_frames,
            disc_crop=a.grid // 2,
            reg_samples=a.samples,
            disc_steps=a.disc_steps,
        )
        spec = IOSpec((STEPS_IN, a.grid, a.grid, 1), (a.leads, a.grid, a.grid))
        self.model = NowcastGAN(cfg, spec, nnx.Rngs(0))
        self.conv_impl = getattr(cfg, "conv_impl", "xla")
        self.state = init_gan_state(self.model)
        self.d_step, self.g_step = make_steps(self.model)
        self.sampler = make_sampler(self.model)
        self.disc_steps = a.disc_steps
        history, future = rain[:, :STEPS_IN], rain[:, STEPS_IN:]
        self.batch = {
            "x": jnp.asarray(np.log(history + 0.1)[..., None]),  # the run's log transform
            "history": jnp.asarray(history),
            "y": jnp.asarray(future),
            "y_valid": jnp.ones(future.shape, jnp.float32),
            "weight": jnp.ones(rain.shape[:1], jnp.float32),
        }
        self.keys = jax.random.split(jax.random.key(1), a.members)
        self.key = jax.random.key(0)

    def params(self) -> tuple[int, int]:
        def count(module):
            return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))

        return count(self.model.generator), count(self.model.discriminator)

    def flops(self) -> tuple[float, float]:
        """Forward FLOPs of one generator call on the batch and one discriminator call on the
        real + fake sequences (2 x batch), as a discriminator step makes them."""
        b = self.batch
        g_def, g_state = nnx.split(self.model.generator)
        d_def, d_state = nnx.split(self.model.discriminator)

        def gen(state, x, last):
            return nnx.merge(g_def, state)(x, self.key, last)

        def disc(state, seq):
            d = nnx.merge(d_def, state)
            return d.score_spatial(seq, self.key) + d.score_temporal(seq, self.key)

        seq = jnp.concatenate([b["history"], b["y"]], 1)
        g = jaxpr_flops(jax.make_jaxpr(gen)(g_state, b["x"], b["history"][:, -1]))
        d = jaxpr_flops(jax.make_jaxpr(disc)(d_state, jnp.concatenate([seq, seq], 0)))
        return g, d

    def train(self) -> None:
        self.key, key = jax.random.split(self.key)
        self.state, d_loss, g_loss = train_step(
            self.d_step, self.g_step, self.disc_steps, self.state, self.batch, key
        )
        jax.block_until_ready((d_loss, g_loss))

    def sample(self) -> None:
        s, b = self.state, self.batch
        members = self.sampler(s.g_params, s.g_rest, b["x"][:1], b["history"][:1, -1], self.keys)
        members.block_until_ready()

    def compile_seconds(self, only: str | None) -> dict[str, float]:
        """First call (compilation + one run) of the D step, G step and sampler, or of those
        that ``only`` ("train" / "sample") measures."""
        out, b = {}, self.batch
        calls = (
            ("d_step", lambda: self.d_step(self.state, b, self.key)),
            ("g_step", lambda: self.g_step(self.state, b, self.key)),
            (
                "sampler",
                lambda: self.sampler(
                    self.state.g_params,
                    self.state.g_rest,
                    b["x"][:1],
                    b["history"][:1, -1],
                    self.keys,
                ),
            ),
        )
        for name, fn in calls[:2] if only == "train" else calls[2:] if only == "sample" else calls:
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            out[name] = time.perf_counter() - t0
        return out


class Dgmr:
    """dgmr's generator and discriminators at climml's sizes, driven like ``DGMR``."""

    def __init__(self, a, rain: np.ndarray, dg: types.SimpleNamespace):
        import torch
        from torch.utils.checkpoint import checkpoint

        self.torch, self.checkpoint = torch, checkpoint
        torch.manual_seed(0)
        width = 32 * a.base  # ConvGRU state / latent path width at H/32 (see the module doc)
        context = dg.Context(input_channels=1, output_channels=width, num_context_steps=STEPS_IN)
        latent = dg.Latent(shape=(a.latent, a.grid // 32, a.grid // 32), output_channels=width)
        sampler = dg.Sampler(forecast_steps=a.leads, latent_channels=width, context_channels=width)
        self.gen = dg.Generator(context, latent, sampler)
        self.disc = dg.Discriminator(input_channels=1, num_spatial_frames=a.disc_frames)
        # DGMR.configure_optimizers (paper learning rates and betas, as climml's defaults)
        self.g_opt = torch.optim.Adam(self.gen.parameters(), lr=5e-5, betas=(0.0, 0.999))
        self.d_opt = torch.optim.Adam(self.disc.parameters(), lr=2e-4, betas=(0.0, 0.999))
        seq = torch.from_numpy(rain)[:, :, None]  # (B, T + L, 1, H, W), dgmr's layout
        self.images, self.future = seq[:, :STEPS_IN], seq[:, STEPS_IN:]
        self.samples, self.disc_steps, self.members = a.samples, a.disc_steps, a.members

    def params(self) -> tuple[int, int]:
        return (
            sum(p.numel() for p in self.gen.parameters()),
            sum(p.numel() for p in self.disc.parameters()),
        )

    def flops(self) -> tuple[float, float]:
        t = self.torch
        with t.no_grad():
            g = torch_flops(lambda: self.gen(self.images))
            real = t.cat([self.images, self.future], 1)
            d = torch_flops(lambda: self.disc(t.cat([real, real], 0)))
        return g, d

    @staticmethod
    def _hinge_d(fake, real):  # dgmr.losses.loss_hinge_disc
        return (1.0 - real).relu().mean() + (1.0 + fake).relu().mean()

    def _grid_cell(self, mean):  # the weighted L1 of climml's regularizer, on the sample mean
        w = self.future.clamp(1.0, 24.0)
        return ((mean - self.future).abs() * w).sum() / (self.future[0].numel() * len(mean))

    def _d_update(self, fake):
        t, b = self.torch, len(self.images)
        self.d_opt.zero_grad(set_to_none=True)
        real = t.cat([self.images, self.future], 1)
        scores = self.disc(t.cat([real, t.cat([self.images, fake], 1)], 0))
        spatial, temporal = scores[:, 0], scores[:, 1]
        loss = self._hinge_d(spatial[b:], spatial[:b]) + self._hinge_d(temporal[b:], temporal[:b])
        loss.backward()
        self.d_opt.step()
        return loss

    def train(self) -> None:
        """The climml algorithm with dgmr's modules."""
        t = self.torch
        for _ in range(self.disc_steps):
            with t.no_grad():
                fake = self.gen(self.images)
            self._d_update(fake)
        self.g_opt.zero_grad(set_to_none=True)
        fakes = [self.gen(self.images) for _ in range(self.samples)]
        seqs = t.cat([t.cat([self.images, f], 1) for f in fakes], 0)
        adversarial = -self.disc(seqs).sum(1).mean()  # dgmr.losses.loss_hinge_gen
        loss = adversarial + 20.0 * self._grid_cell(t.stack(fakes).mean(0))
        loss.backward()
        self.g_opt.step()

    def train_shipped(self) -> None:
        """``dgmr.DGMR.training_step`` as shipped (its logging and visualization aside)."""
        t, b = self.torch, len(self.images)
        real = t.cat([self.images, self.future], 1)
        for _ in range(2):  # DGMR hard-codes 2 discriminator steps
            self.d_opt.zero_grad()
            fake = self.checkpoint(self.gen, self.images, use_reentrant=False)
            self._d_update(fake)  # backpropagates into the generator too, as shipped
        fakes = [
            self.checkpoint(self.gen, self.images, use_reentrant=False) for _ in range(self.samples)
        ]
        scores = [self.disc(t.cat([real, t.cat([self.images, f], 1)], 0))[b:] for f in fakes]
        loss = -t.cat(scores, 0).mean() + 20.0 * self._grid_cell(t.stack(fakes).mean(0))
        self.g_opt.zero_grad()
        loss.backward()
        self.g_opt.step()
        self.gen(self.images)  # "generate images" for logging, every step

    def sample(self) -> None:
        self.gen.eval()
        with self.torch.inference_mode():
            for _ in range(self.members):
                self.gen(self.images[:1])
        self.gen.train()

    def sample_tiled(self) -> None:
        self.gen.eval()
        with self.torch.inference_mode():
            self.gen(self.images[:1].expand(self.members, -1, -1, -1, -1).contiguous())
        self.gen.train()


# --------------------------------------------------------------------------- timing


def alternate(contenders: dict[str, Callable[[], None]], rounds: int, reps: int) -> dict:
    """Wall seconds per call of each contender, ``reps`` calls per round, rounds alternating."""
    times = {name: [] for name in contenders}
    for r in range(rounds):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            times[name].append((time.perf_counter() - t0) / reps)
        load = os.getloadavg()[0]
        row = ", ".join(f"{n} {t[-1]:.3f} s" for n, t in times.items())
        print(f"  round {r + 1}/{rounds} (load {load:.1f}): {row}", flush=True)
    return times


def report(times: dict, unit: Callable[[float], str], peers: list[str]) -> None:
    """Best and median round per contender, and torch / climml for each; then against the best
    of ``peers`` (the valid dgmr contenders at their best thread count)."""
    print(
        f"  {'contender':40s} {'best s':>8s} {'median s':>9s} {'at best':>13s} "
        f"{'torch/climml best':>17s} {'median':>7s}"
    )
    best_ref, med_ref = min(times["climml"]), statistics.median(times["climml"])
    for name, t in times.items():
        best, med = min(t), statistics.median(t)
        ratio = "" if name == "climml" else f"{best / best_ref:16.2f}x {med / med_ref:6.2f}x"
        print(f"  {name:40s} {best:8.3f} {med:9.3f} {unit(best):>13s} {ratio}")
    fastest = min(peers, key=lambda n: min(times[n]))
    best = min(times[fastest]) / best_ref
    med = statistics.median(times[fastest]) / med_ref
    print(f"  => ratio vs the fastest dgmr ({fastest}): {best:.2f}x best, {med:.2f}x median")


def with_threads(torch, n: int, fn: Callable[[], None]) -> Callable[[], None]:
    def run():
        torch.set_num_threads(n)
        fn()

    return run


def machine() -> str:
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "?"
    return (
        f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, commit {commit}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round, 4 -> 2 frames")
    p.add_argument(
        "--paper",
        action="store_true",
        help="the paper's generator: 4 -> 18 frames, 256 x 256, base 24, "
        "8 spatial-D frames, 6 samples, batch 1",
    )
    p.add_argument("--only", choices=("train", "sample"), help="one of the two measurements")
    p.add_argument(
        "--shipped", action="store_true", help="also time dgmr's DGMR.training_step as shipped"
    )
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--leads", type=int, default=6)
    p.add_argument("--grid", type=int, default=128, help="crop side, >= 128 (dgmr), x 32")
    p.add_argument("--base", type=int, default=4, help="climml base_channels c (dgmr: 32 c)")
    p.add_argument("--latent", type=int, default=4, help="latent noise channels (<= c)")
    p.add_argument("--disc-frames", type=int, default=4, help="frames the spatial D scores")
    p.add_argument("--disc-steps", type=int, default=2, help="D updates per G update")
    p.add_argument("--samples", type=int, default=2, help="G samples per example (grid cell)")
    p.add_argument("--members", type=int, default=8, help="ensemble members for sampling")
    p.add_argument(
        "--threads",
        help="torch thread counts to time, comma-separated, each a contender (default 1,2; "
        "--quick: 1). On a loaded CPU 2 threads can be 20x slower than 1: OpenMP spin-waits",
    )
    p.add_argument(
        "--conv-impl", help="climml's model.conv_impl ('xla' or 'patches'; default: the model's)"
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sample-reps", type=int, default=2, help="sampling calls per round")
    a = p.parse_args()
    if a.paper:
        paper = dict(leads=18, grid=256, base=24, latent=8, disc_frames=8, samples=6, batch=1)
        for name, value in paper.items():
            setattr(a, name, value)
    if a.quick:
        a.batch, a.leads, a.members, a.rounds, a.sample_reps, a.disc_steps = 1, 2, 2, 1, 1, 1
    if a.grid < 128 or a.grid % 32 or a.latent > a.base or a.base == 2:
        # dgmr: the latent stack widens the noise to c channels by a 1x1 conv to c - latent; its
        # first context block, 4 -> 2c channels, has no pooled shortcut when 2c = 4
        sys.exit("need --grid >= 128 and a multiple of 32, --latent <= --base, --base != 2")
    if a.batch * a.samples < 2:
        sys.exit("need batch x samples >= 2 (dgmr's discriminators batch-normalize)")

    import torch

    threads = [int(n) for n in (a.threads or ("1" if a.quick else "1,2")).split(",")]
    torch.set_num_threads(max(threads))
    dg = load_dgmr()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {machine()}")
    print(
        f"python {platform.python_version()}, jax {jax.__version__} ({jax.default_backend()}, "
        f"{len(jax.devices())} device), torch {torch.__version__} "
        f"(threads {threads}, get_num_threads {torch.get_num_threads()} at most; XLA: "
        f"{os.cpu_count()} cores); load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print(f"command: python benchmarks/nowcast.py {' '.join(sys.argv[1:])}")
    print(
        f"sizes: batch {a.batch}, {STEPS_IN} -> {a.leads} frames, {a.grid} x {a.grid}, "
        f"climml base_channels {a.base} (dgmr context = latent channels {32 * a.base}), "
        f"latent noise {a.latent}, D widths 48.., spatial D frames {a.disc_frames}, "
        f"temporal D on {a.grid // 2}^2 crop (climml) / 2x pooled frames (dgmr), "
        f"{a.disc_steps} D steps per G step, {a.samples} G samples per example, "
        f"{a.members} members"
    )

    rain = synthetic_rain(a.batch, STEPS_IN + a.leads, a.grid)
    ours, theirs = Climml(a, rain), Dgmr(a, rain, dg)
    (gp, dp), (tgp, tdp) = ours.params(), theirs.params()
    (gf, df), (tgf, tdf) = ours.flops(), theirs.flops()
    print(f"climml convolutions: conv_impl {ours.conv_impl!r}")
    print(f"parameters    G: climml {gp:,} / dgmr {tgp:,};  D: climml {dp:,} / dgmr {tdp:,}")
    print(
        f"forward GFLOP G (batch {a.batch}): climml {gf / 1e9:.2f} / dgmr {tgf / 1e9:.2f};  "
        f"D (2 x batch sequences): climml {df / 1e9:.2f} / dgmr {tdf / 1e9:.2f}"
    )

    # forward + backward ~ 3 forwards: D steps see 2B sequences, the G step S x B samples
    def work(g, d):
        g_step = 3 * a.samples * g + 3 * d * a.samples / 2
        return a.disc_steps * (g + 3 * d) + g_step

    print(
        f"estimated work dgmr / climml: training step {work(tgf, tdf) / work(gf, df):.2f}x, "
        f"sampling {tgf / gf:.2f}x (from the forward FLOPs; fwd + bwd = 3 fwd)"
    )
    compiled = ours.compile_seconds(a.only)
    print(
        "climml first calls (XLA compile + one run, excluded below): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in compiled.items())
    )

    if a.only in (None, "train"):
        train = {"climml": ours.train}
        for n in threads:
            train[f"dgmr {n} thr (same algorithm)"] = with_threads(torch, n, theirs.train)
        if a.shipped:
            for n in threads:
                train[f"dgmr {n} thr (DGMR.training_step)"] = with_threads(
                    torch, n, theirs.train_shipped
                )
        for fn in train.values():  # warm-up (climml: the rest of its tracing)
            fn()
        print(f"\n[1] training step ({a.disc_steps} D + 1 G update), wall s per step:")
        times = alternate(train, a.rounds, 1)
        report(times, lambda s: f"{a.batch / s:.2f} ex/s", [n for n in times if "same" in n])

    if a.only in (None, "sample"):
        sample = {"climml": ours.sample}
        for n in threads:
            sample[f"dgmr {n} thr (members in a loop)"] = with_threads(torch, n, theirs.sample)
        for n in threads:
            sample[f"dgmr {n} thr (tiled: 1 latent, bound)"] = with_threads(
                torch, n, theirs.sample_tiled
            )
        for fn in sample.values():
            fn()
        frames = a.members * a.leads
        print(
            f"\n[2] ensemble sampling, {a.members} members x {a.leads} frames of one window, "
            f"wall s per ensemble:"
        )
        times = alternate(sample, a.rounds, a.sample_reps)
        report(times, lambda s: f"{frames / s:.1f} fr/s", [n for n in times if "loop" in n])
    print(f"\nload average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
