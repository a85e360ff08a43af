"""The training progress bar: resumed position, and no widget warning without ipywidgets."""

import importlib
import sys
import warnings

import tqdm as tqdm_pkg

from climml.train import progress


def test_bar_starts_where_a_resumed_run_stands():
    bar = progress.step_bar(epochs=3, steps_per_epoch=10, epoch=1, batch=4, enabled=False)
    assert (bar.total, bar.n) == (30, 14)
    bar = progress.step_bar(epochs=3, steps_per_epoch=10, epoch=5, batch=0, enabled=False)
    assert bar.n == 30  # a finished run's position never exceeds the total


def test_text_bar_without_ipywidgets(monkeypatch):
    # Inside a notebook kernel without ipywidgets, tqdm.auto warns "IProgress not found" on
    # every bar; climml chooses the text bar itself there.
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    reloaded = importlib.reload(progress)
    try:
        assert reloaded.tqdm is tqdm_pkg.std.tqdm
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            reloaded.step_bar(epochs=1, steps_per_epoch=2, epoch=0, batch=0, enabled=True).close()
    finally:
        monkeypatch.undo()
        importlib.reload(progress)
