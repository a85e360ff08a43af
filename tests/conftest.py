"""Test-wide settings: 8 simulated CPU devices, strict dtype promotion, headless plots.

XLA_FLAGS must be set before JAX initializes its backend, hence at import time here.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def workdir(tmp_path):
    """A fresh run directory."""
    return tmp_path / "run"
