#!/usr/bin/env bash
# Install the Debian packages needed to run the reference Picky books server
# (bench/picky/start.sh): Ruby, a C toolchain for Picky's extension, the gems
# Picky and its Sinatra app load, puma, and curl for the readiness check.
#
# Idempotent and quiet: does nothing when every package is already installed;
# otherwise installs the missing ones with apt-get (root only).
set -euo pipefail

PACKAGES=(
  ruby ruby-dev build-essential
  ruby-activesupport ruby-multi-json ruby-text ruby-yajl
  ruby-sinatra ruby-rack puma
  curl
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run this script as root)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq "${missing[@]}" >/dev/null
