#!/usr/bin/env bash
# The test suite under AddressSanitizer (run before each release; a separate configuration, so it is
# not part of CI's one build). Swift Testing only: XCTest's runner trips LeakSanitizer on its own.
set -euo pipefail
cd "$(dirname "$0")/.."
# Leaks are reported too, except the library singletons and toolchain leaks listed in the suppressions.
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan-suppressions.txt:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
swift test --sanitize=address --disable-xctest --scratch-path .build-asan "$@"
