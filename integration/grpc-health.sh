#!/usr/bin/env bash
# gRPC health checks (healthCheck: {grpc: SERVICE}): grpcio servers with the standard health service
# (grpcio-health-checking) behind the proxy. An endpoint set NOT_SERVING is marked unhealthy
# (zoneward_endpoint_healthy 0) and gets no calls; set SERVING again it comes back. A named service the
# server does not know (NOT_FOUND) is unhealthy until it is registered; the check also runs as h2 over TLS
# (upstreamTLS, ALPN h2).
source "$(dirname "$0")/lib/common.sh"

python3 -c "import grpc, grpc_health, h2" 2>/dev/null || pip install -q grpcio grpcio-health-checking h2 >/dev/null 2>&1

BASE=${ZONEWARD_IT_PORT_BASE_GRPC_HEALTH:-27300}
A1=$((BASE + 1))
A2=$((BASE + 2))
TLS_PEER=$((BASE + 3))
PROXY_PORT=$((BASE + 11))
ORDERS_PORT=$((BASE + 12))
TLS_PORT=$((BASE + 13))
ADMIN=$((BASE + 21))
PEER="$ROOT/integration/lib/grpc_peer.py"
mkdir -p "$WORK/markers"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=localhost" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1

python3 "$PEER" server "$A1" a1 "$WORK/markers" >"$WORK/a1.log" 2>&1 &
PIDS+=($!)
python3 "$PEER" server "$A2" a2 "$WORK/markers" >"$WORK/a2.log" 2>&1 &
PIDS+=($!)
python3 "$PEER" server "$TLS_PEER" tls "$WORK/markers" 0 "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/tls.log" 2>&1 &
PIDS+=($!)

cat >"$WORK/zoneward.yaml" <<YAML
zones:
  - {name: zone-a, region: r1}
services:
  - name: grpc
    listen: 127.0.0.1:$PROXY_PORT
    upstreamProtocol: http2
    healthCheck: {grpc: "", interval: 200ms, timeout: 1s, unhealthyThreshold: 2, healthyThreshold: 2}
    endpoints:
      - {address: 127.0.0.1:$A1, zone: zone-a}
      - {address: 127.0.0.1:$A2, zone: zone-a}
  - name: orders
    listen: 127.0.0.1:$ORDERS_PORT
    upstreamProtocol: http2
    healthCheck: {grpc: orders.v1.Orders, interval: 200ms, unhealthyThreshold: 1, healthyThreshold: 1}
    endpoints: [{address: 127.0.0.1:$A1, zone: zone-a}]
  - name: grpc-tls
    listen: 127.0.0.1:$TLS_PORT
    upstreamProtocol: http2
    upstreamTLS: {caFile: $WORK/cert.pem}
    healthCheck: {grpc: "", interval: 200ms}
    endpoints: [{address: 127.0.0.1:$TLS_PEER, zone: zone-a}]
admin: {listen: 127.0.0.1:$ADMIN}
YAML

echo "grpc-health: configuration errors name the field"
sed 's/    upstreamProtocol: http2/    upstreamProtocol: http1/' "$WORK/zoneward.yaml" >"$WORK/bad.yaml"
run_zw 2 "grpc health checks on an http1 service are refused" config check "$WORK/bad.yaml"
check "the error names healthCheck.grpc and the cause" \
    contains "$ERR$OUT" "services[0].healthCheck.grpc: the gRPC health protocol needs upstreamProtocol: http2"

"$ZW" proxy --config "$WORK/zoneward.yaml" --zone zone-a --workers 2 >"$WORK/proxy.log" 2>&1 &
PROXY=$!
PIDS+=($PROXY)
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 1 100); do up "$A1" && up "$A2" && up "$TLS_PEER" && curl -sf "http://127.0.0.1:$ADMIN/readyz" -o /dev/null && break; sleep 0.1; done
check "the proxy and the gRPC servers are up" curl -sf "http://127.0.0.1:$ADMIN/readyz" -o /dev/null

# healthy SERVICE PORT: the endpoint's zoneward_endpoint_healthy gauge ("" when absent).
healthy() {
    curl -s --max-time 5 "http://127.0.0.1:$ADMIN/metrics" |
        awk -v s="service=\"$1\"" -v e="endpoint=\"127.0.0.1:$2\"" \
            '/^zoneward_endpoint_healthy\{/ && index($0, s) && index($0, e) { print $NF + 0 }'
}
# await SERVICE PORT VALUE: waits up to 5 s for the gauge to read VALUE; TOOK says how long it took (ms).
await() {
    local started i
    started=$(date +%s%N)
    for i in $(seq 1 50); do
        if [ "$(healthy "$1" "$2")" = "$3" ]; then
            TOOK=$((($(date +%s%N) - started) / 1000000))
            return 0
        fi
        sleep 0.1
    done
    return 1
}
# calls PORT N: N unary calls through the proxy; prints how many each server answered.
calls() {
    timeout 60 python3 - "$1" "$2" <<'PY' 2>&1
import collections, sys
import grpc
channel = grpc.insecure_channel(f"127.0.0.1:{sys.argv[1]}")
unary = channel.unary_unary("/zw.Test/Unary")
answers = collections.Counter()
for _ in range(int(sys.argv[2])):
    try:
        answers[unary(b"whoami", timeout=5).decode()] += 1
    except grpc.RpcError as error:
        answers[str(error.code())] += 1
print(" ".join(f"{name}={count}" for name, count in sorted(answers.items())))
PY
}
# set_health PORT SERVICE=STATUS: tells a server's health service directly (not through the proxy).
set_health() {
    timeout 10 python3 -c "import grpc, sys; print(grpc.insecure_channel(f'127.0.0.1:{sys.argv[1]}').unary_unary('/zw.Test/SetHealth')(sys.argv[2].encode(), timeout=5).decode())" "$1" "$2"
}

echo "grpc-health: both endpoints SERVING"
check "a1 is healthy by the gRPC health protocol" await grpc "$A1" 1
check "a2 is healthy by the gRPC health protocol" await grpc "$A2" 1
OUT=$(calls "$PROXY_PORT" 40)
echo "  calls: $OUT"
both() { [[ "$OUT" =~ a1=[0-9]+ && "$OUT" =~ a2=[0-9]+ && "$OUT" != *StatusCode* ]]; }
check "40 calls are spread over a1 and a2" both

echo "grpc-health: a2 says NOT_SERVING"
check "a2's health service is set NOT_SERVING" test "$(set_health "$A2" "=NOT_SERVING")" = ok
# Two failed checks 200 ms apart (unhealthyThreshold 2).
if await grpc "$A2" 0; then pass "a2 is marked unhealthy (zoneward_endpoint_healthy 0) in $TOOK ms"; else fail "a2 is marked unhealthy"; fi
check "a1 stays healthy" test "$(healthy grpc "$A1")" = 1
OUT=$(calls "$PROXY_PORT" 40)
echo "  calls: $OUT"
check "40 calls, all answered by a1: a2 gets none" test "$OUT" = "a1=40"
check "the proxy's log says why (endpoint unhealthy … NOT_SERVING)" \
    grep -q "endpoint unhealthy: grpc/127.0.0.1:$A2 .*NOT_SERVING" "$WORK/proxy.log"

echo "grpc-health: a2 SERVING again"
check "a2's health service is set SERVING" test "$(set_health "$A2" "=SERVING")" = ok
if await grpc "$A2" 1; then pass "a2 is healthy again in $TOOK ms"; else fail "a2 is healthy again"; fi
OUT=$(calls "$PROXY_PORT" 40)
echo "  calls: $OUT"
check "calls reach a2 again" both

echo "grpc-health: a named service"
# a1 answers the grpc service's checks (above); after 0.6 s more (3 checks) orders still has it unhealthy.
sleep 0.6
check "orders.v1.Orders, unknown to a1's health service (NOT_FOUND), keeps it unhealthy" test "$(healthy orders "$A1")" = 0
check "a1 registers orders.v1.Orders as SERVING" test "$(set_health "$A1" "orders.v1.Orders=SERVING")" = ok
check "the orders service's endpoint becomes healthy" await orders "$A1" 1
check "the grpc service's view of a1 is unaffected" test "$(healthy grpc "$A1")" = 1

echo "grpc-health: h2 over TLS (upstreamTLS, ALPN h2)"
check "the TLS endpoint is healthy by the gRPC health protocol" await grpc-tls "$TLS_PEER" 1
check "a TLS endpoint set NOT_SERVING is marked unhealthy" \
    bash -c "[ \"\$(timeout 10 python3 - $TLS_PEER $WORK/cert.pem <<'PY'
import grpc, sys
credentials = grpc.ssl_channel_credentials(open(sys.argv[2], 'rb').read())
channel = grpc.secure_channel(f'127.0.0.1:{sys.argv[1]}', credentials)
print(channel.unary_unary('/zw.Test/SetHealth')(b'=NOT_SERVING', timeout=5).decode())
PY
)\" = ok ]"
check "... and its gauge drops to 0" await grpc-tls "$TLS_PEER" 0

if [ "$FAILED" != 0 ]; then tail -20 "$WORK/proxy.log" | sed 's/^/  proxy: /'; fi
finish
