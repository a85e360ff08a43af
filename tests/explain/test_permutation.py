"""Permutation importance on y = 3·x0 + x1² + noise, with x2 a near-copy of x0 and x3 noise.

The model is a ridge fit on quadratic features: the penalty makes it share the x0 signal between
x0 and its copy x2, which is exactly the situation where single-pass importance misleads.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from sklearn.inspection import permutation_importance as sklearn_permutation_importance

from climml.errors import ConfigError, DataError
from climml.explain import permutation, permutation_importance

N = 3000
NAMES = ["x0", "x1", "x2", "x3"]


def _quadratic_features(x):
    return jnp.concatenate([x, x**2, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)


@pytest.fixture(scope="module")
def redundant():
    """``(x (N, 4), y (N,), predict)`` with ``predict`` a ridge model fitted on ``x``."""
    rng = np.random.default_rng(42)
    x = rng.standard_normal((N, 4)).astype(np.float32)
    x[:, 2] = x[:, 0] + 0.3 * rng.standard_normal(N).astype(np.float32)
    y = (3 * x[:, 0] + x[:, 1] ** 2 + 0.5 * rng.standard_normal(N)).astype(np.float32)
    feats = np.asarray(_quadratic_features(jnp.asarray(x)), np.float64)
    w = np.linalg.solve(feats.T @ feats + 0.05 * N * np.eye(9), feats.T @ y)
    assert w[0] > 1.5 and w[2] > 0.5, "the fit must rely on both copies of x0"
    weights = jnp.asarray(w, jnp.float32)
    return x, y, lambda a: _quadratic_features(a) @ weights


def mse(pred, target):
    return jnp.mean((pred - target) ** 2)


def test_single_pass_understates_a_feature_whose_copy_stays_intact(redundant):
    x, y, predict = redundant
    groups = {"x0": [0], "x1": [1], "x2": [2], "x0+x2": [0, 2]}
    ds = permutation_importance(
        predict, x, y, mse, key=jax.random.key(0), groups=groups, n_repeats=3, multipass=False
    )
    imp = ds.singlepass_importance.to_series()
    # Permuting x0 alone leaves x2 to carry its signal; together they lose far more than apart.
    assert imp["x0+x2"] > 1.4 * (imp["x0"] + imp["x2"])
    assert imp["x0"] > imp["x1"] > imp["x2"] > 0


def test_multi_pass_lifts_the_copy_above_x1_and_ranks_noise_last(redundant):
    x, y, predict = redundant
    ds = permutation_importance(
        predict, x, y, mse, key=jax.random.key(0), feature_names=NAMES, n_repeats=3
    )
    assert list(ds.singlepass_rank.values) == [1, 2, 3, 4]  # single pass: x2 below x1
    assert list(ds.selected.values) == ["x0", "x2", "x1", "x3"]
    assert list(ds.multipass_rank.values) == [1.0, 3.0, 2.0, 4.0]
    assert abs(float(ds.singlepass_importance.sel(feature="x3"))) < 1e-3
    # the multi-pass score of a feature is the score of its pass in the full table
    for p, name in enumerate(ds.selected.values):
        assert ds.multipass_score.sel(feature=name) == ds.pass_score.isel({"pass": p}).sel(
            feature=name
        )


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_pass_order_is_stable_across_seeds(redundant, seed):
    x, y, predict = redundant
    ds = permutation_importance(
        predict, x, y, mse, key=jax.random.key(seed), feature_names=NAMES, n_repeats=3
    )
    assert list(ds.selected.values) == ["x0", "x2", "x1", "x3"]


def _loop_reference(predict, x, y, key, masks, n_repeats, n_boot, ci_level=0.95):
    """Feature by feature, repeat by repeat, with the key derivation the docstring promises."""
    perm_key, boot_key = jax.random.split(key)
    n, (n_groups, n_features) = x.shape[0], masks.shape
    boot_idx = np.asarray(jax.random.randint(boot_key, (n_boot, n), 0, n))
    original = float(mse(predict(x), y))
    frozen, remaining, selected = np.zeros(n_features, bool), list(range(n_groups)), []
    scores = np.full((n_groups, n_groups, n_repeats), np.nan)
    boot_ci = np.full((n_groups, n_groups, 2), np.nan)
    for p in range(n_groups):
        keys = jax.random.split(jax.random.fold_in(perm_key, p), n_repeats)
        for g in remaining:
            cols = frozen | masks[g]
            boots = []
            for r in range(n_repeats):
                perm = np.asarray(jax.random.permutation(keys[r], n))
                xp = x.copy()
                xp[:, cols] = x[perm][:, cols]
                pred = np.asarray(predict(jnp.asarray(xp)))
                scores[p, g, r] = float(mse(pred, y))
                boots.append([float(mse(pred[i], y[i])) for i in boot_idx])
            tail = (1 - ci_level) / 2
            boot_ci[p, g] = np.quantile(np.mean(boots, axis=0), [tail, 1 - tail])
        means = scores[p].mean(axis=1)
        best = max(remaining, key=lambda g: means[g])
        selected.append(best)
        frozen |= masks[best]
        remaining.remove(best)
    return original, scores, boot_ci, selected


LOOP_GROUPS = [[0, 2], [1], [3]]


@pytest.fixture(scope="module")
def loop_case(redundant):
    """400 samples, grouped features, 2 repeats, 16 bootstrap resamples, and the loop's answer."""
    x, y, predict = redundant
    x, y = x[:400], y[:400]
    masks = np.zeros((3, 4), bool)
    for g, members in enumerate(LOOP_GROUPS):
        masks[g, members] = True
    key = jax.random.key(7)
    return x, y, predict, key, _loop_reference(predict, x, y, key, masks, 2, 16)


@pytest.mark.parametrize("chunk_size", [1, 2, 10_000])
def test_equals_a_plain_loop_on_the_same_keys(loop_case, chunk_size):
    """1 (CPU default): a scan skipping frozen candidates; 2: lax.map chunks that do not divide
    the 3 candidates; 10,000: one vmap over all repeats and candidates (accelerator default)."""
    x, y, predict, key, (original, scores, boot_ci, selected) = loop_case
    ds = permutation_importance(
        predict,
        x,
        y,
        mse,
        key=key,
        groups=LOOP_GROUPS,
        n_repeats=2,
        n_bootstrap=16,
        chunk_size=chunk_size,
    )
    np.testing.assert_allclose(float(ds.original_score), original, rtol=1e-5)
    np.testing.assert_allclose(ds.pass_score.values, np.mean(scores, axis=2), rtol=1e-5)
    np.testing.assert_allclose(
        ds.pass_score_std.values, np.std(scores, axis=2), rtol=1e-3, atol=1e-5
    )
    np.testing.assert_allclose(ds.singlepass_score_ci.values, boot_ci[0], rtol=1e-5)
    last = selected[-1]
    np.testing.assert_allclose(ds.multipass_score_ci.values[last], boot_ci[-1, last], rtol=1e-5)
    assert list(ds.feature.values) == ["feature_0+feature_2", "feature_1", "feature_3"]
    assert [list(ds.feature.values).index(s) for s in ds.selected.values] == selected


def test_default_chunks_follow_the_backend_and_memory_budget(redundant, monkeypatch):
    x, _, predict = redundant
    per_evaluation = 2 * x.nbytes + N * 4  # permuted copy + same-size activations + predictions
    assert permutation._auto_chunk(predict, jnp.asarray(x), "cpu") == 1
    monkeypatch.setattr(permutation, "MEMORY_BUDGET_BYTES", 3 * per_evaluation + 1)
    assert permutation._auto_chunk(predict, jnp.asarray(x), "gpu") == 3


def test_agrees_with_the_permutation_importance_package(redundant):
    # In the [bench] peers, installed with --no-deps (it pins an ancient scipy); see pyproject.
    pi = pytest.importorskip("PermutationImportance")
    pi_importance = pi.sklearn_permutation_importance

    x, y, predict = redundant
    predict_jit = jax.jit(predict)

    class Wrapped:  # the package calls model.predict(inputs) on numpy arrays
        def predict(self, inputs):
            return np.asarray(predict_jit(jnp.asarray(inputs, jnp.float32)))

    np.random.seed(0)  # the package draws from numpy's global RNG only
    theirs = pi_importance(
        Wrapped(),
        (x, y),
        lambda t, p: float(np.mean((p - t) ** 2)),
        "argmax_of_mean",
        variable_names=NAMES,
        nbootstrap=None,
    )
    ours = permutation_importance(
        predict, x, y, mse, key=jax.random.key(0), feature_names=NAMES, n_repeats=3
    )
    for kind, retrieved in [
        ("singlepass", theirs.retrieve_singlepass()),
        ("multipass", theirs.retrieve_multipass()),
    ]:
        their_rank = [retrieved[n][0] + 1 for n in NAMES]  # the package ranks from 0
        assert list(ours[f"{kind}_rank"].values) == their_rank, kind
        their_score = [retrieved[n][1] for n in NAMES]
        np.testing.assert_allclose(ours[f"{kind}_score"].values, their_score, rtol=0.1)
    np.testing.assert_allclose(float(ours.original_score), theirs.original_score, rtol=1e-5)


def test_single_pass_agrees_with_scikit_learn(redundant):
    x, y, predict = redundant
    predict_jit = jax.jit(predict)

    class Wrapped:
        def fit(self, inputs, targets):
            return self

        def predict(self, inputs):
            return np.asarray(predict_jit(jnp.asarray(inputs, jnp.float32)))

    def neg_mse(model, inputs, targets):  # scikit-learn maximizes; importance = drop in -MSE
        return -float(np.mean((model.predict(inputs) - targets) ** 2))

    theirs = sklearn_permutation_importance(
        Wrapped(), x, y, scoring=neg_mse, n_repeats=10, random_state=0
    )
    ours = permutation_importance(
        predict, x, y, mse, key=jax.random.key(0), n_repeats=3, multipass=False
    )
    np.testing.assert_allclose(
        ours.singlepass_importance.values, theirs.importances_mean, rtol=0.05, atol=0.05
    )


def test_channel_group_permutes_whole_fields_across_samples():
    """Identity model on (N, lat, lon, C): permuted channels must stay whole sample fields."""
    rng = np.random.default_rng(0)
    n, n_lat, n_lon = 32, 5, 6
    pattern = rng.standard_normal((n_lat, n_lon, 3)).astype(np.float32)
    level = rng.standard_normal((n, 1, 1, 3)).astype(np.float32)
    x = pattern + level  # each sample's field: a fixed pattern shifted by a per-sample level

    def spatial_spread(pred, target):
        """0 iff every channel of every sample is still ``pattern`` + one constant."""
        return jnp.mean(jnp.var(pred - pattern, axis=(1, 2)))

    key = jax.random.key(5)
    groups = {"u+v": [0, 1], "t": [2]}
    ds = permutation_importance(
        lambda a: a, x, x, spatial_spread, key=key, groups=groups, n_repeats=2
    )
    np.testing.assert_allclose(ds.pass_score.values[0], 0.0, atol=1e-10)

    full_mse = permutation_importance(
        lambda a: a, x, x, mse, key=key, groups=groups, n_repeats=2, multipass=False
    )
    keys = jax.random.split(jax.random.fold_in(jax.random.split(key)[0], 0), 2)
    perms = [np.asarray(jax.random.permutation(k, n)) for k in keys]
    expected = [
        np.mean([np.sum((x[p][..., c] - x[..., c]) ** 2) / x.size for p in perms])
        for c in ([0, 1], [2])
    ]
    np.testing.assert_allclose(full_mse.singlepass_score.values, expected, rtol=1e-5)


def test_time_lags_as_features():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 4, 2)).astype(np.float32)  # (N, lag, variable)

    def predict(a):
        return 2.0 * a[:, 2, 0] + 0.5 * a[:, 0, 1]

    y = predict(jnp.asarray(x))
    lags = permutation_importance(
        predict, x, y, mse, key=jax.random.key(0), feature_axis=1, n_repeats=2, multipass=False
    )
    assert list(lags.singlepass_rank.values) == [2, 3, 1, 4]
    np.testing.assert_array_equal(lags.singlepass_importance.values[[1, 3]], 0.0)
    variables = permutation_importance(
        predict, x, y, mse, key=jax.random.key(0), feature_axis=-1, n_repeats=2, multipass=False
    )
    assert list(variables.singlepass_rank.values) == [1, 2]


def test_bootstrap_interval_matches_the_sampling_error_of_the_mse():
    """For N(0, 1) errors, MSE has standard error sqrt(2 / N): the 95% interval is ±1.96 of it."""
    rng = np.random.default_rng(2)
    n = 2000
    x = rng.standard_normal((n, 2)).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    ds = permutation_importance(
        lambda a: jnp.zeros(a.shape[0], a.dtype),
        x,
        y,
        mse,
        key=jax.random.key(0),
        n_repeats=1,
        n_bootstrap=400,
        multipass=False,
    )
    lower, upper = ds.original_score_ci.values
    assert lower < float(ds.original_score) < upper
    np.testing.assert_allclose((upper - lower) / 2, 1.96 * np.sqrt(2 / n), rtol=0.2)


def test_max_passes_leaves_the_rest_unranked(redundant):
    x, y, predict = redundant
    ds = permutation_importance(
        predict, x, y, mse, key=jax.random.key(0), n_repeats=3, max_passes=2
    )
    assert ds.sizes["pass"] == 2
    assert np.isnan(ds.multipass_rank.values).sum() == 2
    assert np.isnan(ds.multipass_score.values).sum() == 2


def test_result_round_trips_through_netcdf(redundant, tmp_path):
    x, y, predict = redundant
    ds = permutation_importance(
        predict, x, y, mse, key=jax.random.key(0), n_repeats=3, n_bootstrap=8, feature_names=NAMES
    )
    ds.to_netcdf(tmp_path / "importance.nc")
    with xr.open_dataset(tmp_path / "importance.nc") as back:
        xr.testing.assert_identical(back.load(), ds)


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"feature_axis": 0}, ConfigError, "feature_axis"),
        ({"n_repeats": 0}, ConfigError, "n_repeats"),
        ({"n_bootstrap": -1}, ConfigError, "n_bootstrap"),
        ({"max_passes": 0}, ConfigError, "max_passes"),
        ({"groups": [[0], [9]]}, ConfigError, "groups[1]"),
        ({"groups": {"a": []}}, ConfigError, "groups['a']"),
        ({"feature_names": ["a"]}, ConfigError, "feature_names"),
        ({"chunk_size": 0}, ConfigError, "chunk_size"),
    ],
)
def test_bad_arguments_name_the_field(redundant, kwargs, error, field):
    x, y, predict = redundant
    with pytest.raises(error, match=f"^{re.escape(field)}: expected"):
        permutation_importance(predict, x, y, mse, key=jax.random.key(0), **kwargs)


def test_bad_data_and_scores_are_reported(redundant):
    x, y, predict = redundant
    with pytest.raises(DataError, match="^targets"):
        permutation_importance(predict, x, y[:10], mse, key=jax.random.key(0))
    with pytest.raises(DataError, match="^inputs"):
        permutation_importance(predict, x[:, 0], y, mse, key=jax.random.key(0))
    with pytest.raises(ConfigError, match="^score_fn: expected a scalar"):
        permutation_importance(predict, x, y, lambda p, t: p - t, key=jax.random.key(0))
