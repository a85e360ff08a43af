"""Test-wide settings: 8 simulated CPU devices, headless plots, the repository root as cwd.

The platform and XLA_FLAGS must be set before JAX initializes its backend, hence at import time
here. The CPU platform is pinned so that a GPU/TPU host runs the same 8-device suite as a laptop;
a device count already given in XLA_FLAGS is kept, any other flags there are kept as well. JAX's
"strict" dtype promotion is not enabled suite-wide because optax's own Adam bias correction
(python float ** int32 step) fails under it; float32 inputs are asserted in the tests instead.
"""

import os
from pathlib import Path

os.environ["JAX_PLATFORMS"] = "cpu"
_flags = os.environ.get("XLA_FLAGS", "")
if "--xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = f"{_flags} --xla_force_host_platform_device_count=8".strip()
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _run_from_the_repository_root():
    """Tests name configs as the README does (``configs/quickstart.yaml``, relative to the
    repository root); running them from the root makes ``pytest`` work from any directory."""
    before = Path.cwd()
    os.chdir(ROOT)
    yield
    os.chdir(before)
