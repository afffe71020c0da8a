#!/usr/bin/env bash
# Build the libcni driver against Debian's libcni (golang-github-appc-cni-dev).
# Usage: tests/libcni-driver/build.sh [output-dir]   (default: target/libcni-driver)
# The binary is <output-dir>/libcni-driver.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-target/libcni-driver}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Debian ships libcni as GOPATH sources; no module download happens.
# GOCACHE/GOFLAGS keep the build self-contained on machines without $HOME.
export GO111MODULE=off
export GOPATH=/usr/share/gocode
export GOCACHE=${GOCACHE:-$out/.gocache}
export GOFLAGS=${GOFLAGS:-}
cd "$here"
go build -o "$out/libcni-driver.tmp" .
mv -f "$out/libcni-driver.tmp" "$out/libcni-driver"
echo "$out/libcni-driver"
