"""The tutorials in ``notebooks/`` run top to bottom, in their fast mode, and match their sources.

Each notebook is executed in a fresh Jupyter kernel with ``CLIMML_NOTEBOOK_FAST=1`` (smaller
data, fewer epochs), as a user would run it: the simulated 8-device CPU of the rest of the suite
and its headless matplotlib backend are removed from the kernel's environment, so a notebook
that forced a backend or assumed several devices without creating them would fail here.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
# The real radar of notebook 6, where the project's shared data sit next to the checkout: there
# the notebook runs on MeteoSwiss events, elsewhere on its synthetic fallback.
RADAR_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/pysteps-data"
# per cell and notebook: fast mode takes 1-3 minutes on 2 busy CPU cores, far less idle;
# notebook 6 compiles the GAN's training steps (~1 minute of CPU), minutes more on busy cores
TIMEOUT_S = 600


def test_notebooks_match_their_sources():
    """``notebooks/*.ipynb`` are what ``notebooks/build.py`` makes of ``notebooks/src/``: no
    stale copy, no stored outputs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("notebook_build", NOTEBOOKS / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    sources = sorted((NOTEBOOKS / "src").glob("[0-9][0-9]_*.py"))
    assert sources, "no notebook sources found"
    for source in sources:
        stored = nbformat.read(NOTEBOOKS / f"{source.stem}.ipynb", as_version=4)
        assert stored == build.build(source), (
            f"{source.stem}.ipynb is stale: run notebooks/build.py"
        )
        assert all(not c.get("outputs") for c in stored.cells if c.cell_type == "code")
    notebooks = {p.stem for p in NOTEBOOKS.glob("*.ipynb")}
    assert notebooks == {s.stem for s in sources}, "every notebook has a source and vice versa"


@pytest.mark.timeout(TIMEOUT_S + 60)  # the whole notebook, kernel start included
@pytest.mark.parametrize(
    "name", sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")), ids=lambda n: n[:2]
)
def test_notebook_runs_in_fast_mode(name, tmp_path, monkeypatch):
    monkeypatch.setenv("CLIMML_NOTEBOOK_FAST", "1")
    monkeypatch.delenv("XLA_FLAGS", raising=False)  # conftest's 8 simulated devices
    monkeypatch.delenv("MPLBACKEND", raising=False)  # conftest's Agg: the kernel picks inline
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # run directories the notebook makes land here
    if RADAR_DATA.is_dir():
        monkeypatch.setenv("CLIMML_RADAR_DATA", str(RADAR_DATA))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": NOTEBOOKS}}
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError naming the failing cell
    elapsed = time.perf_counter() - start
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    images = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert images > 0, "a tutorial shows its figures"
    print(f"{name}: {elapsed:.1f} s")
