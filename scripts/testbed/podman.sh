# Sourced by the test bed's shell scripts: the podman command line that
# `edgetrain testbed` uses (orchestrator/testbed.c builds the same argv), so
# that scripts and the CLI see the same images and containers.
#   EDGETRAIN_TESTBED_DIR  persistent cache and podman storage (default /var/lib/edgetrain-testbed)
#   EDGETRAIN_TESTBED_RUN  runtime state, cleared at reboot (default /run/edgetrain-testbed)
ETB_DIR=${EDGETRAIN_TESTBED_DIR:-/var/lib/edgetrain-testbed}
ETB_RUN=${EDGETRAIN_TESTBED_RUN:-/run/edgetrain-testbed}
ETB_SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export CONTAINERS_CONF="$ETB_SCRIPTS/containers.conf"
PODMAN=(podman --root "$ETB_DIR/podman/root" --runroot "$ETB_RUN/podman/runroot"
        --tmpdir "$ETB_RUN/podman/tmp" --storage-driver overlay)
