#!/usr/bin/env bash
# The test suite under AddressSanitizer (run before each release; a separate configuration, so it is
# not part of CI's one build). Swift Testing only: XCTest's runner trips LeakSanitizer on its own.
set -euo pipefail
cd "$(dirname "$0")/.."
swift test --sanitize=address --disable-xctest --scratch-path .build-asan "$@"
