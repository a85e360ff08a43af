"""Maps of gridded fields on cartopy projections, with coastlines that need no download.

Coastlines and land come from the Natural Earth 1:110m and 1:50m shapefiles packaged with
climml (``climml/viz/data/natural_earth``, public domain, in cartopy's folder layout). They are
read with ``cartopy.io.shapereader`` from that folder directly, never through
``ax.coastlines()`` or ``NaturalEarthFeature``, which would download missing files: every map
draws the same coastline on any machine, offline.

Projections: regional and global fields on Plate Carrée centred on the domain (a Pacific
domain given in 0-360 longitudes, or one crossing the dateline in -180-180 longitudes, is not
cut in two); polar fields (sea ice) on north and south polar stereographic maps, titled with
their hemisphere. Gridlines are labelled in degrees; colour bars carry the field's units.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cartopy.crs as ccrs
import matplotlib.path as mpath
import numpy as np
import shapely
import xarray as xr
from cartopy.feature import ShapelyFeature
from cartopy.io import shapereader
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

from climml.errors import DataError, expected
from climml.viz import style

NATURAL_EARTH_DIR = Path(__file__).parent / "data" / "natural_earth"  # a cartopy data_dir
KINDS = ("field", "error", "diverging", "classes")
HEMISPHERES = {
    "north": ("Arctic", ccrs.NorthPolarStereo),
    "south": ("Antarctic", ccrs.SouthPolarStereo),
}


@dataclass(frozen=True)
class Panel:
    """One map: a (lat, lon) array, its title, and how to colour it.

    kind: ``"field"`` (continuous, viridis), ``"error"`` (non-negative, magma),
    ``"diverging"`` (signed, red-blue, symmetric about zero) or ``"classes"`` (integer labels;
    ``class_names`` labels the colour bar). ``units`` go on the colour bar (e.g. ``"degC"``;
    ``label`` names the quantity there, default the title). Panels with the same non-empty
    ``group`` share one colour range (observed and reconstructed fields, so that equal colours
    mean equal values).
    """

    title: str
    values: np.ndarray
    kind: str = "field"
    class_names: tuple[str, ...] = ()
    units: str = ""
    label: str = ""
    group: str = ""


def natural_earth_file(name: str = "coastline", resolution: str = "110m") -> Path:
    """The packaged Natural Earth shapefile ``ne_<resolution>_<name>.shp``.

    name: ``"coastline"`` or ``"land"``; resolution: ``"110m"`` or ``"50m"``.
    """
    path = NATURAL_EARTH_DIR / "shapefiles" / "natural_earth" / "physical"
    path = path / f"ne_{resolution}_{name}.shp"
    if not path.is_file():
        want = "coastline or land at 110m or 50m (packaged with climml)"
        raise DataError(expected("natural_earth_file", want, (name, resolution)))
    return path


@functools.cache
def natural_earth(
    name: str = "coastline", resolution: str = "110m", south: float = -90.0, north: float = 90.0
) -> ShapelyFeature:
    """The packaged shapes between latitudes ``south`` and ``north`` as a cartopy feature in
    longitude/latitude (read and clipped once, cached).

    Clipping to the band matters on polar maps: projecting the whole world's shapes there
    takes seconds per panel, most of it on the other hemisphere.
    """
    path = natural_earth_file(name, resolution)
    geometries = shapereader.Reader(str(path)).geometries()
    if (south, north) != (-90.0, 90.0):
        clipped = (shapely.clip_by_rect(g, -180.0, south, 180.0, north) for g in geometries)
        geometries = (g for g in clipped if not g.is_empty)
    return ShapelyFeature(tuple(geometries), ccrs.PlateCarree())


def add_coastlines(
    ax, *, resolution: str = "110m", land: bool = True, band: tuple[float, float] = (-90.0, 90.0)
) -> None:
    """Coastlines (black, above the data) and, with ``land``, land in light grey beneath it
    (where a field is NaN over land, the land shows), from the packaged files; only the
    shapes within the latitude ``band`` (south, north)."""
    if land:
        ax.add_feature(
            natural_earth("land", resolution, *band),
            facecolor="#d9d9d9",
            edgecolor="none",
            zorder=0,
        )
    ax.add_feature(
        natural_earth("coastline", resolution, *band),
        facecolor="none",
        edgecolor="black",
        linewidth=0.6,
        zorder=3,
        gid="coastline",
    )


def add_gridlines(ax, *, polar_boundary: float | None = None) -> None:
    """Dotted lat/lon gridlines labelled in degrees: bottom and left on Plate Carrée; on a
    polar map meridians every 60 degrees and parallels every 10 poleward of the boundary
    (fewer lines: cartopy recomputes every labelled line at each draw)."""
    style_kw = {"linewidth": 0.4, "color": "grey", "alpha": 0.6, "linestyle": ":"}
    if polar_boundary is None:
        grid = ax.gridlines(draw_labels=True, **style_kw)
        grid.top_labels = grid.right_labels = False
    else:
        step = 10.0 if polar_boundary > 0 else -10.0
        parallels = np.arange(polar_boundary + step, np.sign(step) * 90.0, step)
        meridians = np.arange(-180.0, 180.0, 60.0)
        grid = ax.gridlines(draw_labels=True, xlocs=meridians, ylocs=parallels, **style_kw)
    grid.xlabel_style = grid.ylabel_style = {"size": 7}


def central_longitude(lon: Sequence[float]) -> float:
    """Centre (degrees in [-180, 180)) of the longitude range covered by ``lon``.

    A regional domain is the circle minus its largest gap between neighbouring longitudes, so
    120..280 (0-360) and 120..180, -180..-80 (-180-180) both give -160: a Pacific map centred on
    the Pacific, not cut at the dateline. A global grid (no gap wider than its spacing) keeps
    its own convention: 180 for 0-360 longitudes, 0 for -180-180.
    """
    lon = np.asarray(lon, np.float64)
    ring = np.sort(np.mod(lon, 360.0))
    if ring.size == 1:
        return _wrap(float(ring[0]))
    gaps = np.diff(np.append(ring, ring[0] + 360.0))  # gap after each longitude (last: wrap)
    if gaps.max() <= 1.5 * np.median(gaps):  # global
        return _wrap((lon.min() + lon.max()) / 2)
    before = int(np.argmax(gaps))  # the domain starts after its largest gap
    start = ring[(before + 1) % ring.size]
    return _wrap(start + (360.0 - gaps[before]) / 2)


def _wrap(lon: float) -> float:
    return float(np.mod(lon + 180.0, 360.0) - 180.0)


def plot_panels(
    panels: Sequence[Panel],
    lat: Sequence[float] | None,
    lon: Sequence[float] | None,
    *,
    title: str = "",
    path: str | Path | None = None,
) -> Figure:
    """Panels side by side on Plate Carrée maps of the (lat, lon) grid, each with coastlines,
    labelled gridlines and a colour bar with units; saved to ``path`` when given.

    ``lat``/``lon``: cell-centre coordinates in degrees (longitudes in 0-360 or -180-180, in
    any order). With ``lat`` or ``lon`` None the grid is not geographic: plain axes in grid
    indices, no coastlines.
    """
    _check_panels(panels)
    geographic = lat is not None and lon is not None
    if geographic:
        lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
        centre = central_longitude(lon)
        x = np.mod(lon - centre + 180.0, 360.0) - 180.0  # longitude east of the centre
        order = np.argsort(x)
        x = x[order]
        height = 4.2 * max(np.ptp(lat), 10.0) / max(np.ptp(x), 10.0)
        projection = ccrs.PlateCarree(central_longitude=centre)
        fig = style.new_figure((4.4 * len(panels), min(height, 4.2) + 1.4))
        n = len(panels)
        axes = [fig.add_subplot(1, n, i + 1, projection=projection) for i in range(n)]
    else:
        fig = style.new_figure((4.4 * len(panels), 4.0))
        axes = list(fig.subplots(1, len(panels), squeeze=False)[0])
    limits = _group_limits(panels)
    for ax, panel in zip(axes, panels, strict=True):
        values = np.asarray(panel.values)
        if geographic:
            _check_grid(values, lat, lon)
            mesh = _mesh(ax, x, lat, values[:, order], panel, limits, projection)
            _geo_extent(ax, x, lat, projection)
            add_coastlines(ax, resolution="110m" if np.ptp(x) > 90 else "50m")
            add_gridlines(ax)
        else:
            mesh = _mesh(ax, None, None, values, panel, limits, None)
            ax.set(xlabel="x (grid index)", ylabel="y (grid index)")
        _colorbar(fig, ax, mesh, panel)
        ax.set_title(panel.title, fontsize=9)
    if title:
        fig.suptitle(title)
    return style.finish(fig, path)


def plot_polar(
    panels: Sequence[Panel],
    lat: Sequence[float],
    lon: Sequence[float],
    *,
    hemispheres: Sequence[str] = ("north", "south"),
    boundary_lat: float = 50.0,
    title: str = "",
    path: str | Path | None = None,
) -> Figure:
    """Panels on polar stereographic maps, one row per hemisphere (Arctic above Antarctic),
    each titled with its hemisphere; poleward of ``boundary_lat`` degrees. For sea ice, whose
    two hemispheres look alike on a global map."""
    _check_panels(panels)
    unknown = [h for h in hemispheres if h not in HEMISPHERES]
    if unknown or not hemispheres:
        raise DataError(expected("hemispheres", f"some of {sorted(HEMISPHERES)}", hemispheres))
    lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    limits = _group_limits(panels)
    n_rows, n_cols = len(hemispheres), len(panels)
    fig = style.new_figure((3.6 * n_cols, 3.9 * n_rows))
    for row, hemisphere in enumerate(hemispheres):
        region, projection_class = HEMISPHERES[hemisphere]
        projection = projection_class()
        sign = 1.0 if hemisphere == "north" else -1.0
        rows = sign * lat >= boundary_lat - 2.0  # a cell beyond the boundary keeps the disc full
        for col, panel in enumerate(panels):
            values = np.asarray(panel.values)
            _check_grid(values, lat, lon)
            ax = fig.add_subplot(n_rows, n_cols, row * n_cols + col + 1, projection=projection)
            edge = sorted((sign * boundary_lat, sign * 90.0))
            ax.set_extent([-180.0, 180.0, *edge], crs=ccrs.PlateCarree())
            ax.set_boundary(_circle(), transform=ax.transAxes)
            mesh = _mesh(ax, lon, lat[rows], values[rows], panel, limits, ccrs.PlateCarree())
            band = sorted((sign * (boundary_lat - 5.0), sign * 90.0))
            add_coastlines(ax, resolution="110m", band=(band[0], band[1]))
            add_gridlines(ax, polar_boundary=sign * boundary_lat)
            _colorbar(fig, ax, mesh, panel)
            ax.set_title(f"{panel.title}: {region} ({hemisphere} polar stereographic)", fontsize=9)
    if title:
        fig.suptitle(title)
    return style.finish(fig, path)


def plot_map(
    field: xr.DataArray,
    *,
    title: str | None = None,
    kind: str = "field",
    path: str | Path | None = None,
) -> Figure:
    """One (lat, lon) DataArray on a map; units from its ``units`` attribute, the colour bar
    named by its ``long_name`` or name, the title by default its name."""
    if set(field.dims) != {"lat", "lon"}:
        raise DataError(expected("field.dims", "('lat', 'lon')", field.dims))
    field = field.transpose("lat", "lon")
    name = str(field.attrs.get("long_name", field.name or ""))
    panel = Panel(
        title if title is not None else str(field.name or ""),
        field.values,
        kind,
        units=str(field.attrs.get("units", "")),
        label=name,
    )
    return plot_panels([panel], field["lat"].values, field["lon"].values, path=path)


def _check_panels(panels: Sequence[Panel]) -> None:
    if not panels:
        raise DataError(expected("panels", "at least one Panel", "none"))
    for panel in panels:
        if panel.kind not in KINDS:
            raise DataError(expected(f"Panel({panel.title!r}).kind", f"one of {KINDS}", panel.kind))


def _check_grid(values: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> None:
    if values.shape != (lat.size, lon.size):
        want = f"(lat, lon) = ({lat.size}, {lon.size})"
        raise DataError(expected("Panel.values.shape", want, values.shape))


def _group_limits(panels: Sequence[Panel]) -> dict[str, tuple[float, float]]:
    """``{group: (vmin, vmax)}`` over the finite values of the panels of each group."""
    limits = {}
    for group in {p.group for p in panels if p.group}:
        members = [p for p in panels if p.group == group]
        limits[group] = _limits(np.concatenate([np.ravel(p.values) for p in members]), members[0])
    return limits


def _limits(values: np.ndarray, panel: Panel) -> tuple[float, float]:
    finite = np.asarray(values, np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return (-1.0, 1.0)
    if panel.kind == "diverging":
        top = float(np.max(np.abs(finite))) or 1.0
        return (-top, top)
    if panel.kind == "error":  # non-negative: zero error is the bottom of the scale
        return (0.0, float(finite.max()) or 1.0)
    return (float(finite.min()), float(finite.max()))


def _mesh(ax, x, lat, values, panel: Panel, limits, transform):
    """pcolormesh of one panel (in grid indices when ``x`` is None)."""
    where = {} if transform is None else {"transform": transform}
    coords = () if x is None else (x, lat)
    if panel.kind == "classes":
        n = max(len(panel.class_names), int(np.nanmax(values, initial=0)) + 1, 2)
        colors = style.CLASS_COLORS if n <= len(style.CLASS_COLORS) else _many_colors(n)
        cmap = ListedColormap(colors[:n])
        norm = BoundaryNorm(np.arange(n + 1) - 0.5, n)
        return ax.pcolormesh(*coords, values, cmap=cmap, norm=norm, zorder=1, **where)
    vmin, vmax = limits.get(panel.group) or _limits(values, panel)
    cmap = {"error": style.ERROR_CMAP, "diverging": style.DIVERGING_CMAP}.get(
        panel.kind, style.FIELD_CMAP
    )
    return ax.pcolormesh(*coords, values, cmap=cmap, vmin=vmin, vmax=vmax, zorder=1, **where)


def _many_colors(n: int) -> tuple:
    import matplotlib

    return tuple(matplotlib.colormaps["tab20"].colors)[:n]


def _colorbar(fig: Figure, ax, mesh, panel: Panel) -> None:
    """A horizontal colour bar under ``ax``: class names, or the quantity with its units."""
    if panel.kind == "classes":
        n = mesh.norm.Ncmap
        bar = fig.colorbar(mesh, ax=ax, orientation="horizontal", ticks=range(n), shrink=0.9)
        if panel.class_names:
            bar.ax.set_xticklabels(panel.class_names, fontsize=7)
        bar.set_label("class", fontsize=8)
        return
    bar = fig.colorbar(mesh, ax=ax, orientation="horizontal", shrink=0.9)
    bar.set_label(style.label(panel.label or panel.title, panel.units or None), fontsize=8)
    bar.ax.tick_params(labelsize=7)


def _geo_extent(ax, x: np.ndarray, lat: np.ndarray, projection) -> None:
    """The grid's cells (half a spacing beyond the centres) on a map centred on the domain."""
    dx = float(np.median(np.diff(x))) if x.size > 1 else 1.0
    dy = float(np.median(np.abs(np.diff(lat)))) if lat.size > 1 else 1.0
    west, east = max(x.min() - dx / 2, -180.0), min(x.max() + dx / 2, 180.0)
    south, north = max(lat.min() - dy / 2, -90.0), min(lat.max() + dy / 2, 90.0)
    ax.set_extent([west, east, south, north], crs=projection)


def _circle() -> mpath.Path:
    """A circle in axes coordinates: polar maps drawn as discs."""
    theta = np.linspace(0, 2 * np.pi, 100)
    return mpath.Path(np.column_stack([np.sin(theta), np.cos(theta)]) * 0.5 + 0.5)
