#!/usr/bin/env bash
# Installs what Phoenix Update needs on Debian 12: the C libraries behind our system-library shims,
# the reference bsdiff/bspatch (interop tests and benchmarks), Python's bsdiff4 (interop tests),
# Chromium (the dashboard is tested in a real headless browser) and the openssl command line (test
# certificates).
# Swift 6 itself is expected on PATH (swift.org toolchain).
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  libbz2-dev zlib1g-dev libzstd-dev liblzma-dev libssl-dev libdivsufsort-dev libxxhash-dev pkg-config \
  bsdiff zstd xdelta3 time bc curl ca-certificates chromium fonts-dejavu-core openssl >/dev/null
# Python's bsdiff4 builds patches for the interop tests; use the python3 that is first on PATH.
if ! python3 -c 'import bsdiff4' 2>/dev/null; then
  if python3 -m pip --version >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check bsdiff4 2>&1 | grep -v "running pip as the 'root' user" || true
  else
    $SUDO apt-get install -y -qq python3-pip >/dev/null
    python3 -m pip install --quiet --break-system-packages bsdiff4
  fi
fi
python3 -c 'import bsdiff4' || { echo "setup: could not install Python's bsdiff4" >&2; exit 1; }
command -v swift >/dev/null || { echo "setup: swift is not on PATH (install a Swift 6 toolchain)" >&2; exit 1; }
echo "setup: system packages ready"
