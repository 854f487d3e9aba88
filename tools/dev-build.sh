#!/usr/bin/env bash
# Development build: compile inspector/_core in build/dev and copy it next to the sources, so that
# `PYTHONPATH=. python -m pytest` runs against the tree as it is. Builds are serialised with a lock
# (the dev machine has 2 cores). Extra arguments go to CMake configure (e.g. -DINSPECTOR_SANITIZE=ON).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
BUILD=${BUILD_DIR:-build/dev}
exec 9>/tmp/ckpt-inspector-build.lock
flock 9
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release} -DINSPECTOR_PYTHON=ON \
  -DINSPECTOR_CUDA=${INSPECTOR_CUDA:-OFF} \
  -DPython_EXECUTABLE="$(command -v "$PY")" -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" "$@" >/dev/null
cmake --build "$BUILD" -j2
# Replace by rename, never in place: a running Python that has the old module mapped would die
# of SIGBUS if its pages changed under it.
for so in "$BUILD"/_core*.so; do
  cp "$so" "inspector/.$(basename "$so").tmp" && mv -f "inspector/.$(basename "$so").tmp" "inspector/$(basename "$so")"
done
echo "built $(ls inspector/_core*.so)"
