#!/usr/bin/env bash
# Soak run for phoenix-server (opt-in, a few minutes): wrk drives checks and downloads at 256
# connections in all while new releases are published into the same data directory every few
# seconds. Afterwards it reports errors, p99 latencies, the server's RSS at the start and the end, and
# whether the catalog is consistent (SQLite integrity check, every release with its rollout, package
# and tree, no delta job left running). Writes Benchmarks/results/soak.md.
#   Benchmarks/soak/run.sh [SECONDS]       (default 300)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-300}
command -v wrk >/dev/null || { SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo; $SUDO apt-get install -y -qq wrk >/dev/null; }
swift build -c release --static-swift-stdlib --product phoenix-server >/dev/null
BIN=$(swift build -c release --static-swift-stdlib --show-bin-path)
S="$BIN/phoenix-server"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

python3 scripts/example-data.py tree "$work/a" "$work/b"
"$S" keygen --out "$work/key.pem" >/dev/null
"$S" publish --data "$work/data" --key "$work/key.pem" --platform soak --version 1.0.0 "$work/a" >/dev/null
"$S" publish --data "$work/data" --key "$work/key.pem" --platform soak --version 1.1.0 --stages 100 "$work/b" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$S" serve --data "$work/data" --key "$work/key.pem" --port "$port" --admin-token soak >"$work/server.log" 2>&1 &
server=$!
pids+=("$server")
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$server/status"; }
# Warm up, then take the starting RSS.
wrk -t1 -c32 -d5s "http://127.0.0.1:$port/api/version/check?current_version=1.0.0&platform=soak" >/dev/null
rss_start=$(rss)

# Clients ask with random ids (so the rollout buckets and the check cache see many clients).
cat >"$work/check.lua" <<'LUA'
math.randomseed(os.time())
request = function()
  local v = ({"1.0.0", "1.1.0"})[math.random(2)]
  return wrk.format("GET", "/api/version/check?current_version=" .. v .. "&platform=soak&client_id=c" .. math.random(100000))
end
LUA
wrk -t1 -c224 -d"${secs}s" --latency -s "$work/check.lua" "http://127.0.0.1:$port" >"$work/wrk-check.txt" 2>&1 &
wrk_check=$!
wrk -t1 -c32 -d"${secs}s" --latency "http://127.0.0.1:$port/api/version/download?version=1.1.0&platform=soak&from=1.0.0" \
  >"$work/wrk-download.txt" 2>&1 &
wrk_download=$!

# Meanwhile: a new release every few seconds (each makes deltas from the previous five).
published=0
failed=0
end=$((SECONDS + secs - 15))
v=2
while [ $SECONDS -lt $end ]; do
  python3 - "$work/a" "$work/rel" "$v" <<'PY'
import os, shutil, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
shutil.rmtree(dst, ignore_errors=True)
shutil.copytree(src, dst, symlinks=True)
with open(os.path.join(dst, "VERSION"), "w") as f:
    f.write(f"1.{n}.0\n")
with open(os.path.join(dst, "build-notes.txt"), "w") as f:
    f.write(("release %d\n" % n) * (100 + n))
PY
  if "$S" publish --data "$work/data" --key "$work/key.pem" --platform soak --version "1.$v.0" --stages 100 --background "$work/rel" \
       >/dev/null 2>>"$work/publish.log"; then
    published=$((published + 1))
  else
    failed=$((failed + 1))
  fi
  v=$((v + 1))
  sleep 5
done
wait "$wrk_check" "$wrk_download"
sleep 2
rss_end=$(rss)
# Let the server finish the queued delta jobs, then check the catalog.
for _ in $(seq 120); do
  running=$("$S" status --data "$work/data" --json | python3 -c 'import json,sys; print(sum(1 for r in json.load(sys.stdin) if r.get("state") in ("pending","running")))')
  [ "$running" = 0 ] && break
  sleep 1
done
sleep 12   # one rollout/job tick after the last job, so its memory has been handed back
rss_drained=$(rss)
consistency=$(python3 - "$work/data" <<'PY'
import os, sqlite3, sys
data = sys.argv[1]
db = sqlite3.connect(os.path.join(data, "catalog.sqlite"))
problems = []
if db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
    problems.append("integrity_check failed")
releases = db.execute("SELECT platform, version, fullSHA256 FROM release").fetchall()
for platform, version, sha in releases:
    if not db.execute("SELECT 1 FROM rollout WHERE platform=? AND version=?", (platform, version)).fetchone():
        problems.append(f"{version}: no rollout")
    if not os.path.exists(os.path.join(data, "packages", sha[:2], sha)) and not any(
            sha in files for _, _, files in os.walk(os.path.join(data, "packages"))):
        problems.append(f"{version}: package missing")
    if not os.path.isdir(os.path.join(data, "trees", platform, version)):
        problems.append(f"{version}: tree missing")
for state, n in db.execute("SELECT state, COUNT(*) FROM delta GROUP BY state"):
    if state in ("pending", "running"):
        problems.append(f"{n} delta jobs still {state}")
ready = db.execute("SELECT COUNT(*) FROM delta WHERE state='ready'").fetchone()[0]
print(f"{len(releases)} releases, {ready} ready deltas, " + ("consistent" if not problems else "PROBLEMS: " + "; ".join(problems)))
PY
)
parse() {
  python3 - "$1" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
req = re.search(r"(\d+) requests in", t).group(1)
rps = re.search(r"Requests/sec:\s+([\d.]+)", t).group(1)
p99 = re.search(r"99%\s+([\d.]+\w+)", t).group(1)
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
sock = re.search(r"Socket errors: (.*)", t)
print(f"| {req} | {float(rps):,.0f} | {p99} | {non2xx.group(1) if non2xx else 0} | {sock.group(1) if sock else 'none'} |")
PY
}
out=Benchmarks/results/soak.md
{
  echo "# Soak run: $(date -u +%Y-%m-%d), ${secs} s, 256 connections"
  echo
  echo "\`Benchmarks/soak/run.sh $secs\` on $(nproc) cores ($(uname -m)); wrk, the server and the publisher share them."
  echo "Checks use random client ids and versions; downloads fetch the 1.0.0 -> 1.1.0 delta."
  echo
  echo "| load | requests | requests/s | p99 | non-2xx | socket errors |"
  echo "|---|---:|---:|---:|---:|---|"
  echo -n "| checks (224 connections) "; parse "$work/wrk-check.txt"
  echo -n "| downloads (32 connections) "; parse "$work/wrk-download.txt"
  echo
  echo "- releases published during the run: $published (failed publishes: $failed)"
  echo "- server RSS: $((rss_start / 1024)) MiB after warm-up, $((rss_end / 1024)) MiB when the load stopped (delta jobs still running), $((rss_drained / 1024)) MiB once the queued jobs were done"
  echo "- catalog afterwards: $consistency"
  echo "- server log errors: $(grep -c -E ' error ' "$work/server.log" || true)"
  grep -E ' error ' "$work/server.log" | head -5 | sed 's/^/  - /' || true
} | tee "$out"
