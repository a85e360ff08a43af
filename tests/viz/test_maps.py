"""Maps: coastlines from the packaged Natural Earth files with the network disabled, labelled
gridlines, colour bars with units, shared colour ranges, dateline-safe centring and polar maps
that say their hemisphere. Checked on the figure objects."""

import io
import socket
import tomllib
from pathlib import Path

import cartopy
import cartopy.crs as ccrs
import numpy as np
import pytest
import xarray as xr
from cartopy.io import shapereader
from cartopy.mpl.geoaxes import GeoAxes
from cartopy.mpl.gridliner import Gridliner
from matplotlib.collections import QuadMesh

import climml
from climml.errors import DataError
from climml.viz import maps

LAT = np.linspace(-29.0, 29.0, 12)
LON = np.linspace(122.0, 278.0, 20)  # tropical Pacific in 0-360 longitudes, across the dateline


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network (every socket refused), no cartopy downloader, no cartopy data directory:
    a map can only draw coastlines from the files packaged with climml."""

    def refuse(*args, **kwargs):
        raise OSError("network access is disabled in this test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setitem(cartopy.config, "downloaders", {})
    monkeypatch.setitem(cartopy.config, "data_dir", str(tmp_path / "empty"))
    monkeypatch.setitem(cartopy.config, "pre_existing_data_dir", str(tmp_path / "empty"))
    maps.natural_earth.cache_clear()  # read the shapefiles again, under these conditions
    yield
    maps.natural_earth.cache_clear()


def _render(fig):
    """Draw ``fig`` as saving does (cartopy creates gridline labels and projects the features
    at draw time)."""
    fig.savefig(io.BytesIO(), format="png")


def _panels(fig):
    return [ax for ax in fig.axes if isinstance(ax, GeoAxes)]


def _mesh(ax):
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    return mesh


def _colorbar_labels(fig):
    return [ax.get_xlabel() for ax in fig.axes if not isinstance(ax, GeoAxes)]


def _grid_labels(ax):
    (grid,) = [a for a in ax.artists if isinstance(a, Gridliner)]
    return {t.get_text() for t in grid.label_artists if t.get_visible()}


def test_coastlines_come_from_the_packaged_files_offline(offline, tmp_path):
    field = np.random.default_rng(0).standard_normal((LAT.size, LON.size))
    fig = maps.plot_panels(
        [maps.Panel("sst", field, units="degC")], LAT, LON, path=tmp_path / "map.png"
    )
    _render(fig)
    (ax,) = _panels(fig)
    (coast,) = [c for c in ax.collections if c.get_gid() == "coastline"]
    packaged = maps.natural_earth_file("coastline", "110m")  # > 90 degrees wide: 1:110m
    assert packaged.is_relative_to(Path(climml.__file__).parent)
    shapes = list(shapereader.Reader(str(packaged)).geometries())
    assert len(list(coast._feature.geometries())) == len(shapes)
    # drawn: projected coastline paths inside the map, e.g. New Guinea and Central America
    paths = coast.get_paths()
    assert len(paths) > 20
    vertices = np.concatenate([p.vertices for p in paths])
    x0, x1, y0, y1 = ax.get_extent()
    inside = (vertices[:, 0] >= x0) & (vertices[:, 0] <= x1)
    inside &= (vertices[:, 1] >= y0) & (vertices[:, 1] <= y1)
    assert inside.sum() > 500
    assert (tmp_path / "map.png").stat().st_size > 10_000


def test_every_packaged_shapefile_is_package_data():
    """The files maps read ship in the wheel: pyproject's package-data patterns match them."""
    config = tomllib.loads((Path(climml.__file__).parents[1] / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["climml.viz"]
    root = Path(maps.__file__).parent
    shipped = {p for pattern in patterns for p in root.glob(pattern)}
    for name in ("coastline", "land"):
        for resolution in ("110m", "50m"):
            shp = maps.natural_earth_file(name, resolution)
            for suffix in (".shp", ".shx", ".dbf", ".prj"):
                assert shp.with_suffix(suffix) in shipped
    with pytest.raises(DataError, match="^natural_earth_file: expected"):
        maps.natural_earth_file("rivers", "10m")


def test_map_has_labelled_gridlines_units_and_a_centred_projection():
    field = xr.DataArray(
        np.random.default_rng(0).standard_normal((LAT.size, LON.size)),
        dims=("lat", "lon"),
        coords={"lat": LAT, "lon": LON},
        name="sst",
        attrs={"units": "degC", "long_name": "sea surface temperature"},
    )
    fig = maps.plot_map(field)
    _render(fig)
    (ax,) = _panels(fig)
    assert ax.get_title() == "sst"
    assert _colorbar_labels(fig) == ["sea surface temperature (degC)"]
    assert ax.projection.proj4_params["pm"] == pytest.approx(-160.0)  # 160 W: the Pacific
    west, east, south, north = ax.get_extent(ccrs.PlateCarree(central_longitude=-160.0))
    assert (west, east) == pytest.approx((-82.1, 82.1), abs=0.1)  # half a cell beyond
    assert (south, north) == pytest.approx((-31.6, 31.6), abs=0.1)
    labels = _grid_labels(ax)
    assert {"180°", "120°W", "0°", "20°N", "20°S"} <= labels
    with pytest.raises(DataError, match="^field.dims: expected"):
        maps.plot_map(field.rename(lat="y"))


def test_observed_and_reconstructed_share_one_colour_range():
    rng = np.random.default_rng(0)
    observed = 3.0 * rng.standard_normal((LAT.size, LON.size))
    reconstructed = 0.5 * observed
    panels = [
        maps.Panel("observed", observed, units="K", group="field"),
        maps.Panel("reconstruction", reconstructed, units="K", group="field"),
        maps.Panel("squared error", (observed - reconstructed) ** 2, "error", units="K²"),
        maps.Panel("alone", reconstructed, units="K"),
    ]
    fig = maps.plot_panels(panels, LAT, LON, title="most anomalous")
    obs, rec, err, alone = (_mesh(ax) for ax in _panels(fig))
    assert obs.get_clim() == rec.get_clim() == (observed.min(), observed.max())
    assert err.get_clim() == (0.0, ((observed - reconstructed) ** 2).max())
    assert alone.get_clim() == (reconstructed.min(), reconstructed.max())  # not in the group
    assert _colorbar_labels(fig) == [
        "observed (K)",
        "reconstruction (K)",
        "squared error (K²)",
        "alone (K)",
    ]
    assert fig.get_suptitle() == "most anomalous"


@pytest.mark.parametrize(
    ("lon", "centre"),
    [
        (np.linspace(122, 278, 20), 200.0 - 360.0),  # Pacific, 0-360
        (np.r_[np.arange(120, 180, 10), np.arange(-180, -70, 10)], -160.0),  # Pacific, +-180
        (np.arange(-20, 41, 5), 10.0),  # Europe/Africa
        (np.arange(0.5, 360, 1.0), -180.0),  # global 0-360: the dateline in the middle
        (np.arange(-179.5, 180, 1.0), 0.0),  # global +-180
    ],
)
def test_central_longitude(lon, centre):
    assert maps.central_longitude(lon) == pytest.approx(centre)
    assert maps.central_longitude(np.random.default_rng(0).permutation(lon)) == pytest.approx(
        centre
    )


def test_a_domain_across_the_dateline_is_drawn_in_one_piece():
    """Longitudes given as 170..180, -180..-150 (unsorted too) map to one contiguous mesh."""
    lon = np.r_[np.arange(170.0, 180.0, 2.5), np.arange(-180.0, -149.0, 2.5)]
    values = np.broadcast_to(lon, (4, lon.size))  # each column holds its own longitude
    shuffled = np.random.default_rng(0).permutation(lon.size)
    fig = maps.plot_panels(
        [maps.Panel("lon", values[:, shuffled])], np.linspace(-5, 5, 4), lon[shuffled]
    )
    (ax,) = _panels(fig)
    mesh = _mesh(ax)
    # columns in eastward order after centring: the drawn values increase across the dateline
    drawn = mesh.get_array().reshape(4, lon.size)[0]
    np.testing.assert_array_equal(drawn, lon)  # 170 .. 177.5, -180 .. -150
    west, east, _, _ = ax.get_extent(ax.projection)
    assert east - west == pytest.approx(lon.size * 2.5)


def test_sea_ice_polar_maps_say_their_hemisphere(offline):
    lat = np.arange(89.5, -90, -1.0)
    lon = np.arange(0.5, 360, 1.0)
    ice = (np.abs(lat) > 70)[:, None] * np.ones((1, lon.size), int)
    names = ("open_ocean", "sea_ice", "land")
    panels = [maps.Panel("truth", ice, "classes", names)]
    fig = maps.plot_polar(panels, lat, lon, title="2012-08")
    _render(fig)
    north, south = _panels(fig)
    assert north.get_title() == "truth: Arctic (north polar stereographic)"
    assert south.get_title() == "truth: Antarctic (south polar stereographic)"
    assert isinstance(north.projection, ccrs.NorthPolarStereo)
    assert isinstance(south.projection, ccrs.SouthPolarStereo)
    assert {"70°N", "80°N"} <= _grid_labels(north)
    assert {"70°S", "80°S"} <= _grid_labels(south)
    for ax in (north, south):
        (coast,) = [c for c in ax.collections if c.get_gid() == "coastline"]
        assert len(coast.get_paths()) > 5
    bar = [ax for ax in fig.axes if not isinstance(ax, GeoAxes)][0]
    assert [t.get_text() for t in bar.get_xticklabels()] == list(names)
    assert bar.get_xlabel() == "class"
    with pytest.raises(DataError, match="^hemispheres: expected"):
        maps.plot_polar(panels, lat, lon, hemispheres=("east",))


def test_bad_panels_are_data_errors():
    with pytest.raises(DataError, match=r"^Panel.values.shape: expected \(lat, lon\) = \(12, 20\)"):
        maps.plot_panels([maps.Panel("a", np.ones((3, 3)))], LAT, LON)
    with pytest.raises(DataError, match=r"^Panel\('a'\).kind: expected"):
        maps.plot_panels([maps.Panel("a", np.ones((12, 20)), "contour")], LAT, LON)
    with pytest.raises(DataError, match="^panels: expected"):
        maps.plot_panels([], LAT, LON)
