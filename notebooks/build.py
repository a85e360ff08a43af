"""Build the tutorial notebooks (``notebooks/*.ipynb``) from their sources in ``notebooks/src/``.

Each source is a plain Python file in the "percent" format that Jupytext, VS Code and Spyder
read: ``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell whose lines are
commented with ``# ``. The ``.ipynb`` files are written without outputs, so that git diffs stay
readable; ``tests/test_notebooks.py`` fails when a notebook differs from its source.

    python notebooks/build.py            # rewrite every notebook
    python notebooks/build.py --check    # exit 1 if any notebook is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "src"


def cells(text: str) -> list[nbformat.NotebookNode]:
    """Split a percent-format source into notebook cells (code and markdown, in order)."""
    out: list[nbformat.NotebookNode] = []
    kind, lines = None, []

    def flush() -> None:
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(
                line[2:] if line.startswith("# ") else line.lstrip("#")
                for line in body.splitlines()
            )
            out.append(nbformat.v4.new_markdown_cell(body))
        elif kind == "code" and body:
            out.append(nbformat.v4.new_code_cell(body))

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        elif kind is not None:
            lines.append(line)
    flush()
    return out


def build(source: Path) -> nbformat.NotebookNode:
    """The notebook (outputs empty, ids derived from the position) for one source file."""
    nb = nbformat.v4.new_notebook()
    nb.cells = cells(source.read_text())
    for i, cell in enumerate(nb.cells):
        cell.id = f"{source.stem[:2]}-{i:03d}"  # stable ids: rebuilding changes nothing
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    return nb


def target(source: Path) -> Path:
    return HERE / f"{source.stem}.ipynb"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale notebooks")
    args = parser.parse_args(argv)
    stale = []
    for source in sorted(SOURCES.glob("[0-9][0-9]_*.py")):
        text = nbformat.writes(build(source)) + "\n"
        path = target(source)
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path.name)
        if not args.check:
            path.write_text(text)
    if args.check and stale:
        print("out of date (run python notebooks/build.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
