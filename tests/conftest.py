"""Test-wide settings: 8 simulated CPU devices and headless plots.

XLA_FLAGS must be set before JAX initializes its backend, hence at import time here. JAX's
"strict" dtype promotion is not enabled suite-wide because optax's own Adam bias correction
(python float ** int32 step) fails under it; float32 inputs are asserted in the tests instead.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


@pytest.fixture
def workdir(tmp_path):
    """A fresh run directory."""
    return tmp_path / "run"
