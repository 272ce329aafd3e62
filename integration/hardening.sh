#!/usr/bin/env bash
# Hostile and broken peers against a live proxy: slowloris heads, withheld bodies (which must not eject
# a healthy endpoint), clients that do not read, stalled TLS handshakes, connection floods past
# maxConnections, idle TCP connections, WebSockets tunnelled end to end, broken upstream answers
# (101 without a request for it, Content-Length with Transfer-Encoding, 103 before the real answer),
# forwarding headers from untrusted peers, and panic that must stay in the active region.
source "$(dirname "$0")/lib/common.sh"

python3 -c "import websockets" 2>/dev/null || pip install -q websockets >/dev/null 2>&1
BASE=${ZONEWARD_IT_PORT_BASE_HARDENING:-23600}
RAW=$((BASE + 1))
WS=$((BASE + 2))
STANDBY=$((BASE + 3))
DEAD=$((BASE + 98))
HTTP=$((BASE + 11))
TLS=$((BASE + 12))
FLOOD=$((BASE + 13))
TCP=$((BASE + 14))
WSPROXY=$((BASE + 15))
TRUSTED=$((BASE + 16))
DB_SERVICE=$((BASE + 17))
ADMIN=$((BASE + 21))
HOSTILE="$ROOT/integration/lib/hostile.py"

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=localhost" \
    -addext "subjectAltName=IP:127.0.0.1" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1
python3 "$HOSTILE" raw-backend "$RAW" &
PIDS+=($!)
python3 "$HOSTILE" raw-backend "$STANDBY" &
PIDS+=($!)
python3 "$HOSTILE" ws-backend "$WS" &
PIDS+=($!)

cat >"$WORK/zoneward.yaml" <<YAML
zones:
  - {name: z1, region: r1}
  - {name: z2, region: r2}
timeouts: {requestHead: 2s, clientBody: 2s, clientWrite: 2s, tlsHandshake: 1s, upstreamRead: 1s}
services:
  - name: web
    listen: 127.0.0.1:$HTTP
    healthCheck: {interval: 1h}
    outlierDetection: {consecutiveFailures: 3}
    endpoints: [{address: 127.0.0.1:$RAW, zone: z1}]
  - name: secure
    listen: 127.0.0.1:$TLS
    tls: {cert: $WORK/cert.pem, key: $WORK/key.pem}
    healthCheck: {interval: 1h}
    endpoints: [{address: 127.0.0.1:$RAW, zone: z1}]
  - name: flood
    listen: 127.0.0.1:$FLOOD
    maxConnections: 50
    healthCheck: {interval: 1h}
    endpoints: [{address: 127.0.0.1:$RAW, zone: z1}]
  - name: raw
    listen: 127.0.0.1:$TCP
    protocol: tcp
    timeouts: {tcpIdle: 1s}
    healthCheck: {interval: 1h}
    endpoints: [{address: 127.0.0.1:$RAW, zone: z1}]
  - name: chat
    listen: 127.0.0.1:$WSPROXY
    healthCheck: {interval: 1h}
    endpoints: [{address: 127.0.0.1:$WS, zone: z1}]
  - name: behind-lb
    listen: 127.0.0.1:$TRUSTED
    forwardedFor: {trustedProxies: [127.0.0.0/8]}
    healthCheck: {interval: 1h}
    endpoints: [{address: 127.0.0.1:$RAW, zone: z1}]
  - name: db
    listen: 127.0.0.1:$DB_SERVICE
    routing: activeRegion
    regions: [r1, r2]
    healthCheck: {path: /healthz, interval: 200ms, unhealthyThreshold: 1}
    endpoints:
      - {address: 127.0.0.1:$DEAD, zone: z1}
      - {address: 127.0.0.1:$STANDBY, zone: z2}
admin: {listen: 127.0.0.1:$ADMIN}
YAML
"$ZW" proxy --config "$WORK/zoneward.yaml" --zone z1 --db "$WORK/zoneward.db" --workers 2 >"$WORK/proxy.log" 2>&1 &
PROXY=$!
PIDS+=($PROXY)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null && break; sleep 0.1; done
check "the proxy is ready" curl -sf "http://127.0.0.1:$ADMIN/readyz" -o /dev/null
metric() { curl -s "http://127.0.0.1:$ADMIN/metrics" | grep -F "$1" | awk '{print $2}' | head -1; }

echo "hardening: slowloris (300 clients, one header line every 0.5 s; requestHead 2s)"
OUT=$(timeout 60 python3 "$HOSTILE" slowloris "$HTTP" 300 0.5 12)
echo "  $OUT"
check "every slowloris client was closed" contains "$OUT" '"closed": 300'
check "each got a 408" contains "$OUT" '"got408": 300'
LAST=$(echo "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["lastClose"])')
check "the last one within requestHead + one tick + slack ($LAST s ≤ 4 s)" python3 -c "import sys; sys.exit(0 if $LAST <= 4 else 1)"

echo "hardening: withheld request bodies (20 POSTs announcing 100 bytes, sending 3; clientBody 2s, upstreamRead 1s)"
OUT=$(timeout 30 python3 "$HOSTILE" withheld-body "$HTTP" 20 10)
echo "  $OUT"
check "every one got 408" contains "$OUT" '"HTTP/1.1 408 Request Timeout": 20'
PLAN=$(curl -s "http://127.0.0.1:$ADMIN/admin/plan?service=web")
check "the healthy endpoint was not ejected for the clients' stall" contains "$PLAN" '"ejected":false'
check "requests still succeed" contains "$(curl -s "http://127.0.0.1:$HTTP/")" "ok"
check "clientBody timeouts are counted" [ "$(metric 'zoneward_client_timeouts_total{timeout="clientBody"}')" = 20 ]

echo "hardening: a client that does not read (32 MiB response; clientWrite 2s)"
OUT=$(timeout 30 python3 "$HOSTILE" not-reading "$HTTP" /big 5 10)
echo "  $OUT"
check "the proxy closed the non-reading client" contains "$OUT" '"closed": true'
RECEIVED=$(echo "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["received"])')
check "before the whole body was taken ($RECEIVED < 33554432)" [ "$RECEIVED" -lt 33554432 ]
PLAN=$(curl -s "http://127.0.0.1:$ADMIN/admin/plan?service=web")
check "the endpoint is still not ejected" contains "$PLAN" '"ejected":false'

echo "hardening: a stalled TLS handshake (tlsHandshake 1s)"
OUT=$(timeout 20 python3 "$HOSTILE" stalled-tls "$TLS" 8)
echo "  $OUT"
check "the stalled handshake was closed" contains "$OUT" '"closed": true'
AFTER=$(echo "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["after"])')
check "within the deadline plus slack ($AFTER s ≤ 2 s)" python3 -c "import sys; sys.exit(0 if $AFTER <= 2 else 1)"
check "TLS still works for a real client" contains "$(curl -sk "https://127.0.0.1:$TLS/")" "ok"

echo "hardening: 60 connections to a listener with maxConnections 50"
OUT=$(timeout 30 python3 "$HOSTILE" flood "$FLOOD" 60 1)
echo "  $OUT"
check "10 were closed at once" contains "$OUT" '"closedAtOnce": 10'
check "the 50 admitted were served" contains "$OUT" '"served": 50'
check "refusals are counted" [ "$(metric 'zoneward_connections_refused_total{service="flood"}')" = 10 ]

echo "hardening: an idle TCP connection (tcpIdle 1s)"
OUT=$(timeout 20 python3 "$HOSTILE" idle-tcp "$TCP" 8)
echo "  $OUT"
check "the idle TCP connection was closed" contains "$OUT" '"closed": true'

echo "hardening: WebSocket through the proxy"
OUT=$(timeout 20 python3 "$HOSTILE" ws-client "$WSPROXY" 50)
echo "  $OUT"
check "50 messages echoed through the tunnel" contains "$OUT" '"echoed": 50'

echo "hardening: broken upstream answers"
CODE=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP/switch")
check "101 to a request that did not ask to switch is a 502 ($CODE)" [ "$CODE" = 502 ]
CODE=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP/cl-te")
check "Content-Length with Transfer-Encoding is a 502 ($CODE)" [ "$CODE" = 502 ]
OUT=$(curl -sv "http://127.0.0.1:$HTTP/early" 2>&1)
check "103 Early Hints is relayed" contains "$OUT" "< HTTP/1.1 103"
check "then the real answer" contains "$OUT" "final"

echo "hardening: forwarding headers"
OUT=$(curl -s "http://127.0.0.1:$HTTP/echo-head" -H "X-Forwarded-For: 6.6.6.6" -H "Forwarded: for=6.6.6.6")
check "an untrusted peer's X-Forwarded-For is replaced" contains "$OUT" "X-Forwarded-For: 127.0.0.1"$'\r'
check "and its Forwarded too" contains "$OUT" "Forwarded: for=127.0.0.1;proto=http"$'\r'
OUT=$(curl -s "http://127.0.0.1:$TRUSTED/echo-head" -H "X-Forwarded-For: 6.6.6.6")
check "a trusted proxy's X-Forwarded-For is extended" contains "$OUT" "X-Forwarded-For: 6.6.6.6, 127.0.0.1"

echo "hardening: panic stays in the active region"
sleep 1
for _ in $(seq 1 20); do curl -s -o /dev/null "http://127.0.0.1:$DB_SERVICE/"; done
STANDBY_HITS=$(curl -s "http://127.0.0.1:$STANDBY/count" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("/", 0))')
check "the standby region got no request while the active one is down ($STANDBY_HITS)" [ "$STANDBY_HITS" = 0 ]
check "the routing state says panic" [ "$(metric 'zoneward_routing_state{service="db",state="panic"}')" = 1.0 ]
check "drain the active region's only zone" "$ZW" zone drain z1 --for 5m --reason test --db "$WORK/zoneward.db" --force
sleep 1.5
OUT=$(curl -s -D - "http://127.0.0.1:$DB_SERVICE/")
check "with the active region's zone drained too: 503 no-capacity" contains "$OUT" "X-Zoneward-Error: no-capacity"
STANDBY_HITS=$(curl -s "http://127.0.0.1:$STANDBY/count" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("/", 0))')
check "and still nothing reached the standby ($STANDBY_HITS)" [ "$STANDBY_HITS" = 0 ]
check "no-capacity requests are counted" [ "$(metric 'zoneward_no_capacity_requests_total{service="db"}')" -ge 1 ]

check "the proxy is still running" kill -0 "$PROXY"
finish
