#!/usr/bin/env bash
# HTTP/2 and gRPC routed per stream: two grpcio servers in two zones behind the proxy (h2c listener,
# upstreamProtocol: http2). A grpcio client through the proxy: unary, server/client/bidi streaming, a 16 MiB
# message, a cancelled call (the server sees it go), a deadline, the proxy's own grpc-timeout deadline, the
# advertised limits, rapid reset refused with GOAWAY, streams per zone in /metrics, an endpoint killed
# mid-stream (UNAVAILABLE; new calls on the other zone), a gRPC call over HTTP/1.1 answered 505 (plain
# HTTP/1.1 requests are bridged to upstream streams: integration/h2-bridge.sh), h2load over h2c,
# and a graceful shutdown that lets the stream in flight finish.
source "$(dirname "$0")/lib/common.sh"

python3 -c "import grpc, h2" 2>/dev/null || pip install -q grpcio h2 >/dev/null 2>&1
command -v h2load >/dev/null ||
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client) >/dev/null 2>&1

BASE=${ZONEWARD_IT_PORT_BASE_GRPC:-24300}
ZONE_A=$((BASE + 1))
ZONE_B=$((BASE + 2))
PROXY_PORT=$((BASE + 11))
TLS_PORT=$((BASE + 12))
TLS_UPSTREAM_PORT=$((BASE + 13))
ZONE_A_TLS=$((BASE + 3))
SILENT=$((BASE + 4))
SILENT_SERVICE=$((BASE + 14))
ADMIN=$((BASE + 21))
mkdir -p "$WORK/markers"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=localhost" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1

python3 "$ROOT/integration/lib/grpc_peer.py" server "$ZONE_A" zone-a "$WORK/markers" >"$WORK/zone-a.log" 2>&1 &
PID_A=$!
PIDS+=($PID_A)
# zone-b allows 2 concurrent streams per connection (the proxy must open more connections, not queue).
python3 "$ROOT/integration/lib/grpc_peer.py" server "$ZONE_B" zone-b "$WORK/markers" 2 >"$WORK/zone-b.log" 2>&1 &
PIDS+=($!)

# A gRPC server over TLS (h2 by ALPN), for a service with upstreamTLS.
python3 "$ROOT/integration/lib/grpc_peer.py" server "$ZONE_A_TLS" zone-a-tls "$WORK/markers" 0 \
    "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/zone-a-tls.log" 2>&1 &
PIDS+=($!)

# An HTTP/2 server that never answers, for upstreamRead.
python3 "$ROOT/integration/lib/grpc_peer.py" silent "$SILENT" >"$WORK/silent.log" 2>&1 &
PIDS+=($!)

cat >"$WORK/zoneward.yaml" <<YAML
zones:
  - {name: zone-a, region: r1}
  - {name: zone-b, region: r1}
services:
  - name: grpc
    listen: 127.0.0.1:$PROXY_PORT
    upstreamProtocol: http2
    healthCheck: {interval: 500ms}   # TCP connect: a gRPC server answers no HTTP/1.1 GET
    endpoints:
      - {address: 127.0.0.1:$ZONE_A, zone: zone-a}
      - {address: 127.0.0.1:$ZONE_B, zone: zone-b}
  - name: grpc-tls
    listen: 127.0.0.1:$TLS_PORT
    tls: {cert: $WORK/cert.pem, key: $WORK/key.pem}
    upstreamProtocol: http2
    healthCheck: {interval: 500ms}
    endpoints:
      - {address: 127.0.0.1:$ZONE_A, zone: zone-a}
      - {address: 127.0.0.1:$ZONE_B, zone: zone-b}
  - name: grpc-upstream-tls
    listen: 127.0.0.1:$TLS_UPSTREAM_PORT
    upstreamProtocol: http2
    upstreamTLS: {caFile: $WORK/cert.pem}
    healthCheck: {interval: 500ms}
    endpoints: [{address: 127.0.0.1:$ZONE_A_TLS, zone: zone-a}]
  - name: silent
    listen: 127.0.0.1:$SILENT_SERVICE
    upstreamProtocol: http2
    timeouts: {upstreamRead: 1s}
    healthCheck: {interval: 1h}
    endpoints: [{address: 127.0.0.1:$SILENT, zone: zone-a}]
admin: {listen: 127.0.0.1:$ADMIN}
YAML
"$ZW" proxy --config "$WORK/zoneward.yaml" --zone zone-a --workers 2 >"$WORK/proxy.log" 2>&1 &
PROXY=$!
PIDS+=($PROXY)
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 1 100); do up "$ZONE_A" && up "$ZONE_B" && up "$ZONE_A_TLS" && up "$SILENT" && curl -sf "http://127.0.0.1:$ADMIN/readyz" -o /dev/null && break; sleep 0.1; done
check "the proxy and both gRPC servers are up" curl -sf "http://127.0.0.1:$ADMIN/readyz" -o /dev/null
sleep 1 # a health check of each endpoint

echo "grpc: HTTP/1.1 to an http2 service"
OUT=$(curl -s -i --max-time 5 --http1.1 -X POST -H 'content-type: application/grpc' \
    "http://127.0.0.1:$PROXY_PORT/zw.Test/Unary")
check "a gRPC call over HTTP/1.1 gets 505 naming the cause" contains "$OUT" "x-zoneward-error: http2-required"

echo "grpc: TLS listener, h2 by ALPN"
# One gRPC message (5-byte prefix, then "whoami") per request.
printf '\x00\x00\x00\x00\x06whoami' >"$WORK/message.bin"
OUT=$(curl -s --max-time 5 --cacert "$WORK/cert.pem" --http2 -X POST -H 'content-type: application/grpc' \
    -H 'te: trailers' --data-binary @"$WORK/message.bin" -o "$WORK/tls-answer.bin" \
    -w '%{http_version} %{http_code}' "https://127.0.0.1:$TLS_PORT/zw.Test/Unary")
check "curl over TLS negotiates h2 by ALPN and gets 200 ($OUT)" test "$OUT" = "2 200"
check "the answer came from zone-a's gRPC server" grep -q "zone-a" "$WORK/tls-answer.bin"
OUT=$(curl -s -i --max-time 5 --cacert "$WORK/cert.pem" --http1.1 -X POST -H 'content-type: application/grpc' \
    "https://127.0.0.1:$TLS_PORT/zw.Test/Unary")
check "a gRPC call over HTTP/1.1 on TLS gets 505" contains "$OUT" "x-zoneward-error: http2-required"
H2LOAD=$(timeout 30 h2load -n 100 -c 2 -m 10 -H 'content-type: application/grpc' -H 'te: trailers' \
    -d "$WORK/message.bin" "https://127.0.0.1:$TLS_PORT/zw.Test/Unary" 2>&1)
check "h2load over TLS (ALPN h2): 100 requests, all 200" contains "$H2LOAD" "status codes: 100 2xx, 0 3xx, 0 4xx, 0 5xx"

echo "grpc: h2 over TLS to the endpoint (upstreamTLS, ALPN h2)"
OUT=$(curl -s --max-time 5 --http2-prior-knowledge -X POST -H 'content-type: application/grpc' \
    -H 'te: trailers' --data-binary @"$WORK/message.bin" -o "$WORK/tls-upstream.bin" \
    -w '%{http_code}' "http://127.0.0.1:$TLS_UPSTREAM_PORT/zw.Test/Unary")
check "h2c in, h2 over TLS to a gRPC server out: 200 ($OUT)" test "$OUT" = "200"
check "the answer came from the TLS gRPC server" grep -q "zone-a-tls" "$WORK/tls-upstream.bin"

echo "grpc: an HTTP/2 endpoint that never answers"
START=$(date +%s%N)
OUT=$(curl -s -i --max-time 10 --http2-prior-knowledge "http://127.0.0.1:$SILENT_SERVICE/anything")
MS=$((($(date +%s%N) - START) / 1000000))
timed_out() { [[ "$OUT" == *"HTTP/2 504"* && "$OUT" == *"x-zoneward-error: upstream-timeout"* && $MS -lt 3000 ]]; }
check "a plain HTTP/2 request gets 504 upstream-timeout after upstreamRead (1 s; took $MS ms)" timed_out

echo "grpc: h2load over h2c"
H2LOAD=$(timeout 30 h2load -n 400 -c 4 -m 10 -H 'content-type: application/grpc' -H 'te: trailers' \
    -d "$WORK/message.bin" "http://127.0.0.1:$PROXY_PORT/zw.Test/Unary" 2>&1)
echo "$H2LOAD" | grep -E "^(requests|status codes):" | sed 's/^/  h2load: /'
check "h2load: 400 requests, all succeeded" contains "$H2LOAD" "400 succeeded"
check "h2load: all 200" contains "$H2LOAD" "status codes: 400 2xx, 0 3xx, 0 4xx, 0 5xx"

echo "grpc: a grpcio client through the proxy"
timeout 60 python3 "$ROOT/integration/lib/grpc_peer.py" client "$PROXY_PORT" "$ADMIN" "$WORK/markers" "$PID_A" "$PROXY" \
    "$ZONE_B" >"$WORK/client.out" 2>"$WORK/client.err"
while IFS= read -r line; do
    case "$line" in
        "ok   "*) pass "${line#ok   }" ;;
        "FAIL "*) fail "${line#FAIL }" ;;
    esac
done <"$WORK/client.out"
check "the client ran every check" test "$(grep -c '' "$WORK/client.out")" -ge 25
[ -s "$WORK/client.err" ] && sed 's/^/  client stderr: /' "$WORK/client.err" | tail -5

echo "grpc: the README's demo (zoneward run --demo-backends --config config/grpc-demo.yaml, ports moved)"
sed -e "s/127.0.0.1:9090/127.0.0.1:$((BASE + 31))/" -e "s/127.0.0.1:9902/127.0.0.1:$((BASE + 32))/" \
    -e "s/127.0.0.1:18201/127.0.0.1:$((BASE + 41))/" -e "s/127.0.0.1:18202/127.0.0.1:$((BASE + 42))/" \
    -e "s/127.0.0.1:18203/127.0.0.1:$((BASE + 43))/" "$ROOT/config/grpc-demo.yaml" >"$WORK/grpc-demo.yaml"
"$ZW" run --demo-backends --config "$WORK/grpc-demo.yaml" --zone us-east-1b --db "$WORK/demo.db" \
    >"$WORK/demo.log" 2>&1 &
DEMO=$!
PIDS+=($DEMO)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$((BASE + 32))/readyz" >/dev/null && break; sleep 0.1; done
DEMO_OUT=$(timeout 30 python3 - "$((BASE + 31))" <<'PY' 2>&1
import collections, sys
import grpc
channel = grpc.insecure_channel(f"127.0.0.1:{sys.argv[1]}")
whoami = channel.unary_unary("/demo.Greeter/Whoami")  # no stubs: raw bytes in and out
print(collections.Counter(whoami(b"", timeout=5).decode().split()[1] for _ in range(50)))
PY
)
echo "  demo: $DEMO_OUT"
check "a grpcio call through the demo is answered by a demo backend, in the proxy's zone" \
    contains "$DEMO_OUT" "'zone=us-east-1b': 50"
kill "$DEMO" 2>/dev/null
wait "$DEMO" 2>/dev/null

for _ in $(seq 1 100); do kill -0 "$PROXY" 2>/dev/null || break; sleep 0.1; done
check "the proxy exited after the drain" bash -c "! kill -0 $PROXY 2>/dev/null"
if [ "$FAILED" != 0 ]; then tail -20 "$WORK/proxy.log" | sed 's/^/  proxy: /'; fi
finish
