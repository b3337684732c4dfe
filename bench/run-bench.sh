#!/usr/bin/env bash
# make bench: every benchmark in turn. Each prints its own figures, as ratios
# measured within one run where a peer exists (e.g. PyTorch at its best setting).
# A benchmark is a build/bench/bench_* binary, or a bench/bench_*.sh script
# (which may drive a binary and a Python peer).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD EDGETRAIN="$PWD/$BUILD/edgetrain" PY=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
rc=0
for s in bench/bench_*.sh; do
  [ -f "$s" ] || continue
  echo "== $(basename "$s" .sh)"
  bash "$s" || rc=1
done
for b in "$BUILD"/bench/bench_*; do
  [ -x "$b" ] || continue
  name=$(basename "$b")
  [ -f "bench/$name.sh" ] && continue   # driven by its script above
  echo "== $name"
  "$b" || rc=1
done
exit $rc
