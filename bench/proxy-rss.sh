#!/usr/bin/env bash
# Memory of the release-built proxy: idle RSS, then RSS with CONNECTIONS (default 1,000) idle keep-alive
# client connections (each has made one request through the proxy, so each also holds an upstream
# connection from the pool: the worst case for memory).
#   swift build -c release && bash bench/proxy-rss.sh
#   CONNECTIONS=19500 bash bench/proxy-rss.sh      # near the listener's default maxConnections (20,000);
#                                                  # a sandbox whose hard fd limit is 20,000 allows no more
# Measured (release, 2 cores): idle 38.8 MiB; 19,500 idle keep-alive clients 166.6 MiB (about 6.7 KiB each),
# under the DaemonSet's 256 MiB memory limit.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${ZONEWARD_RELEASE_BIN:-$ROOT/.build/release/zoneward}
[ -x "$BIN" ] || { echo "no release build at $BIN (swift build -c release)" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
CONNECTIONS=${CONNECTIONS:-1000}
WORK=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$WORK"' EXIT
ulimit -n 65536 2>/dev/null || true
cat >"$WORK/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $WORK/nginx.pid; error_log $WORK/error.log warn;
events { worker_connections $((CONNECTIONS + 1024)); }
http { access_log off; keepalive_timeout 300s; keepalive_requests 1000000;
  client_body_temp_path $WORK; proxy_temp_path $WORK; fastcgi_temp_path $WORK; uwsgi_temp_path $WORK; scgi_temp_path $WORK;
  server { listen 127.0.0.1:18281; location / { return 200 "ok\n"; } } }
CONF
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK" &
PIDS+=($!)
cat >"$WORK/zoneward.yaml" <<YAML
zones: [{name: z1, region: r1}]
services:
  - name: web
    listen: 127.0.0.1:18282
    endpoints: [{address: 127.0.0.1:18281, zone: z1}]
admin: {listen: 127.0.0.1:18283}
YAML
"$BIN" proxy --config "$WORK/zoneward.yaml" --zone z1 --workers 2 --log-level warning &
PROXY=$!
PIDS+=($PROXY)
for _ in $(seq 1 50); do curl -sf http://127.0.0.1:18283/readyz >/dev/null && break; sleep 0.1; done
sleep 1
rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$PROXY/status"; }
IDLE=$(rss)
python3 - "$CONNECTIONS" "$WORK/ready" <<'PY' &
import os, socket, sys, time
count, ready = int(sys.argv[1]), sys.argv[2]
sockets = []
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", 18282))
    s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    sockets.append(s)
    # Read answers as they come, so at most a few hundred requests are in flight.
    if len(sockets) % 200 == 0:
        for pending in sockets[-200:]:
            data = b""
            while b"ok\n" not in data:
                data += pending.recv(4096)
for pending in sockets[len(sockets) - len(sockets) % 200:]:
    data = b""
    while b"ok\n" not in data:
        data += pending.recv(4096)
open(ready, "w").close()
# Hold the connections idle while the RSS is read (well inside the 60 s client idle timeout).
deadline = time.monotonic() + 20
while time.monotonic() < deadline and not os.path.exists(ready + ".done"):
    time.sleep(0.1)
PY
CLIENTS=$!
PIDS+=($CLIENTS)
for _ in $(seq 1 1200); do [ -e "$WORK/ready" ] && break; sleep 0.1; done
[ -e "$WORK/ready" ] || { echo "the clients did not get their answers within 120 s" >&2; exit 1; }
sleep 1
OPEN=$(ls "/proc/$PROXY/fd" | wc -l)
LOADED=$(rss)
touch "$WORK/ready.done"
wait "$CLIENTS"
echo "idle RSS: $IDLE MiB"
echo "RSS with $CONNECTIONS idle keep-alive client connections (and their pooled upstream connections, $OPEN fds): $LOADED MiB"
