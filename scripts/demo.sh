#!/usr/bin/env bash
# The main job on an example: build phoenix-diff (release), make a patch between two versions of a
# file, inspect it, apply it, check the result, and compare with Debian's bsdiff on the same pair.
# With PHOENIX_CORPUS set (see ../shared/corpus/make-corpus.sh), it uses the real ruff release pair.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product phoenix-diff >/dev/null
BIN=$(swift build -c release --show-bin-path)/phoenix-diff
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -n "${PHOENIX_CORPUS:-}" ] && [ -f "$PHOENIX_CORPUS/pairs/b-ruff/old" ]; then
  cp "$PHOENIX_CORPUS/pairs/b-ruff/old" "$work/v1"; cp "$PHOENIX_CORPUS/pairs/b-ruff/new" "$work/v2"
  echo "example: ruff 0.17.5 -> 0.17.6 executable (from the corpus)"
else
  # A generated "application binary" and its next version: code-like records, relocated addresses,
  # inserted and removed functions. Deterministic, so everyone sees the same figures.
  python3 - "$work/v1" "$work/v2" <<'PY'
import random, sys
r = random.Random(20261129)
records = [bytes(r.randrange(256) for _ in range(r.randrange(8, 64))) for _ in range(400)]
v1 = bytearray()
while len(v1) < 4_000_000:
    k = r.randrange(4)
    if k == 0: v1 += bytes(r.randrange(256) for _ in range(r.randrange(1, 200)))
    elif k == 1: v1 += r.choice(records)
    elif k == 2: v1 += bytes([r.randrange(256)]) * r.randrange(1, 64)
    else: v1 += bytes(r.randrange(65, 91) for _ in range(r.randrange(1, 32)))
v2 = bytearray(v1)
for _ in range(300):
    at = r.randrange(len(v2))
    k = r.randrange(3)
    if k == 0: v2[at:at] = bytes(r.randrange(256) for _ in range(r.randrange(1, 400)))
    elif k == 1: del v2[at:at + r.randrange(1, 400)]
    else:
        for i in range(at, min(at + 64, len(v2)), 4): v2[i] = (v2[i] + 16) & 255
open(sys.argv[1], "wb").write(v1); open(sys.argv[2], "wb").write(v2)
PY
  echo "example: a generated 4 MB binary and its next version (300 edits)"
fi

echo
echo "\$ phoenix-diff make v1 v2 v1-to-v2.phx"
"$BIN" make "$work/v1" "$work/v2" "$work/v1-to-v2.phx"
echo "\$ phoenix-diff inspect v1-to-v2.phx"
"$BIN" inspect "$work/v1-to-v2.phx"
echo "\$ phoenix-diff apply v1 v1-to-v2.phx v2.out"
"$BIN" apply "$work/v1" "$work/v1-to-v2.phx" "$work/v2.out"
cmp "$work/v2" "$work/v2.out" && echo "v2.out is identical to v2"
echo "\$ phoenix-diff make --format bsdiff v1 v2 v1-to-v2.bsdiff   (classic BSDIFF40)"
"$BIN" make --format bsdiff "$work/v1" "$work/v2" "$work/v1-to-v2.bsdiff"
if command -v bspatch >/dev/null; then
  bspatch "$work/v1" "$work/v2.bspatch" "$work/v1-to-v2.bsdiff" && cmp "$work/v2" "$work/v2.bspatch" \
    && echo "Debian's bspatch applies it: identical"
fi
if command -v bsdiff >/dev/null; then
  start=$(date +%s.%N); bsdiff "$work/v1" "$work/v2" "$work/debian.bsdiff"; end=$(date +%s.%N)
  printf "Debian bsdiff 4.3 on the same pair: %s bytes in %.2f s\n" "$(stat -c %s "$work/debian.bsdiff")" "$(echo "$end - $start" | bc)"
fi
full=$(stat -c %s "$work/v2"); patch=$(stat -c %s "$work/v1-to-v2.phx")
printf "full download: %s bytes; phx patch: %s bytes (%.2f%% of it, %s bytes saved)\n" "$full" "$patch" \
  "$(echo "100 * $patch / $full" | bc -l)" "$((full - patch))"
