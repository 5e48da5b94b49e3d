#!/usr/bin/env bash
# Install every Debian package tlsfront's build, tests and demo need. Idempotent: installs
# only what is missing, and runs `apt-get update` only when something must be installed.
# Usage: scripts/deps.sh [--build-only] [extra-package ...]
#   --build-only: just what building tlsfront needs (the Dockerfile's build stage)
#   extra packages: bench/run.sh passes its own (haproxy, nginx, ...)
set -euo pipefail

BUILD=(build-essential cmake pkg-config libuv1-dev libssl-dev libcjson-dev node-llhttp libhiredis-dev
       libpsl-dev publicsuffix ca-certificates)
TEST=(git openssl curl python3 python3-cryptography pebble procps iproute2 util-linux
      buildah podman runc debootstrap prometheus clang libclang-rt-14-dev haproxy redis-server)
PKGS=("${BUILD[@]}")
if [ "${1:-}" = "--build-only" ]; then
  shift
else
  PKGS+=("${TEST[@]}")
fi
PKGS+=("$@")

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PKGS[@]} packages present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: done"
