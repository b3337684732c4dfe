#!/usr/bin/env bash
# make demo: prepare the fortunes corpus (Debian package `fortunes`) with the
# byte tokenizer, then train configs/demo.yaml: four heterogeneous emulated
# edge servers on this machine, a small GPT-2, pipeline + tensor parallelism,
# to its validation target. Prints the time-to-accuracy summary at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
mkdir -p data
if [ ! -s data/fortunes.h5 ]; then
  ./edgetrain prepare-data /usr/share/games/fortunes -o data/fortunes.h5 --tokenizer byte
fi
exec ./edgetrain run configs/demo.yaml "$@"
