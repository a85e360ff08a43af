"""Multi-pass permutation importance: climml (vmapped passes) vs the PermutationImportance package,
and single pass vs ``sklearn.inspection.permutation_importance``, same model, same data, one run.

The model is climml's MLP (two hidden layers of 64) trained here on 20 features, some of them
correlated pairs, for a non-linear target. Every contender calls the same jitted predict
function, so the comparison is of the importance machinery, not of model speed: the peers call
it once per candidate from Python on numpy arrays (as their APIs require), climml evaluates all
candidates of a pass in one compiled, vmapped program. The score is the MSE for everyone.

Timings alternate between contenders over ``--rounds`` rounds (the CPU may be shared) and the best
round of each is reported; climml is also reported cold (first call, including XLA compilation),
and with its accelerator form (one vmap over all candidates of a pass) to show why CPU scans.

    python benchmarks/permutation.py            # 20 features x 20,000 samples
    python benchmarks/permutation.py --quick    # small smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from PermutationImportance import sklearn_permutation_importance as pi_importance
from sklearn.inspection import permutation_importance as sklearn_importance

from climml.explain import permutation_importance
from climml.models.mlp import MLPConfig, build_mlp
from climml.types import IOSpec

VMAP_ALL = 10**9  # chunk_size large enough to vmap every candidate of a pass at once


def make_data(n: int, n_features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features with correlated pairs (each odd column a noisy copy of the even one before it)
    and a target depending non-linearly on the first half of them."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n_features)).astype(np.float32)
    x[:, 1::2] = 0.8 * x[:, 0::2][:, : n_features // 2] + 0.6 * x[:, 1::2]
    weights = np.linspace(2.0, 0.2, n_features // 2).astype(np.float32)
    half = x[:, : n_features // 2]
    y = half @ weights + 0.5 * np.sin(2 * half[:, 0]) * half[:, 1] + 0.3 * half[:, 2] ** 2
    y += 0.3 * rng.standard_normal(n).astype(np.float32)
    return x, y.astype(np.float32)


def train_mlp(x: np.ndarray, y: np.ndarray, steps: int):
    """Train climml's MLP with Adam on mini-batches; return a jitted ``predict(x) -> (N,)``."""
    model = build_mlp(MLPConfig(hidden=(64, 64)), IOSpec((x.shape[1],), (1,)), nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)  # rest: dropout RNG state
    tx = optax.adam(3e-3)
    opt_state = tx.init(params)

    def loss_fn(params, xb, yb):
        return jnp.mean((nnx.merge(graphdef, params, rest)(xb)[:, 0] - yb) ** 2)

    @jax.jit
    def step(params, opt_state, xb, yb):
        grads = jax.grad(loss_fn)(params, xb, yb)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    rng = np.random.default_rng(1)
    for _ in range(steps):
        idx = rng.integers(0, x.shape[0], 256)
        params, opt_state = step(params, opt_state, x[idx], y[idx])

    @jax.jit
    def predict(inputs):
        return nnx.merge(graphdef, params, rest)(inputs)[:, 0]

    return predict


def mse(pred, target):
    return jnp.mean((pred - target) ** 2)


class NumpyModel:
    """The jitted predict function behind the ``fit``/``predict`` interface the peers call."""

    def __init__(self, predict):
        self._predict = predict

    def fit(self, inputs, targets):
        return self

    def predict(self, inputs):
        return np.asarray(self._predict(jnp.asarray(inputs, jnp.float32)))


def run_climml(predict, x, y, key, multipass: bool, chunk_size: int | None = None):
    """``chunk_size=None``: the CPU default (a scan over candidates); a large value: one vmap."""
    return permutation_importance(
        predict, x, y, mse, key=key, n_repeats=1, multipass=multipass, chunk_size=chunk_size
    )


def run_pi(predict, x, y):
    np.random.seed(0)  # the package only draws from numpy's global RNG
    return pi_importance(
        NumpyModel(predict),
        (x, y),
        lambda t, p: float(np.mean((p - t) ** 2)),
        "argmax_of_mean",
        nbootstrap=None,
    )


def run_sklearn(predict, x, y):
    def neg_mse(model, inputs, targets):
        return -float(np.mean((model.predict(inputs) - targets) ** 2))

    return sklearn_importance(
        NumpyModel(predict), x, y, scoring=neg_mse, n_repeats=1, random_state=0
    )


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n, f, rounds, steps = args.samples, args.features, args.rounds, 1500
    if args.quick:
        n, f, rounds, steps = 2000, 6, 1, 200

    x, y = make_data(2 * n, f)
    predict = train_mlp(x[:n], y[:n], steps)
    x, y = x[n:], y[n:]  # importance on held-out samples
    r2 = 1 - float(mse(predict(x), y)) / float(np.var(y))
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"jax {jax.__version__} ({jax.default_backend()}); {f} features x {n} samples; "
        f"MLP(64, 64) trained {steps} steps, held-out R^2 = {r2:.3f}"
    )

    cold_multi, ours = timed(lambda: run_climml(predict, x, y, jax.random.key(0), True))
    cold_single, _ = timed(lambda: run_climml(predict, x, y, jax.random.key(0), False))
    run_climml(predict, x, y, jax.random.key(0), True, chunk_size=VMAP_ALL)  # compile
    best = {
        "climml multi": np.inf,
        "PermutationImportance multi": np.inf,
        "climml single": np.inf,
        "sklearn single": np.inf,
        "climml multi, one vmap per pass": np.inf,
    }
    for r in range(rounds):  # alternate so that load from other processes hits all alike
        key = jax.random.key(r + 1)
        t, ours = timed(lambda k=key: run_climml(predict, x, y, k, True))
        best["climml multi"] = min(best["climml multi"], t)
        t, theirs = timed(lambda: run_pi(predict, x, y))
        best["PermutationImportance multi"] = min(best["PermutationImportance multi"], t)
        t, _ = timed(lambda k=key: run_climml(predict, x, y, k, False))
        best["climml single"] = min(best["climml single"], t)
        t, _ = timed(lambda: run_sklearn(predict, x, y))
        best["sklearn single"] = min(best["sklearn single"], t)
        t, _ = timed(lambda k=key: run_climml(predict, x, y, k, True, chunk_size=VMAP_ALL))
        best["climml multi, one vmap per pass"] = min(best["climml multi, one vmap per pass"], t)

    print(f"{'contender':32s} {'best s':>8s}")
    for name, seconds in best.items():
        print(f"{name:32s} {seconds:8.3f}")
    print(f"{'climml multi, cold (compile)':32s} {cold_multi:8.3f}")
    print(f"{'climml single, cold (compile)':32s} {cold_single:8.3f}")
    print(
        f"ratio multi-pass  PermutationImportance / climml: "
        f"{best['PermutationImportance multi'] / best['climml multi']:.1f}x "
        f"(cold climml: {best['PermutationImportance multi'] / cold_multi:.1f}x)"
    )
    print(
        f"ratio single-pass sklearn / climml: {best['sklearn single'] / best['climml single']:.1f}x"
    )

    multi = theirs.retrieve_multipass()
    their_order = sorted(multi, key=lambda name: multi[name][0])
    our_order = [int(str(s).split("_")[1]) for s in ours.selected.values]
    agree = sum(a == b for a, b in zip(our_order, their_order, strict=True))
    print(f"multi-pass order, climml: {our_order}")
    print(f"multi-pass order, package: {[int(v) for v in their_order]}")
    print(f"same feature at the same pass: {agree}/{f}")


if __name__ == "__main__":
    main()
