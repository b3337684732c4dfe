#!/usr/bin/env bash
# bench_step: GPT-2 124M, B=4, T=64, one full training step, 2 threads —
# edgetrain's C step (build/bench/bench_step, OpenBLAS threads = 2) against
# PyTorch's (bench/bench_step_torch.py, torch.set_num_threads(2),
# OMP_WAIT_POLICY=PASSIVE), measured in the same run; prints the ratio.
#
# Both sides use the same OpenBLAS. OpenBLAS 0.3.21 falls back to its generic
# "Prescott" kernels on CPUs newer than it knows (e.g. Xeon model 207), which
# makes every sgemm ~5x slower; then OPENBLAS_CORETYPE is set for both runs
# to the newest kernel set the CPU supports (an explicit OPENBLAS_CORETYPE in
# the environment is kept).
# Environment: BUILD (default build), PY (default /usr/bin/python3),
# STEPS (default 5), THREADS (default 2).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PY=${PY:-/usr/bin/python3}
STEPS=${STEPS:-5}
THREADS=${THREADS:-2}
BIN="$BUILD/bench/bench_step"
if [ ! -x "$BIN" ]; then
  echo "bench_step: $BIN is missing (run make bench)" >&2
  exit 1
fi

if [ -z "${OPENBLAS_CORETYPE:-}" ] && [ "$(EDGETRAIN_BLAS_REEXEC=1 "$BIN" --corename)" = Prescott ]; then
  flags=$(grep -m1 '^flags' /proc/cpuinfo)
  case "$flags" in
    *avx512_bf16*) OPENBLAS_CORETYPE=Cooperlake ;;
    *avx512f*) OPENBLAS_CORETYPE=SkylakeX ;;
    *avx2*) OPENBLAS_CORETYPE=Haswell ;;
  esac
  if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
    export OPENBLAS_CORETYPE
    echo "note: OpenBLAS did not recognise this CPU (generic Prescott kernels);" \
         "using OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE for both runs"
  fi
fi

result() { # file -> ms_per_step value
  sed -n 's/^RESULT ms_per_step=\([0-9.]*\).*/\1/p' "$1" | tail -1
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$BIN" --steps "$STEPS" --threads "$THREADS" | tee "$tmp/c.txt" || exit 1
OMP_WAIT_POLICY=PASSIVE "$PY" bench/bench_step_torch.py --steps "$STEPS" --threads "$THREADS" \
  | tee "$tmp/torch.txt" || exit 1
c=$(result "$tmp/c.txt")
t=$(result "$tmp/torch.txt")
if [ -z "$c" ] || [ -z "$t" ]; then
  echo "bench_step: could not read the results" >&2
  exit 1
fi
awk -v c="$c" -v t="$t" 'BEGIN {
  printf "edgetrain %.1f ms/step, PyTorch %.1f ms/step: ratio C/PyTorch %.3f (target <= 0.35)\n",
         c, t, c / t }'
