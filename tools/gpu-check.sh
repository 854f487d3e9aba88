#!/usr/bin/env bash
# The checks that need a GPU, as one script for a lent GPU machine (see docs/development.md):
# build the core with the CUDA kernels, run the CUDA and hashing tests, the CUDA benchmark, and
# (with atheris available) every fuzz harness in parallel on the machine's cores.
#
#   tools/gpu-check.sh [FUZZ_SECONDS]      (default 240; 0 skips fuzzing)
#
# Results go to $OUT (default ./gpu-check-out): build.log, tests.log, bench_cuda.md, fuzz.txt
# and any fuzz crash inputs. Exit status: non-zero when the build, a test or a harness failed.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-check-out}"
mkdir -p "$out"
fuzz_seconds="${1:-240}"
py="${PYTHON:-python3}"
status=0
nvidia-smi -L || true
"$py" --version

INSPECTOR_CUDA=ON PYTHON="$py" BUILD_DIR=build/gpu tools/dev-build.sh >"$out/build.log" 2>&1 \
  || { tail -40 "$out/build.log"; exit 1; }
"$py" -c "from inspector._native import core; assert core.has_cuda, 'built without CUDA'" || exit 1

fuzz_pids=()
if [ "$fuzz_seconds" -gt 0 ] && "$py" -c "import atheris" 2>/dev/null; then
  # One process per harness; the slowest harnesses get a second one (their own corpus copy).
  for name in $(cd tests/fuzz && ls fuzz_*.py | sed 's/^fuzz_//; s/\.py$//') scan open_nemo \
      open_torch_zip open_pickle; do
    i=0; while ! mkdir "/tmp/fz-$name-$i" 2>/dev/null; do i=$((i + 1)); done
    FUZZ_OUT="/tmp/fz-$name-$i" tests/fuzz/run.sh -p "$py" -t "$fuzz_seconds" "$name" \
      >"/tmp/fz-$name-$i.txt" 2>&1 &
    fuzz_pids+=($!)
  done
fi

"$py" -m pytest -q -p no:cacheprovider tests/test_cuda_hash.py tests/test_hashing.py \
  tests/test_treehash.py tests/test_xxh3.py >"$out/tests.log" 2>&1 || status=1
tail -5 "$out/tests.log"
PYTHONPATH=. "$py" bench/bench_hash_cuda.py --gb 4 >"$out/bench_cuda.md" 2>&1 || status=1
cat "$out/bench_cuda.md"

for pid in "${fuzz_pids[@]}"; do wait "$pid" || status=1; done
if [ "${#fuzz_pids[@]}" -gt 0 ]; then
  grep -hE "^[a-z_]+: " /tmp/fz-*.txt | sort >"$out/fuzz.txt"
  cat "$out/fuzz.txt"
  for f in /tmp/fz-*/crash-*; do [ -e "$f" ] && cp "$f" "$out/" && status=1; done
fi
exit "$status"
