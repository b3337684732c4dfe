#!/usr/bin/env bash
# Runs every test of edgetrain and ends with one line "N passed, N failed".
#   serial Check suites   $BUILD/tests/test_*   (CK_FORK: crash isolation, timeouts)
#   MPI integration tests $BUILD/tests/mpi_*    (under mpirun --timeout, CK_NOFORK)
#   script tests          tests/t_*.sh          (CLI behaviour, PyTorch parity, ...)
# Environment: BUILD (default build), SANITIZE=1 for the ASan/UBSan build,
# ONLY=pattern to run a subset.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD EDGETRAIN="$PWD/$BUILD/edgetrain"
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_mpi_yield_when_idle=1 OMPI_MCA_rmaps_base_oversubscribe=1
if [ "${SANITIZE:-0}" = 1 ]; then
  # Open MPI and OpenBLAS keep some allocations for the process lifetime.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:fast_unwind_on_malloc=0}
  export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fi
PY=/usr/bin/python3
export PY

pass=0; fail=0; failed=()
run() { # name, command...
  local name=$1; shift
  if [ -n "${ONLY:-}" ] && [[ $name != *$ONLY* ]]; then return; fi
  local t0=$SECONDS
  if "$@" >"$BUILD/tests/$name.log" 2>&1; then
    pass=$((pass+1)); echo "PASS $name ($((SECONDS-t0))s)"
  else
    fail=$((fail+1)); failed+=("$name"); echo "FAIL $name ($((SECONDS-t0))s)"
    tail -n 30 "$BUILD/tests/$name.log" | sed 's/^/    /'
  fi
}
mkdir -p "$BUILD/tests"

for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  run "$(basename "$t")" env CK_FORK=yes CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-120} "$t"
done
for t in "$BUILD"/tests/mpi_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  np=$(sed -n 's|^/\* *mpi-np: *\([0-9]*\).*|\1|p' "tests/$name.c" | head -1)
  run "$name" env CK_FORK=no mpirun --oversubscribe --timeout 300 -np "${np:-2}" "$t"
done
for t in tests/t_*.sh; do
  [ -f "$t" ] || continue
  run "$(basename "$t" .sh)" bash "$t"
done

echo
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
