#!/usr/bin/env bash
# Load run for phoenix-server (opt-in): wrk against /api/version/check and /api/version/download,
# side by side with nginx serving the same check response and package as static files, in one run on
# this machine. Prints a Markdown table with throughput, p99 latency and ratios to nginx.
#   Benchmarks/server-load/run.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
conns=${2:-64}
for tool in wrk nginx; do
  command -v "$tool" >/dev/null || { SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo; $SUDO apt-get install -y -qq wrk nginx-light >/dev/null; }
done
swift build -c release --static-swift-stdlib --product phoenix-server >/dev/null
BIN=$(swift build -c release --static-swift-stdlib --show-bin-path)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
python3 scripts/example-data.py tree "$work/a" "$work/b"
"$BIN/phoenix-server" keygen --out "$work/key.pem" >/dev/null
"$BIN/phoenix-server" publish --data "$work/data" --key "$work/key.pem" --platform bench --version 1.0.0 "$work/a" >/dev/null
"$BIN/phoenix-server" publish --data "$work/data" --key "$work/key.pem" --platform bench --version 1.1.0 "$work/b" >/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
p1=$(free_port); p2=$(free_port)
"$BIN/phoenix-server" serve --data "$work/data" --key "$work/key.pem" --port "$p1" >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$p1/healthz" >/dev/null && break; sleep 0.2; done
check="/api/version/check?current_version=1.0.0&platform=bench"
download="/api/version/download?version=1.1.0&platform=bench"
mkdir -p "$work/www"
curl -sf "http://127.0.0.1:$p1$check" >"$work/www/check.json"
curl -sf "http://127.0.0.1:$p1$download" >"$work/www/package.bin"
cat >"$work/nginx.conf" <<NGINX
user root;
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  client_body_temp_path $work/ngx-tmp; proxy_temp_path $work/ngx-tmp; fastcgi_temp_path $work/ngx-tmp;
  uwsgi_temp_path $work/ngx-tmp; scgi_temp_path $work/ngx-tmp;
  server { listen 127.0.0.1:$p2; root $work/www; default_type application/json; }
}
NGINX
mkdir -p "$work/ngx-tmp"
chmod -R a+rX "$work"
nginx -c "$work/nginx.conf" -g 'daemon off;' &
pids+=($!)
sleep 1
run() { wrk -t2 -c"$conns" -d"${secs}s" --latency "$1" 2>&1; }
parse() {  # prints: requests/s  MB/s  p99(ms)
  python3 -c '
import re, sys
t = sys.stdin.read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
tr = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", t)
mb = float(tr.group(1)) * {"B": 1e-6, "KB": 1e-3, "MB": 1, "GB": 1e3}[tr.group(2)]
p = re.search(r"99%\s+([\d.]+)(\w+)", t)
p99 = float(p.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[p.group(2)]
print(f"{rps:.0f} {mb:.1f} {p99:.2f}")'
}
read -r c_rps c_mb c_p99 < <(run "http://127.0.0.1:$p1$check" | parse)
read -r n_rps n_mb n_p99 < <(run "http://127.0.0.1:$p2/check.json" | parse)
read -r d_rps d_mb d_p99 < <(run "http://127.0.0.1:$p1$download" | parse)
read -r m_rps m_mb m_p99 < <(run "http://127.0.0.1:$p2/package.bin" | parse)
size=$(stat -c %s "$work/www/package.bin")
echo "| endpoint ($conns connections, ${secs} s, wrk -t2) | phoenix-server | nginx (static) | ratio |"
echo "|---|---:|---:|---:|"
echo "| check: requests/s | $c_rps | $n_rps | $(echo "scale=2; $c_rps / $n_rps" | bc) |"
echo "| check: p99 latency | ${c_p99} ms | ${n_p99} ms | |"
echo "| download ($size bytes): MB/s | $d_mb | $m_mb | $(echo "scale=2; $d_mb / $m_mb" | bc) |"
echo "| download: p99 latency | ${d_p99} ms | ${m_p99} ms | |"
