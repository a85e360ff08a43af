"""Benchmark climml.metrics against the libraries a user would reach for instead.

Run ``python benchmarks/metrics.py`` (full sizes of issue 3) or ``--quick`` (a smoke run).
Same data, same process; every row prints the best of ``--repeats`` wall-clock runs, the
ratio ``peer time / climml time`` and the largest difference of the results. climml times
exclude jit compilation (printed separately); numba peers are warmed up the same way.

1. CRPS of a 50-member ensemble at 10^6 points: scoringrules (numba backend: energy "nrg",
   sort-based "qd", "fair") and properscoring (numba gufunc).
2. AUC per grid point, 10^4 points x 2000 samples: a loop over scikit-learn's
   ``roc_auc_score`` and xskillscore's ``roc`` (exact "continuous" mode, and 100 bins).
3. CSI at 10 thresholds on a (time, lat, lon) cube, per grid point: xskillscore's
   ``Contingency(...).threat_score()`` (one call per threshold, as a user would write it).
4. Correlation and RMSE of a float32 (time, lat, lon) cube of kelvin temperatures, over the
   whole cube (latitude-weighted) and per grid point: xskillscore's ``pearson_r`` and
   ``rmse``. Besides the time, each row prints the relative error against float64 NumPy.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import properscoring
import scoringrules
import xarray as xr
import xskillscore
from sklearn.metrics import roc_auc_score

import climml.metrics as cm


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Best wall-clock seconds of ``repeats`` calls (results blocked on), and the result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best, result


def compile_time(fn: Callable[[], object]) -> float:
    """Seconds of the first call (jit compilation plus one run)."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def report(name: str, seconds: float, reference: float, diff: float | None = None) -> None:
    """One table row: time, speed-up of climml over this row, largest difference."""
    ratio = seconds / reference
    extra = "" if diff is None else f"  max|diff| {diff:.1e}"
    print(f"  {name:<46s} {seconds:9.3f} s   climml x{ratio:7.1f}{extra}")


def bench_crps(points: int, members: int, repeats: int) -> None:
    print(f"\nCRPS, {members}-member ensemble at {points:,} points (float32)")
    rng = np.random.default_rng(0)
    obs = rng.normal(size=points).astype(np.float32)
    fcst = (obs[:, None] + rng.normal(0.3, 1.0, size=(points, members))).astype(np.float32)
    f, o = jnp.asarray(fcst), jnp.asarray(obs)
    standard = jax.jit(lambda f, o: cm.crps_ensemble(f, o))
    fair = jax.jit(lambda f, o: cm.crps_ensemble(f, o, fair=True))
    print(f"  (climml compile + first run: {compile_time(lambda: standard(f, o)):.2f} s)")
    compile_time(lambda: fair(f, o))
    t_std, ours = best_time(lambda: standard(f, o), repeats)
    t_fair, ours_fair = best_time(lambda: fair(f, o), repeats)
    ours, ours_fair = np.asarray(ours), np.asarray(ours_fair)
    report("climml crps_ensemble", t_std, t_std)
    small_o, small_f = obs[:100], fcst[:100]  # numba warm-up (compilation) outside the timing
    peers = {
        "scoringrules numba 'qd' (sort-based)": lambda o, f: scoringrules.crps_ensemble(
            o, f, estimator="qd", backend="numba"
        ),
        "scoringrules numba 'nrg'": lambda o, f: scoringrules.crps_ensemble(
            o, f, estimator="nrg", backend="numba"
        ),
        "properscoring crps_ensemble": properscoring.crps_ensemble,
    }
    fastest = float("inf")
    for name, peer in peers.items():
        peer(small_o, small_f)
        seconds, theirs = best_time(lambda peer=peer: peer(obs, fcst), repeats)
        fastest = min(fastest, seconds)
        report(name, seconds, t_std, float(np.max(np.abs(ours - theirs))))
    print(f"  -> climml vs fastest peer: x{fastest / t_std:.1f} (target >= 3)")
    report("climml crps_ensemble fair=True", t_fair, t_fair)
    scoringrules.crps_ensemble(small_o, small_f, estimator="fair", backend="numba")
    seconds, theirs = best_time(
        lambda: scoringrules.crps_ensemble(obs, fcst, estimator="fair", backend="numba"), repeats
    )
    report("scoringrules numba 'fair'", seconds, t_fair, float(np.max(np.abs(ours_fair - theirs))))


def bench_auc(points: int, samples: int, repeats: int, xs_points: int) -> None:
    print(f"\nAUC per grid point, {points:,} points x {samples:,} samples")
    rng = np.random.default_rng(1)
    labels = rng.random((points, samples)) < 0.3
    logits = (rng.normal(size=(points, samples)) + labels).astype(np.float32)
    probs = (1 / (1 + np.exp(-logits))).astype(np.float32)  # a classifier's output
    y, p, z = jnp.asarray(labels), jnp.asarray(probs), jnp.asarray(logits)
    exact = jax.jit(lambda s, y: cm.roc_auc(s, y, axis=1))
    binned = jax.jit(lambda s, y: cm.roc_auc(s, y, axis=1, bins=100))
    print(f"  (climml compile + first run: {compile_time(lambda: exact(p, y)):.2f} s)")
    compile_time(lambda: exact(z, y))
    compile_time(lambda: binned(p, y))
    t_exact, ours = best_time(lambda: exact(p, y), repeats)
    t_logit, ours_logit = best_time(lambda: exact(z, y), repeats)
    t_binned, ours_binned = best_time(lambda: binned(p, y), repeats)
    ours, ours_logit, ours_binned = map(np.asarray, (ours, ours_logit, ours_binned))

    start = time.perf_counter()
    reference = np.array([roc_auc_score(labels[i], probs[i]) for i in range(points)])
    t_loop = time.perf_counter() - start
    report("climml exact, probabilities in [0, 1]", t_exact, t_exact)
    report("climml exact, signed logits (sign split)", t_logit, t_exact)
    report("climml binned (100 bins)", t_binned, t_exact)
    report("sklearn roc_auc_score loop", t_loop, t_exact, float(np.max(np.abs(ours - reference))))
    # float32 sigmoids tie some distinct logits, so check the logit path on its own inputs.
    check = min(points, 500)
    logit_ref = [roc_auc_score(labels[i], logits[i]) for i in range(check)]
    logit_diff = float(np.max(np.abs(ours_logit[:check] - logit_ref)))
    binned_err = np.abs(ours_binned - reference)
    print(
        f"  -> exact vs loop: x{t_loop / t_exact:.1f} (probabilities), x{t_loop / t_logit:.1f}"
        f" (logits, max|diff| {logit_diff:.1e}); target >= 20"
    )
    print(
        f"  -> binned vs loop: x{t_loop / t_binned:.1f} (target >= 100); binned error vs exact:"
        f" max {binned_err.max():.1e}, mean {binned_err.mean():.1e}"
    )

    obs_da = xr.DataArray(labels, dims=("point", "sample"))
    fc_da = xr.DataArray(probs, dims=("point", "sample"))
    edges = np.linspace(0, 1, 101)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # xhistogram's bool -> uint8 notice
        seconds, theirs = best_time(
            lambda: xskillscore.roc(obs_da, fc_da, bin_edges=edges, dim="sample"), 1
        )
        report(
            "xskillscore roc, 100 bins (vs climml binned)",
            seconds,
            t_binned,
            float(np.max(np.abs(ours_binned - theirs.values))),
        )
        # The exact ("continuous") mode uses every distinct value of the whole array as a bin
        # edge: its cost grows with points x samples per point, so only a few points run.
        sub_o, sub_f = obs_da[:xs_points], fc_da[:xs_points]
        start = time.perf_counter()
        theirs = xskillscore.roc(sub_o, sub_f, bin_edges="continuous", dim="sample")
        per_point = (time.perf_counter() - start) / xs_points
    diff = float(np.max(np.abs(ours[:xs_points] - theirs.values)))
    print(
        f"  {'xskillscore roc continuous':<46s} {per_point:9.3f} s per point on {xs_points}"
        f" points (>= {per_point * points:,.0f} s for all;"
        f" climml x{per_point * points / t_exact:,.0f}"
        f" or more)  max|diff| {diff:.1e}"
    )


def bench_contingency(shape: tuple[int, int, int], repeats: int) -> None:
    thresholds = np.array([0.1, 0.2, 0.5, 1, 2, 4, 6, 8, 10, 15], np.float32)
    print(f"\nCSI at {len(thresholds)} thresholds on a (time, lat, lon) = {shape} cube, per point")
    rng = np.random.default_rng(2)
    obs = rng.gamma(0.5, 3.0, size=shape).astype(np.float32)  # precipitation-like, mm/h
    fcst = (obs * rng.lognormal(0, 0.5, size=shape)).astype(np.float32)
    f, o, t = jnp.asarray(fcst), jnp.asarray(obs), jnp.asarray(thresholds)
    csi = jax.jit(lambda f, o, t: cm.csi(f, o, threshold=t, axis=0))
    print(f"  (climml compile + first run: {compile_time(lambda: csi(f, o, t)):.2f} s)")
    t_ours, ours = best_time(lambda: csi(f, o, t), repeats)
    report("climml csi (10 thresholds at once, vmap)", t_ours, t_ours)
    dims = ("time", "lat", "lon")
    obs_da, fc_da = xr.DataArray(obs, dims=dims), xr.DataArray(fcst, dims=dims)

    def xs_loop():
        scores = []
        for threshold in thresholds:
            edges = np.array([-np.inf, threshold, np.inf])
            table = xskillscore.Contingency(obs_da, fc_da, edges, edges, dim="time")
            scores.append(table.threat_score().values)
        return np.stack(scores)

    seconds, theirs = best_time(xs_loop, max(1, repeats // 2))
    report(
        "xskillscore Contingency.threat_score loop",
        seconds,
        t_ours,
        float(np.nanmax(np.abs(np.asarray(ours) - theirs))),
    )
    print(f"  -> climml vs xskillscore: x{seconds / t_ours:.1f} (target >= 10)")


def bench_continuous(shape: tuple[int, int, int], repeats: int) -> None:
    print(f"\nCorrelation and RMSE, float32 (time, lat, lon) = {shape} at 280 K")
    rng = np.random.default_rng(3)
    obs = (280 + rng.normal(size=shape)).astype(np.float32)
    fcst = (obs + rng.normal(0.3, 0.7, size=shape)).astype(np.float32)
    lat = np.linspace(-89, 89, shape[1])
    w = np.broadcast_to(np.asarray(cm.latitude_weights(lat), np.float32)[:, None], shape[1:])
    f, o, wj = jnp.asarray(fcst), jnp.asarray(obs), jnp.asarray(w)
    dims = ("time", "lat", "lon")
    fc_da, obs_da = xr.DataArray(fcst, dims=dims), xr.DataArray(obs, dims=dims)
    w_da = xr.DataArray(np.broadcast_to(w, shape), dims=dims)
    f64, o64 = fcst.astype(np.float64), obs.astype(np.float64)

    def exact_corr(axis):
        w64 = np.broadcast_to(w, shape) if axis is None else np.ones(shape)
        mean_f = np.average(f64, axis=axis, weights=w64, keepdims=True)
        mean_o = np.average(o64, axis=axis, weights=w64, keepdims=True)
        fa, oa = f64 - mean_f, o64 - mean_o
        cov = np.sum(w64 * fa * oa, axis=axis)
        return cov / np.sqrt(np.sum(w64 * fa**2, axis=axis) * np.sum(w64 * oa**2, axis=axis))

    def exact_rmse(axis):
        w64 = np.broadcast_to(w, shape) if axis is None else np.ones(shape)
        return np.sqrt(np.average((f64 - o64) ** 2, axis=axis, weights=w64))

    def compare(name, ours_fn, peer, want, axis, dim, label) -> None:
        # Per grid point the latitude weight is one constant per series: unweighted there.
        weights, peer_weights = (wj, w_da) if axis is None else (None, None)
        ours_jit = jax.jit(lambda f, o: ours_fn(f, o, axis=axis, weights=weights))
        compile_time(lambda: ours_jit(f, o))
        t_ours, ours = best_time(lambda: ours_jit(f, o), repeats)
        t_peer, theirs = best_time(
            lambda: peer(fc_da, obs_da, dim=dim, weights=peer_weights).values, max(1, repeats // 2)
        )
        err_ours = float(np.max(np.abs(np.asarray(ours) / want - 1)))
        err_peer = float(np.max(np.abs(np.asarray(theirs) / want - 1)))
        report(f"climml {name}, {label}", t_ours, t_ours)
        report(f"xskillscore {name}, {label}", t_peer, t_ours)
        print(f"    max relative error vs float64: climml {err_ours:.1e}, peer {err_peer:.1e}")

    for axis, dim, label in ((None, None, "whole cube"), (0, "time", "per grid point")):
        compare(
            "correlation", cm.correlation, xskillscore.pearson_r, exact_corr(axis), axis, dim, label
        )
        compare("rmse", cm.rmse, xskillscore.rmse, exact_rmse(axis), axis, dim, label)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row (best kept)")
    parser.add_argument(
        "--only", choices=["crps", "auc", "contingency", "continuous"], help="one section"
    )
    args = parser.parse_args()
    print(
        f"climml.metrics benchmark, {datetime.datetime.now():%Y-%m-%d %H:%M}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}, jax {jax.__version__} on {jax.devices()[0].platform}"
    )
    repeats = 1 if args.quick else args.repeats
    if args.only in (None, "crps"):
        bench_crps(20_000 if args.quick else 1_000_000, 50, repeats)
    if args.only in (None, "auc"):
        if args.quick:
            bench_auc(200, 500, repeats, xs_points=2)
        else:
            bench_auc(10_000, 2_000, repeats, xs_points=2)
    if args.only in (None, "contingency"):
        bench_contingency((20, 30, 40) if args.quick else (365, 90, 180), repeats)
    if args.only in (None, "continuous"):
        bench_continuous((20, 30, 40) if args.quick else (365, 90, 180), repeats)


if __name__ == "__main__":
    main()
