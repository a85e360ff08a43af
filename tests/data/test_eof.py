"""EOF analysis against scikit-learn's PCA and the invariants of the decomposition."""

import numpy as np
import pytest
import xarray as xr

from climml.data.eof import EOF
from climml.errors import ConfigError, DataError


def _field(n_time=40, n_lat=6, n_lon=8, seed=0, land=True):
    """Two planted patterns plus noise on a lat-lon grid, with a NaN 'land' corner."""
    rng = np.random.default_rng(seed)
    lat = np.linspace(-60, 60, n_lat)
    lon = np.arange(n_lon) * 45.0
    pattern_a = np.cos(np.deg2rad(lat))[:, None] * np.ones(n_lon)
    pattern_b = np.sin(np.deg2rad(lon))[None, :] * np.ones((n_lat, 1))
    amp = rng.standard_normal((n_time, 2)) * [3.0, 1.0]
    values = 15.0 + amp[:, :1, None] * pattern_a + amp[:, 1:, None] * pattern_b
    values = values + 0.1 * rng.standard_normal(values.shape)
    if land:
        values[:, :2, :2] = np.nan
    time = np.arange(n_time)
    return xr.DataArray(
        values,
        dims=("time", "lat", "lon"),
        coords={"time": time, "lat": lat, "lon": lon},
        attrs={"units": "degC"},
    )


def test_unweighted_eofs_match_sklearn_pca():
    sklearn = pytest.importorskip("sklearn.decomposition")
    field = _field()
    eof = EOF.fit(field, modes=3, weighting="none")
    x = field.values.reshape(field.sizes["time"], -1)
    x = x[:, np.isfinite(x).all(axis=0)]
    pca = sklearn.PCA(n_components=3, svd_solver="full").fit(x)
    np.testing.assert_allclose(
        eof.explained_variance_ratio, pca.explained_variance_ratio_, rtol=1e-10
    )
    # PCs agree up to the sign of each mode
    ours, theirs = eof.pcs(field).values, pca.transform(x)
    signs = np.sign(np.sum(ours * theirs, axis=0))
    np.testing.assert_allclose(ours * signs, theirs, atol=1e-9)
    truncated = eof.reconstruct(field, modes=2).values.reshape(field.sizes["time"], -1)
    reference = sklearn.PCA(n_components=2, svd_solver="full").fit(x)
    expected_x = reference.inverse_transform(reference.transform(x))
    np.testing.assert_allclose(truncated[:, np.isfinite(truncated).all(0)], expected_x, atol=1e-9)


def test_coslat_weighting_invariants():
    field = _field()
    full_rank = field.sizes["time"] - 1
    eof = EOF.fit(field, modes=full_rank)
    # every mode kept: the fitted field comes back exactly; land stays NaN
    back = eof.reconstruct(field)
    np.testing.assert_allclose(back.values, field.values, atol=1e-9)
    assert back.dims == field.dims and back.attrs["units"] == "degC"
    assert np.isnan(back.values[:, :2, :2]).all()
    ratio = eof.explained_variance_ratio.values
    assert np.all(np.diff(ratio) <= 1e-12) and ratio.sum() == pytest.approx(1.0, rel=1e-9)
    # the two planted patterns explain nearly everything
    assert ratio[:2].sum() > 0.99
    # field = mean + sum_k pc_k * pattern_k
    two = EOF.fit(field, modes=2)
    manual = two.pcs(field).values @ two.patterns().values.reshape(2, -1)
    manual = manual.reshape(field.shape) + (back.mean("time").values)
    np.testing.assert_allclose(two.reconstruct(field).values, manual, atol=1e-9)


def test_coslat_eofs_are_the_pca_of_the_area_weighted_field():
    """By definition: PCA of the anomalies times sqrt(cos(lat)), patterns divided back."""
    sklearn = pytest.importorskip("sklearn.decomposition")
    field = _field(land=False)
    w = np.sqrt(np.cos(np.deg2rad(field["lat"].values)))[:, None] * np.ones(field.sizes["lon"])
    x = (field.values * w).reshape(field.sizes["time"], -1)
    pca = sklearn.PCA(n_components=2, svd_solver="full").fit(x)
    eof = EOF.fit(field, modes=2)
    np.testing.assert_allclose(
        eof.explained_variance_ratio, pca.explained_variance_ratio_, rtol=1e-10
    )
    ours = eof.patterns().values.reshape(2, -1) * w.ravel()
    signs = np.sign(np.sum(ours * pca.components_, axis=1))[:, None]
    np.testing.assert_allclose(ours * signs, pca.components_, atol=1e-9)
    # and weighting matters here: the unweighted ratios differ
    unweighted = EOF.fit(field, modes=2, weighting="none").explained_variance_ratio.values
    assert not np.allclose(unweighted, pca.explained_variance_ratio_, rtol=1e-3)


def test_bad_inputs_name_the_field():
    field = _field()
    with pytest.raises(ConfigError, match="modes"):
        EOF.fit(field, modes=field.sizes["time"])
    with pytest.raises(ConfigError, match="weighting"):
        EOF.fit(field, modes=2, weighting="area")
    with pytest.raises(DataError, match="field.dims"):
        EOF.fit(field.isel(time=0), modes=1)
    eof = EOF.fit(field, modes=2)
    with pytest.raises(ConfigError, match="modes"):
        eof.reconstruct(field, modes=3)
    with pytest.raises(DataError, match="grid shape"):
        eof.pcs(field.isel(lon=slice(0, 4)))
    with pytest.raises(DataError, match="lat"):
        EOF.fit(field.rename(lat="y"), modes=2)
