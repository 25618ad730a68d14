#!/usr/bin/env bash
# The main job on an example, end to end:
#   1. a file patch: phoenix-diff make / inspect / apply on two versions of a binary (and Debian's
#      bspatch applying our BSDIFF40 output);
#   2. the update pipeline: publish two versions of an application bundle to phoenix-server (which
#      makes and verifies the delta), serve them over HTTPS on 127.0.0.1, and let phoenix-update check from the
#      installed version, verify the signed manifest, download the delta, verify it, update the installed
#      copy in place and confirm; then show the bytes saved against a full download.
# With PHOENIX_CORPUS set (see ../shared/corpus/make-corpus.sh), it uses real releases: the ruff
# executable pair and the Django 5.2.18 -> 5.2.19 trees.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "building phoenix-diff, phoenix-server and phoenix-update (release; the first build takes a few minutes)..."
for product in phoenix-diff phoenix-server phoenix-update; do
  if ! swift build -c release --static-swift-stdlib --product "$product" >/tmp/phoenix-demo-build.log 2>&1; then
    grep -E "error" /tmp/phoenix-demo-build.log | head -20 >&2
    echo "build of $product failed (full log: /tmp/phoenix-demo-build.log)" >&2
    exit 1
  fi
done
BIN=$(swift build -c release --static-swift-stdlib --show-bin-path)
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
U() { "$BIN/phoenix-update" "$@" --config "$work/client/config.json"; }
echo "\$ phoenix-server keygen --out signing.pem"
pub=$("$S" keygen --out "$work/signing.pem" | awk '/public key/ {print $3}')
echo "public key: $pub"
for v in 1.0.0 1.1.0; do
  echo "\$ phoenix-server publish --platform demo --version $v app-$v"
  "$S" publish --data "$work/data" --key "$work/signing.pem" --platform demo --version "$v" "$work/app-$v"
done
# 1.1.0 starts a phased rollout (10% of clients, then 25%, 50%, 100% a day apart); this one-client demo
# takes it to everyone by hand.
echo "\$ phoenix-server rollout 1.1.0 --platform demo set 100"
"$S" rollout --data "$work/data" --platform demo 1.1.0 set 100
# Update traffic is HTTPS only: a throwaway CA and a certificate for 127.0.0.1 (a real deployment uses
# its own certificate; clients then need no ca_file).
mkdir -p "$work/tls"
(cd "$work/tls"
 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 \
   -subj "/CN=Phoenix demo CA" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign >/dev/null 2>&1
 openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 >/dev/null 2>&1
 printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
 openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.pem >/dev/null 2>&1)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "\$ phoenix-server serve --tls-cert server.pem --tls-key server.key ..."
"$S" serve --data "$work/data" --key "$work/signing.pem" --port "$port" --tls-cert "$work/tls/server.pem" \
  --tls-key "$work/tls/server.key" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 50); do curl -sf --cacert "$work/tls/ca.pem" "https://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
echo "phoenix-server is serving on https://127.0.0.1:$port"

cp -a "$work/app-1.0.0" "$work/installed"     # the user's installed copy, at 1.0.0
echo "\$ phoenix-update settings set ...       (server_url, ca_file, public_key, platform, install_dir, current_version)"
U settings set server_url "https://127.0.0.1:$port" >/dev/null
U settings set ca_file "$work/tls/ca.pem" >/dev/null
U settings set public_key "$pub" >/dev/null
U settings set platform demo >/dev/null
U settings set install_dir "$work/installed" >/dev/null
U settings set current_version 1.0.0 >/dev/null
echo "\$ phoenix-update check"
U check
echo "\$ phoenix-update install --yes"
U install --yes --json >"$work/install.json"
U status | head -2
echo "\$ phoenix-update confirm"
U confirm
diff -r "$work/installed" "$work/app-1.1.0" >/dev/null && echo "the installed copy is now exactly 1.1.0 (the previous version is kept for rollback)"
python3 - "$work/install.json" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
full, got = r["fullSize"], r["downloadedBytes"]
print(f"\nupdated {r['previousVersion']} -> {r['version']} by {r['kind']}: downloaded {got:,} bytes instead of {full:,} "
      f"for the full package: {full - got:,} bytes saved ({100 * (full - got) / full:.1f}%)")
PY
