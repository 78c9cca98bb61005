#!/bin/sh
# deps.sh — install every system package the project needs, with apt-get.
# Idempotent: quiet when everything is present.  Needs root (or sudo).
set -eu

PACKAGES="build-essential pkg-config libhdf5-dev hdf5-tools hdf5-filter-plugin zlib1g-dev liblz4-dev libcriterion-dev gnuplot-nox
libopenblas-openmp-dev libpcre2-dev python3-pip python3-numpy python3-h5py unzip
libopenmpi-dev openmpi-bin"

missing=""
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    case "$status" in
        *"install ok installed"*) ;;
        *) missing="$missing $pkg" ;;
    esac
done

if [ -z "$missing" ]; then
    exit 0
fi

echo "make deps: installing with apt-get:$missing"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "make deps: installing packages needs root; run as root or install:$missing" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "make deps: done"
