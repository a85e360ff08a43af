"""Maps of gridded fields side by side (input / truth / prediction), with coastlines offline.

Coastlines come from Natural Earth shapefiles already on disk in cartopy's data directories
(``cartopy.config["pre_existing_data_dir"]`` or ``["data_dir"]``, e.g. put there by a package or
a site install). They are read from the file directly and never through ``ax.coastlines()``,
which would try to download missing data: when the files are absent the maps are drawn without
coastlines and a warning says so.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # batch jobs have no display
import cartopy  # noqa: E402
import cartopy.crs as ccrs  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from cartopy.io import shapereader  # noqa: E402
from matplotlib.colors import BoundaryNorm, ListedColormap  # noqa: E402

CLASS_COLORS = ("#f2f2f2", "#d7301f", "#2b8cbe", "#41ab5d", "#807dba", "#fdae6b")


@dataclass(frozen=True)
class Panel:
    """One map: a (lat, lon) array, its title, and how to color it.

    kind: ``"field"`` (continuous, viridis), ``"error"`` (non-negative, magma) or ``"classes"``
    (integer labels; ``class_names`` gives the legend).
    """

    title: str
    values: np.ndarray
    kind: str = "field"
    class_names: tuple[str, ...] = ()


def coastline_file(resolution: str = "110m") -> Path | None:
    """Path of the Natural Earth coastline shapefile if it is on disk, else ``None``."""
    rel = Path("shapefiles", "natural_earth", "physical", f"ne_{resolution}_coastline.shp")
    for key in ("pre_existing_data_dir", "data_dir"):
        root = cartopy.config.get(key)
        if root and (Path(root) / rel).is_file():
            return Path(root) / rel
    return None


def plot_panels(
    panels: Sequence[Panel],
    lat: np.ndarray,
    lon: np.ndarray,
    path: str | Path,
    *,
    title: str = "",
) -> Path:
    """Draw ``panels`` side by side on Plate Carree maps of the (lat, lon) grid; save ``path``."""
    coast = coastline_file()
    if coast is None:
        warnings.warn(
            "Natural Earth coastlines are not on disk (cartopy data dirs); maps are drawn "
            "without coastlines. No download is attempted.",
            stacklevel=2,
        )
    lon = np.asarray(lon, float)
    projection = ccrs.PlateCarree(central_longitude=float(np.mean([lon.min(), lon.max()])))
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(4.2 * len(panels), 4.2 * _aspect(lat, lon) + 1.3),
        subplot_kw={"projection": projection},
        squeeze=False,
    )
    for ax, panel in zip(axes[0], panels, strict=True):
        _draw(ax, panel, np.asarray(lat, float), lon)
        if coast is not None:
            geoms = shapereader.Reader(str(coast)).geometries()
            ax.add_geometries(geoms, ccrs.PlateCarree(), facecolor="none", edgecolor="k", lw=0.5)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _aspect(lat: np.ndarray, lon: np.ndarray) -> float:
    """Height / width of the map's extent in degrees."""
    return float(np.ptp(lat)) / max(float(np.ptp(lon)), 1e-9)


def _draw(ax, panel: Panel, lat: np.ndarray, lon: np.ndarray) -> None:
    data_crs = ccrs.PlateCarree()
    ax.set_extent([lon.min(), lon.max(), lat.min(), lat.max()], crs=data_crs)
    if panel.kind == "classes":
        n = max(len(panel.class_names), int(np.nanmax(panel.values)) + 1, 2)
        colors = CLASS_COLORS if n <= len(CLASS_COLORS) else plt.cm.tab20.colors
        cmap = ListedColormap(colors[:n])
        norm = BoundaryNorm(np.arange(n + 1) - 0.5, n)
        mesh = ax.pcolormesh(lon, lat, panel.values, cmap=cmap, norm=norm, transform=data_crs)
        bar = plt.colorbar(mesh, ax=ax, orientation="horizontal", ticks=range(n), pad=0.05)
        if panel.class_names:
            bar.ax.set_xticklabels(panel.class_names, fontsize=7)
    else:
        cmap = "magma" if panel.kind == "error" else "viridis"
        mesh = ax.pcolormesh(lon, lat, panel.values, cmap=cmap, transform=data_crs)
        plt.colorbar(mesh, ax=ax, orientation="horizontal", pad=0.05)
    ax.set_title(panel.title, fontsize=9)
