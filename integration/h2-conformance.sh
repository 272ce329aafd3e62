#!/usr/bin/env bash
# HTTP/2 frame-level conformance and floods against a live proxy (h2c listener, a grpcio server behind it):
# the advertised SETTINGS and their ACKs, PING, PRIORITY, flow control (WINDOW_UPDATE), a client's
# RST_STREAM and GOAWAY, CONTINUATION / SETTINGS / PING floods (GOAWAY ENHANCE_YOUR_CALM, counted in
# zoneward_http2_connections_closed_total), an oversized header list, streams past the limit of 100,
# connection errors (closed after their GOAWAY) and frames NIOHTTP2 does not meter —
# with raw sockets and PyPI's h2 (integration/lib/h2_conformance.py). The proxy must serve on throughout.
source "$(dirname "$0")/lib/common.sh"

python3 -c "import grpc, h2" 2>/dev/null || pip install -q grpcio h2 >/dev/null 2>&1

BASE=${ZONEWARD_IT_PORT_BASE_H2_CONFORMANCE:-27400}
BACKEND=$((BASE + 1))
PROXY_PORT=$((BASE + 11))
ADMIN=$((BASE + 21))
mkdir -p "$WORK/markers"

python3 "$ROOT/integration/lib/grpc_peer.py" server "$BACKEND" zone-a "$WORK/markers" >"$WORK/backend.log" 2>&1 &
PIDS+=($!)

cat >"$WORK/zoneward.yaml" <<YAML
zones:
  - {name: zone-a, region: r1}
services:
  - name: conformance
    listen: 127.0.0.1:$PROXY_PORT
    upstreamProtocol: http2
    healthCheck: {interval: 500ms}
    endpoints: [{address: 127.0.0.1:$BACKEND, zone: zone-a}]
admin: {listen: 127.0.0.1:$ADMIN}
YAML
"$ZW" proxy --config "$WORK/zoneward.yaml" --zone zone-a --workers 2 >"$WORK/proxy.log" 2>&1 &
PROXY=$!
PIDS+=($PROXY)
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 1 100); do up "$BACKEND" && curl -sf "http://127.0.0.1:$ADMIN/readyz" -o /dev/null && break; sleep 0.1; done
check "the proxy and the gRPC server are up" curl -sf "http://127.0.0.1:$ADMIN/readyz" -o /dev/null
sleep 1 # a health check of the endpoint

echo "h2-conformance: frames from a raw client"
timeout 120 python3 "$ROOT/integration/lib/h2_conformance.py" "$PROXY_PORT" "$ADMIN" "$WORK/markers" conformance "$PROXY" \
    >"$WORK/conformance.out" 2>"$WORK/conformance.err"
while IFS= read -r line; do
    case "$line" in
        "ok   "*) pass "${line#ok   }" ;;
        "FAIL "*) fail "${line#FAIL }" ;;
    esac
done <"$WORK/conformance.out"
check "every case ran" test "$(grep -c '' "$WORK/conformance.out")" -ge 38
[ -s "$WORK/conformance.err" ] && sed 's/^/  conformance stderr: /' "$WORK/conformance.err" | tail -8

check "the proxy process is still running" kill -0 "$PROXY"
METRICS=$(curl -s --max-time 5 "http://127.0.0.1:$ADMIN/metrics" | grep '^zoneward_http2_connections_closed_total')
echo "$METRICS" | sed 's/^/  /'
if [ "$FAILED" != 0 ]; then tail -20 "$WORK/proxy.log" | sed 's/^/  proxy: /'; fi
finish
