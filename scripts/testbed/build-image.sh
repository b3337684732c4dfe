#!/usr/bin/env bash
# Build (once, then cached) the edgetrain test bed image without any registry:
#   1. debootstrap --variant=minbase bookworm + Open MPI and the project's
#      runtime libraries into a root filesystem,
#   2. tar it (cached as $ETB_DIR/cache/rootfs-TAG.tar),
#   3. `podman import` it as localhost/edgetrain-testbed:TAG.
# TAG is a hash of what goes into the image (suite, packages, RECIPE), so a
# changed recipe builds a new image and an unchanged one is reused. Prints
# the image name on the last line of stdout.
#
#   build-image.sh               build if missing, print the image name
#   build-image.sh --print-name  print the image name, build nothing
#   build-image.sh --check       exit 0 if the image is present, 1 if not
#   build-image.sh --cached      exit 0 if the image or its root file system
#                                tarball is there (then building takes seconds)
#   build-image.sh --node        also build the real-test-bed image
#                                (scripts/testbed/Containerfile, with the
#                                edgetrain binary in it) as localhost/edgetrain-node:TAG
# Environment: EDGETRAIN_TESTBED_DIR, EDGETRAIN_TESTBED_RUN (see podman.sh),
# ETB_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/podman.sh"
REPO=$(cd "$ETB_SCRIPTS/../.." && pwd)

SUITE=bookworm
MIRROR=${ETB_MIRROR:-http://deb.debian.org/debian}
# Runtime of build/edgetrain (Open MPI, parallel HDF5, libyaml, PCRE2,
# OpenBLAS), the test bed's own needs (ip, ping, ps) and, for real test beds
# where mpirun reaches the boxes over ssh, the ssh client and server; the
# sanitizer runtimes so that `make sanitize` builds run inside too.
PKGS=(openmpi-bin libopenmpi3 libhdf5-openmpi-103-1 libyaml-0-2 libpcre2-8-0
      libopenblas0-pthread iproute2 iputils-ping procps
      libasan8 libubsan1
      openssh-client openssh-server)

# Bump RECIPE when the steps below change what goes into the root file system.
RECIPE=1
TAG=$( { echo "$SUITE $RECIPE"; printf '%s\n' "${PKGS[@]}"; } | sha256sum | cut -c1-12)
IMAGE=localhost/edgetrain-testbed:$TAG
CACHE=$ETB_DIR/cache
TARBALL=$CACHE/rootfs-$TAG.tar

mode=build
case "${1:-}" in
  --print-name) echo "$IMAGE"; exit 0 ;;
  --check) "${PODMAN[@]}" image exists "$IMAGE"; exit $? ;;
  --cached) [ -s "$TARBALL" ] || "${PODMAN[@]}" image exists "$IMAGE"; exit $? ;;
  --node) mode=node ;;
  "") ;;
  *) echo "build-image.sh: unknown option '$1'" >&2; exit 2 ;;
esac

mkdir -p "$CACHE" "$ETB_DIR/podman" "$ETB_RUN/podman"
t0=$(date +%s.%N)
if ! "${PODMAN[@]}" image exists "$IMAGE"; then
  if [ ! -s "$TARBALL" ]; then
    for tool in debootstrap podman tar; do
      command -v "$tool" >/dev/null || { echo "build-image.sh: '$tool' is not installed (apt-get install $tool)" >&2; exit 1; }
    done
    ROOT=$CACHE/rootfs-$TAG.tmp
    rm -rf "$ROOT"
    mkdir -p "$CACHE/debs"
    echo "build-image.sh: debootstrap $SUITE into $ROOT (takes minutes; cached afterwards)" >&2
    inc=$(IFS=,; echo "${PKGS[*]}")
    debootstrap --variant=minbase --cache-dir="$CACHE/debs" --include="$inc" \
      "$SUITE" "$ROOT" "$MIRROR" >"$CACHE/debootstrap-$TAG.log" 2>&1 || {
        echo "build-image.sh: debootstrap failed, see $CACHE/debootstrap-$TAG.log" >&2
        tail -n 20 "$CACHE/debootstrap-$TAG.log" >&2; exit 1; }
    # Nothing host-specific or cached in the image.
    rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*
    : >"$ROOT/etc/hostname"
    tar --numeric-owner --xattrs -C "$ROOT" -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
    rm -rf "$ROOT"
  fi
  "${PODMAN[@]}" import --change 'CMD ["sleep", "infinity"]' \
      --message "edgetrain test bed ($SUITE minbase + Open MPI runtime)" \
      "$TARBALL" "$IMAGE" >/dev/null
  t1=$(date +%s.%N)
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
  echo "$secs" >"$CACHE/build-time-$TAG"
  echo "build-image.sh: built $IMAGE in ${secs}s" >&2
  # Older recipes' images and tarballs go (an image still used by a
  # container stays: podman refuses to remove it).
  for old in $("${PODMAN[@]}" images --format '{{.Repository}}:{{.Tag}}' \
                 --filter reference=localhost/edgetrain-testbed); do
    [ "$old" = "$IMAGE" ] || "${PODMAN[@]}" rmi "$old" >/dev/null 2>&1 || true
  done
  for old in "$CACHE"/rootfs-*.tar; do
    [ "$old" = "$TARBALL" ] || rm -f "$old"
  done
fi

if [ "$mode" = node ]; then
  BIN=$REPO/build/edgetrain
  [ -x "$BIN" ] || { echo "build-image.sh: $BIN is missing (run make)" >&2; exit 1; }
  CTX=$ETB_RUN/node-context
  rm -rf "$CTX"; mkdir -p "$CTX"
  cp "$BIN" "$CTX/edgetrain"
  cp "$ETB_SCRIPTS/Containerfile" "$CTX/Containerfile"
  "${PODMAN[@]}" build --network=none --build-arg BASE="$IMAGE" \
      -t "localhost/edgetrain-node:$TAG" -f "$CTX/Containerfile" "$CTX" >&2
  rm -rf "$CTX"
  echo "localhost/edgetrain-node:$TAG"
  exit 0
fi
echo "$IMAGE"
