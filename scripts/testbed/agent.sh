#!/bin/sh
# plm_rsh_agent of the edgetrain test bed: mpirun (in the launcher namespace)
# starts its daemons on "host" HOST with `agent.sh HOST COMMAND...`, as it
# would with ssh; here HOST is a server name and the daemon runs in that
# server's container through `podman exec`.
#
# The environment comes from `edgetrain testbed mpirun` / `run --testbed`
# (orchestrator/testbed.c, et_testbed_launch_argv):
#   ETB_CTR_PREFIX       container name prefix (etb-TESTBED-)
#   ETB_PODMAN_ROOT, ETB_PODMAN_RUNROOT, ETB_PODMAN_TMPDIR, CONTAINERS_CONF
# This file is bind-mounted read-only at the same path into every container:
# Open MPI's daemons look for the agent too.
set -eu
if [ $# -lt 2 ]; then
  echo "agent.sh: usage: agent.sh HOST COMMAND..." >&2
  exit 2
fi
host=$1
shift
exec podman --root "$ETB_PODMAN_ROOT" --runroot "$ETB_PODMAN_RUNROOT" \
  --tmpdir "$ETB_PODMAN_TMPDIR" --storage-driver overlay \
  exec "$ETB_CTR_PREFIX$host" sh -c "$*"
