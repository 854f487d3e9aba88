#!/usr/bin/env bash
# Build the C++ core and its unit tests with AddressSanitizer + UBSan and run them, then run the
# Python tests that drive the extension hardest (hash, compare, copy, crc, shape diff, bad input,
# the objects the core makes: pickles, zip members, safetensors tensors, the module tree)
# against an ASan build of _core. Usage: tools/sanitize.sh   (takes a few minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
exec 9>/tmp/ckpt-inspector-build.lock
flock 9
cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DINSPECTOR_SANITIZE=ON \
  -DINSPECTOR_TESTS=ON -DINSPECTOR_PYTHON=ON -DINSPECTOR_CUDA=OFF \
  -DPython_EXECUTABLE="$(command -v "$PY")" -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" >/dev/null
cmake --build build/asan -j2
flock -u 9
ctest --test-dir build/asan --output-on-failure
# Python tests against the sanitized extension, from a copy of the package so the tree is untouched.
rm -rf build/asan/pkg && mkdir -p build/asan/pkg && cp -r inspector build/asan/pkg/
rm -f build/asan/pkg/inspector/_core*.so && cp build/asan/_core*.so build/asan/pkg/inspector/
ROOT=$PWD
# Run from the copy: `python -m pytest` puts the working folder first on sys.path.
cd build/asan/pkg && ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" "$PY" -m pytest -q -p no:cacheprovider --rootdir "$ROOT" -c "$ROOT/pyproject.toml" \
  "$ROOT"/tests/test_{xxh3,treehash,hashing,compare,convert,copy,crc32,shapediff,pickle_fast,pickle_fast_records,zip_directory,tree_linear,safetensors_reader,torch_zip,plan_compact}.py
