"""Test-wide settings: 8 simulated CPU devices, headless plots, the repository root as cwd.

The platform and XLA_FLAGS must be set before JAX initializes its backend, hence at import time
here. The CPU platform is pinned so that a GPU/TPU host runs the same 8-device suite as a laptop;
a device count already given in XLA_FLAGS is kept, any other flags there are kept as well. JAX's
"strict" dtype promotion is not enabled suite-wide because optax's own Adam bias correction
(python float ** int32 step) fails under it; float32 inputs are asserted in the tests instead.

With pytest-xdist installed (the ``[dev]`` extra), a plain ``pytest`` (or one naming a folder)
runs the tests in parallel processes, one per CPU core up to ``MAX_WORKERS``: most of the suite's
time is XLA compiling, which is largely single-threaded. Each worker imports this file, so each
has its own 8 devices. Named files and tests run in this process, as do ``-n 0`` and
``-p no:xdist``; ``-n N`` and ``--dist`` choose otherwise.
"""

import os
import subprocess
import sys
from pathlib import Path

os.environ["JAX_PLATFORMS"] = "cpu"
_flags = os.environ.get("XLA_FLAGS", "")
if "--xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = f"{_flags} --xla_force_host_platform_device_count=8".strip()
os.environ.setdefault("MPLBACKEND", "Agg")
# The CLI's persistent compilation cache stays off in tests (nothing written to ~/.cache, no
# state shared between tests); tests of the cache name a temporary folder.
os.environ.setdefault("CLIMML_COMPILATION_CACHE", "off")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Each worker is a JAX process with 8 simulated devices and its own compiled functions: more
# than a few cost memory and recompilation without speeding up a suite of this size.
MAX_WORKERS = 4
# Modules whose tests share nothing in-process (each notebook runs in its own Jupyter kernel):
# their tests are handed to the workers one by one; every other module stays on one worker.
_SPREAD_MODULES = {"test_notebooks.py"}


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config):
    """Run in parallel unless the command line chose (``-n``, ``--pdb``) or xdist is absent,
    keeping the groups below together unless ``--dist`` says otherwise. A wrapper, so that the
    choice is made before xdist's own hook turns it into workers."""
    options = config.option
    # hasattr: a worker runs its tests itself
    if config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput"):
        if options.numprocesses is None and not options.usepdb and _names_a_folder(config):
            options.numprocesses = "auto"
            options.maxprocesses = options.maxprocesses or MAX_WORKERS
        if options.numprocesses and options.dist == "no":
            options.dist = "loadgroup"  # the groups of pytest_collection_modifyitems
            # A crashed worker (killed for memory) is not replaced: xdist 3.8's group scheduler
            # fails with an internal error on the replacement; the others finish the run and
            # the test that was running is reported failed.
            if options.maxworkerrestart is None:
                options.maxworkerrestart = "0"
    return (yield)


def _names_a_folder(config) -> bool:
    """Whether the tests to run include a whole folder (a plain ``pytest`` names ``tests/``):
    for single files and tests, starting workers (each importing JAX) costs more than it saves."""
    here = config.invocation_params.dir
    return any((here / arg.split("::")[0]).is_dir() for arg in config.args)


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the groups (--dist loadgroup)
def pytest_collection_modifyitems(items):
    """Keep each module's tests on one worker: module-scoped fixtures (trained models, stores)
    and the functions its tests compile are then made once, not once per worker."""
    for item in items:
        if item.path.name not in _SPREAD_MODULES and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(item.path.relative_to(ROOT).as_posix()))


@pytest.fixture(scope="session", autouse=True)
def _run_from_the_repository_root():
    """Tests name configs as the README does (``configs/quickstart.yaml``, relative to the
    repository root); running them from the root makes ``pytest`` work from any directory."""
    before = Path.cwd()
    os.chdir(ROOT)
    yield
    os.chdir(before)


# --set overrides shrinking configs/quickstart.yaml: TINY runs in seconds on CPU (30 years of
# monthly fields on a 12x24 grid, 8 filters and 8 hidden units, 2 epochs); LONG trains 12 epochs
# on 50 years with a checkpoint every 5 steps, long enough to be interrupted mid-training.
_TINY_QUICKSTART = [
    "data.source_args={n_months: 360, seed: 0, nlat: 12, nlon: 24}",
    "data.splits={train: [1870-01, 1884-12], val: [1885-01, 1889-12], test: [1890-01, 1899-12]}",
    "model.filters=[8]",
    "model.hidden=[8]",
    "train.epochs=2",
    "output.progress=false",
]
_LONG_QUICKSTART = [
    "data.source_args={n_months: 600, seed: 0, nlat: 12, nlon: 24}",
    "data.splits={train: [1870-01, 1899-12], val: [1900-01, 1909-12], test: [1910-01, 1919-12]}",
    "model.filters=[8]",
    "model.hidden=[8]",
    "train.epochs=12",
    "train.patience=null",
    "train.checkpoint_every=5",
    "output.progress=false",
]


@pytest.fixture(scope="session")
def tiny_quickstart() -> list[str]:
    """The ``--set`` overrides of a quickstart run that takes seconds."""
    return list(_TINY_QUICKSTART)


@pytest.fixture
def start_training():
    """``start(workdir, **popen_kw)``: ``climml train`` of the long quickstart in a child process.

    stdout and stderr are text pipes unless ``popen_kw`` says otherwise.
    """

    def start(workdir, **popen_kw) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "climml.cli", "train", "configs/quickstart.yaml",
               "--workdir", str(workdir), "--set", *_LONG_QUICKSTART]  # fmt: skip
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
        return subprocess.Popen(cmd, **{**pipes, **popen_kw})

    return start
