#!/usr/bin/env bash
# The main job on an example, end to end:
#   1. a file patch: phoenix-diff make / inspect / apply on two versions of a binary (and Debian's
#      bspatch applying our BSDIFF40 output);
#   2. the update pipeline: publish two versions of an application bundle to phoenix-server (which
#      makes and verifies the delta), serve them on 127.0.0.1, check from the installed version, download
#      the offered delta, verify it against the signed manifest's hash, update the installed copy in
#      place, and show the bytes saved against a full download.
# With PHOENIX_CORPUS set (see ../shared/corpus/make-corpus.sh), it uses real releases: the ruff
# executable pair and the Django 5.2.18 -> 5.2.19 trees.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "building phoenix-diff and phoenix-server (release)..."
swift build -c release --product phoenix-diff >/dev/null
swift build -c release --product phoenix-server >/dev/null
BIN=$(swift build -c release --show-bin-path)
work=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# ---------------------------------------------------------------- 1. a file patch
if [ -n "${PHOENIX_CORPUS:-}" ] && [ -f "$PHOENIX_CORPUS/pairs/b-ruff/old" ]; then
  cp "$PHOENIX_CORPUS/pairs/b-ruff/old" "$work/v1"; cp "$PHOENIX_CORPUS/pairs/b-ruff/new" "$work/v2"
  echo "== 1. file patch: ruff 0.17.5 -> 0.17.6 executable (from the corpus)"
else
  python3 scripts/example-data.py file "$work/v1" "$work/v2"
  echo "== 1. file patch: a generated 4 MB binary and its next version (300 edits)"
fi
echo "\$ phoenix-diff make v1 v2 v1-to-v2.phx"
"$BIN/phoenix-diff" make "$work/v1" "$work/v2" "$work/v1-to-v2.phx"
echo "\$ phoenix-diff apply v1 v1-to-v2.phx v2.out"
"$BIN/phoenix-diff" apply "$work/v1" "$work/v1-to-v2.phx" "$work/v2.out"
cmp "$work/v2" "$work/v2.out" && echo "v2.out is identical to v2"
"$BIN/phoenix-diff" make --quiet --format bsdiff "$work/v1" "$work/v2" "$work/v1-to-v2.bsdiff"
if command -v bspatch >/dev/null; then
  bspatch "$work/v1" "$work/v2.bspatch" "$work/v1-to-v2.bsdiff" && cmp "$work/v2" "$work/v2.bspatch" \
    && echo "our --format bsdiff patch ($(stat -c %s "$work/v1-to-v2.bsdiff") bytes) applies with Debian's bspatch"
fi

# ---------------------------------------------------------------- 2. the update pipeline
echo
if [ -n "${PHOENIX_CORPUS:-}" ] && [ -d "$PHOENIX_CORPUS/pairs/d-django/old" ]; then
  cp -a "$PHOENIX_CORPUS/pairs/d-django/old" "$work/app-1.0.0"; cp -a "$PHOENIX_CORPUS/pairs/d-django/new" "$work/app-1.1.0"
  echo "== 2. update pipeline: the Django 5.2.18 tree as app 1.0.0, 5.2.19 as 1.1.0 (from the corpus)"
else
  python3 scripts/example-data.py tree "$work/app-1.0.0" "$work/app-1.1.0"
  echo "== 2. update pipeline: a generated application bundle, 1.0.0 -> 1.1.0"
fi
S="$BIN/phoenix-server"
echo "\$ phoenix-server keygen --out signing.pem"
"$S" keygen --out "$work/signing.pem"
for v in 1.0.0 1.1.0; do
  echo "\$ phoenix-server publish --platform demo --version $v app-$v"
  "$S" publish --data "$work/data" --key "$work/signing.pem" --platform demo --version "$v" "$work/app-$v"
done
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$S" serve --data "$work/data" --key "$work/signing.pem" --port "$port" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
echo "phoenix-server is serving on http://127.0.0.1:$port"

cp -a "$work/app-1.0.0" "$work/installed"     # the user's installed copy, at 1.0.0
echo "\$ curl '.../api/version/check?current_version=1.0.0&platform=demo'"
curl -sf "http://127.0.0.1:$port/api/version/check?current_version=1.0.0&platform=demo" >"$work/check.json"
read -r kind latest url size sha < <(python3 - "$work/check.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
print(c["kind"], c["latest_version"], c["download_url"], c["size"], c["sha256"])
PY
)
echo "update available: $latest as a $kind of $size bytes"
curl -sf -o "$work/update.bundle" "http://127.0.0.1:$port$url"
echo "$sha  $work/update.bundle" | sha256sum -c --quiet && echo "downloaded package matches the signed SHA-256"
echo "\$ phoenix-diff apply installed update.bundle"
"$BIN/phoenix-diff" apply "$work/installed" "$work/update.bundle"
diff -r "$work/installed" "$work/app-1.1.0" >/dev/null && echo "the installed copy is now exactly 1.1.0 (previous version kept for rollback)"
full=$(curl -sfI "http://127.0.0.1:$port/api/version/download?version=1.1.0&platform=demo" | tr -d '\r' | awk 'tolower($1)=="content-length:"{print $2}')
printf "\nfull download: %s bytes; delta: %s bytes; saved %s bytes (%.1f%%)\n" "$full" "$size" "$((full - size))" \
  "$(echo "100 * ($full - $size) / $full" | bc -l)"
