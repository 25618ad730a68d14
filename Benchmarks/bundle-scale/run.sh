#!/usr/bin/env bash
# Scale run for bundles (opt-in, not part of `swift test`): a generated installation of FILES files
# (default 10,000) totalling about TOTAL_MB megabytes (default 2048), a next version with 1% of the
# files edited, 20 added and 20 removed; then make, apply in place, rollback, and a full install.
# Reports wall time and peak RSS (/usr/bin/time) of each step: apply's memory stays bounded by the
# largest single file plus fixed buffers, whatever the tree's size.
#   Benchmarks/bundle-scale/run.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
FILES=${FILES:-10000}
TOTAL_MB=${TOTAL_MB:-2048}
work=${1:-$(mktemp -d /var/tmp/phoenix-scale.XXXXXX)}
swift build -c release --static-swift-stdlib --product phoenix-diff >/dev/null
BIN=$(swift build -c release --static-swift-stdlib --show-bin-path)/phoenix-diff
python3 - "$work" "$FILES" "$TOTAL_MB" <<'PY'
import os, random, sys
work, files, total_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = random.Random(42)
avg = total_mb * 1024 * 1024 // files
old, new = os.path.join(work, "v1"), os.path.join(work, "v2")
if os.path.exists(os.path.join(work, ".done")):
    sys.exit(0)
for i in range(files):
    d = f"pkg{i % 97:02d}/mod{i % 13}"
    size = max(16, int(r.expovariate(1 / avg)))
    blob = r.randbytes(size)
    for root in (old, new):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    path = f"{d}/file{i:05d}.bin"
    with open(os.path.join(old, path), "wb") as f:
        f.write(blob)
    if i % 500 == 7:
        continue                                   # removed in v2
    if i % 100 == 3:                               # edited in v2
        b = bytearray(blob)
        for _ in range(10):
            at = r.randrange(len(b))
            b[at:at + 8] = r.randbytes(8)
        blob = bytes(b)
    with open(os.path.join(new, path), "wb") as f:
        f.write(blob)
for i in range(20):
    with open(os.path.join(new, f"pkg00/added{i}.bin"), "wb") as f:
        f.write(r.randbytes(avg))
open(os.path.join(work, ".done"), "w").close()
PY
t() { /usr/bin/time -f "%e s, peak RSS %M KB" "$@"; }
echo "tree: $(find "$work/v1" -type f | wc -l) files, $(du -sm "$work/v1" | cut -f1) MB"
rm -rf "$work/app" "$work/.app.phoenix" "$work/fresh" "$work/.fresh.phoenix"
cp -a "$work/v1" "$work/app"
echo "make (delta):"; t "$BIN" make --quiet "$work/v1" "$work/v2" "$work/delta.bundle"
echo "  bundle: $(stat -c %s "$work/delta.bundle") bytes"
echo "apply in place:"; t "$BIN" apply --quiet "$work/app" "$work/delta.bundle"
echo "rollback:"; t "$BIN" rollback --quiet "$work/app"
echo "make --full --level 3:"; t "$BIN" make --quiet --full --level 3 "$work/v2" "$work/full.bundle"
echo "  bundle: $(stat -c %s "$work/full.bundle") bytes"
echo "apply full (fresh install):"; t "$BIN" apply --quiet "$work/fresh" "$work/full.bundle"
echo "work directory: $work (remove it when done)"
