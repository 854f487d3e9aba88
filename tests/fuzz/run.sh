#!/usr/bin/env bash
# Run every fuzz harness (or the ones named) for a bounded time; exit 1 on any finding.
#
#   tests/fuzz/run.sh [-t SECONDS] [-p PYTHON] [HARNESS...]      (HARNESS: st_header, scan, ...)
#
# Each harness starts from a copy of its seed corpus plus its regressions (the committed
# folders are never written to) and runs under libFuzzer (atheris) with -timeout=10 (a hang is a
# finding) and -rss_limit_mb=2048. A crash, a hang, a leak past the limit or a foreign exception
# stops that harness; its input is left as $FUZZ_OUT/crash-HARNESS-* (default: a temp folder),
# to be copied to tests/fuzz/regressions/HARNESS/. Prints one line per harness: execs, seconds.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
seconds=60
python="${PYTHON:-python}"
while getopts "t:p:" opt; do
  case "$opt" in
    t) seconds="$OPTARG" ;;
    p) python="$OPTARG" ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
if [ $# -eq 0 ]; then
  set -- $(cd "$here" && ls fuzz_*.py | sed 's/^fuzz_//; s/\.py$//')
fi
"$python" -c "import atheris" || { echo "run.sh: atheris is not installed for $python" >&2; exit 2; }
if ! (cd / && "$python" -c "import inspector" 2>/dev/null); then
  export PYTHONPATH="$(dirname "$(dirname "$here")")${PYTHONPATH:+:$PYTHONPATH}"
fi
out="${FUZZ_OUT:-$(mktemp -d)}"
mkdir -p "$out"
failed=0
for name in "$@"; do
  work="$out/corpus-$name"
  mkdir -p "$work"
  cp "$here/corpus/$name/"* "$work/"
  [ -d "$here/regressions/$name" ] && cp "$here/regressions/$name/"* "$work/" 2>/dev/null
  log="$out/$name.log"
  start=$(date +%s)
  (cd "$here" && "$python" "fuzz_$name.py" "$work" -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="$out/crash-$name-") >"$log" 2>&1
  rc=$?
  # Coverage is what guides the fuzzer: a harness that imported `inspector` uninstrumented (an
  # editable install's import hook does that) only mutates its seeds blindly. Refuse it.
  if [ "$rc" -eq 0 ] && ! grep -q "INITED cov:" "$log"; then
    echo "$name: no coverage (inspector was not instrumented; use a non-editable install" \
      "or PYTHONPATH to the sources)"
    rc=3
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  echo "$name: rc=$rc execs=${execs:-?} seconds=$(( $(date +%s) - start ))"
  if [ "$rc" -ne 0 ]; then
    failed=1
    tail -n 40 "$log"
    ls "$out"/crash-"$name"-* 2>/dev/null
  fi
done
exit "$failed"
