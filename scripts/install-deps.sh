#!/usr/bin/env bash
# Install the Debian packages edgetrain needs. Idempotent: installs only what is
# missing, runs `apt-get update` first when something is. Needs root (or sudo).
#   scripts/install-deps.sh            build, tests, demo
#   scripts/install-deps.sh --testbed  also the container test bed (podman, runc,
#                                      debootstrap...): see docs/TESTBED.md
set -euo pipefail
testbed=0
[ "${1:-}" = --testbed ] && testbed=1

pkgs=(build-essential pkg-config
      openmpi-bin libopenmpi-dev
      libopenblas-dev
      libyaml-dev
      libhdf5-openmpi-dev hdf5-tools
      check libsubunit-dev
      libpcre2-dev
      gnuplot-nox
      python3 python3-torch python3-h5py python3-numpy
      fortunes
      )

if [ $testbed = 1 ]; then
  pkgs+=(podman runc catatonit debootstrap iputils-ping iproute2)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# npm (for GPT-2's encoder files): only when no npm is on PATH already; some
# images ship nodejs with its own npm, which conflicts with Debian's package.
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
