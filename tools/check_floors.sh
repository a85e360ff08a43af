#!/usr/bin/env bash
# Check that the dependency floors declared in pyproject.toml are real: install climml into a
# fresh virtual environment with every runtime dependency pinned to its declared lower bound
# (`name>=X` becomes the constraint `name==X`), then run the fast tests there.
#
#   tools/check_floors.sh                 # the default subset below (~15 min on 2 cores)
#   tools/check_floors.sh tests           # the whole fast suite
#
# The default runs a subset (metrics, models, train, config) to keep the check affordable on a
# small machine; it covers the floors that matter most (jax/jaxlib with the native FFI kernel,
# flax NNX, optax, orbax checkpoints, xarray/dask/zarr I/O). The [dev] tools (pytest,
# scikit-learn, ...) resolve to their newest compatible releases: their floors are not pinned.
# Run it on a clean tree (e.g. `git archive HEAD | tar -x -C DIR`): it tests the files as they are.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

python3 - >"$tmp/floors.txt" <<'PY'
import re
import tomllib

with open("pyproject.toml", "rb") as f:
    deps = tomllib.load(f)["project"]["dependencies"]
for dep in deps:
    # "dask[array]>=2024.6" -> "dask==2024.6" (constraints take no extras)
    m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*>=\s*([^,;\s]+)\s*", dep)
    if m is None:
        raise SystemExit(f"check_floors: no '>=' floor to pin in dependency {dep!r}")
    print(f"{m[1]}=={m[3]}")
PY
echo "floors:"; sed 's/^/  /' "$tmp/floors.txt"

python3 -m venv "$tmp/venv"
pip=("$tmp/venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet --upgrade pip
"${pip[@]}" install --quiet -e ".[dev]" --constraint "$tmp/floors.txt"
"${pip[@]}" check
"${pip[@]}" freeze | grep -iE '^(jax|jaxlib|flax|optax|orbax-checkpoint|numpy|scipy|xarray|zarr|dask|pandas)=='

[ "$#" -gt 0 ] || set -- tests/metrics tests/models tests/train tests/test_config.py
set +e
"$tmp/venv/bin/python" -m pytest -m 'not slow' -x -q -p no:cacheprovider "$@"
status=$?
set -e
[ "$status" -ne 5 ] || { echo "check_floors: no tests collected" >&2; exit 1; }
exit "$status"
