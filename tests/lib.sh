# Sourced by the MPI script tests: the binary, Python, Open MPI's settings
# for this host (root, oversubscription, ranks that yield instead of
# spinning, one BLAS thread per rank), a scratch directory removed on exit,
# and fail(). Under ASan, allocation stacks are unwound fully, so that Open
# MPI's own process-lifetime allocations (made in components built without
# frame pointers) reach the libmpi frames that tests/lsan.supp suppresses.
set -uo pipefail
ET=${EDGETRAIN:-$PWD/build/edgetrain}
PY=${PY:-/usr/bin/python3}
REF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ref
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_mpi_yield_when_idle=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=1
[ "${SANITIZE:-0}" = 1 ] && export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# The fortunes corpus, byte tokenizer, as $T/f.h5.
fortunes_h5() {
  "$ET" prepare-data /usr/share/games/fortunes -o "$T/f.h5" --tokenizer byte >/dev/null ||
    fail "prepare-data"
}
