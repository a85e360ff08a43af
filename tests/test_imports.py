"""What importing costs: parsing a config loads the family it names and nothing heavier.

Each check runs in a fresh interpreter, since this test process has imported everything.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

from climml.models import registry

ROOT = Path(__file__).resolve().parents[1]


def _modules_after(code: str) -> set[str]:
    """``sys.modules`` of a fresh interpreter that ran ``code`` in the repository root."""
    report = "import json, sys; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(json.loads(proc.stdout.splitlines()[-1]))


def test_loading_the_quickstart_config_imports_only_its_model_family():
    loaded = _modules_after("import climml.config; climml.config.load('configs/quickstart.yaml')")
    assert "climml.models.cnn" in loaded  # the config class of `name: cnn` was looked up
    other_families = {f for f in set(registry.FAMILIES.values()) if f != "climml.models.cnn"}
    heavy = {"climml.native", "climml.models._native_lstm", "climml.train", "climml.pipeline"}
    assert not (other_families | heavy) & loaded, sorted((other_families | heavy) & loaded)
    # Flax itself imports a few jax.experimental modules; the config path adds none (the native
    # LSTM's custom_partitioning, orbax's array serialization, ...).
    flax_own = _modules_after("from flax import nnx")
    extra = sorted(m for m in loaded - flax_own if m.startswith(("jax.experimental", "orbax")))
    assert not extra, extra


def test_every_register_call_is_listed_in_the_lazy_family_table():
    """A family missing from ``registry.FAMILIES`` would be unknown to configs."""
    registered = {}
    for path in sorted((ROOT / "climml" / "models").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "register"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                registered[node.args[0].value] = f"climml.models.{path.stem}"
    assert registered  # the scan found the decorators
    assert registered == registry.FAMILIES
    for name, module in registry.FAMILIES.items():
        assert registry.config_class(name).__module__ == module
