#!/bin/sh
# The base image of deploy/Dockerfile and deploy/orthanc.Dockerfile, made here
# from Debian's mirror (no image registry needed): debootstrap of bookworm with
# Python 3.11, imported into podman. Skipped when the image already exists.
#   deploy/base-image.sh [IMAGE] [MIRROR]
set -eu
image=${1:-localhost/fedward-base:bookworm}
mirror=${2:-http://deb.debian.org/debian}
if podman image exists "$image"; then
  echo "$image exists"
  exit 0
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv bookworm "$root/rootfs" "$mirror"
rm -rf "$root/rootfs/var/cache/apt/archives/"*.deb "$root/rootfs/var/lib/apt/lists/"*
tar -C "$root/rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$image"
echo "$image imported"
