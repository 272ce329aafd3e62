#!/usr/bin/env bash
# Zone-aware routing of gRPC streams end to end (zone-traffic.sh's step 1, for an `upstreamProtocol: http2`
# service): 6 grpcio servers over 3 zones (2 regions) with unequal weights, one zoneward proxy per zone,
# h2load making unary gRPC calls through each proxy. Every call succeeds (HTTP 200, grpc-status 0 counted
# once per call), and the per-(source, destination) fractions of the streams in each proxy's /metrics match
# its /admin/plan row within 0.02.
source "$(dirname "$0")/lib/common.sh"

python3 -c "import grpc" 2>/dev/null || pip install -q grpcio >/dev/null 2>&1
command -v h2load >/dev/null ||
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client) >/dev/null 2>&1
command -v h2load >/dev/null || { echo "h2load is not available (apt-get install nghttp2-client)"; exit 1; }

BASE=${ZONEWARD_IT_PORT_BASE_GRPC_ZONES:-25000}
# Calls per proxy. A fraction measured over n calls has a sampling error of sqrt(p(1-p)/n): 0.0043 for z-a's
# row (2/3 local, 1/3 to z-c) over 12,000, 0.0035 for z-b's (8/9, 1/9) over 8,000; z-c's row is all local.
declare -A CALLS=([z-a]=12000 [z-b]=8000 [z-c]=4000)
TOTAL_CALLS=$((CALLS[z-a] + CALLS[z-b] + CALLS[z-c]))

# endpoint name, zone, port, weight: zone-traffic.sh's topology (z-a has 1/3 of the capacity, 6/10 of the demand)
ENDPOINTS=(
    "a1 z-a $((BASE + 1)) 2"
    "a2 z-a $((BASE + 2)) 1"
    "b1 z-b $((BASE + 3)) 1"
    "b2 z-b $((BASE + 4)) 1"
    "c1 z-c $((BASE + 5)) 3"
    "c2 z-c $((BASE + 6)) 1"
)
mkdir -p "$WORK/markers"
for endpoint in "${ENDPOINTS[@]}"; do
    # shellcheck disable=SC2086
    set -- $endpoint
    python3 "$ROOT/integration/lib/grpc_peer.py" server "$3" "$1" "$WORK/markers" >"$WORK/server-$1.log" 2>&1 &
    PIDS+=($!)
done

write_config() { # zone listen-port admin-port
    local listen=$2 admin=$3
    {
        echo "zones:"
        echo "  - {name: z-a, region: r1}"
        echo "  - {name: z-b, region: r1}"
        echo "  - {name: z-c, region: r2}"
        echo "routing: {overloadFactor: 0.2, costs: {crossZone: 1, crossRegion: 10}, measuredDemand: false}"
        echo "services:"
        echo "  - name: grpc"
        echo "    listen: 127.0.0.1:$listen"
        echo "    upstreamProtocol: http2"
        echo "    demand: {z-a: 6, z-b: 3, z-c: 1}"
        echo "    healthCheck: {interval: 500ms, timeout: 1s, unhealthyThreshold: 3, healthyThreshold: 1}"
        echo "    endpoints:"
        for endpoint in "${ENDPOINTS[@]}"; do
            # shellcheck disable=SC2086
            set -- $endpoint
            echo "      - {address: 127.0.0.1:$3, zone: $2, weight: $4}"
        done
        echo "admin: {listen: 127.0.0.1:$admin}"
    } >"$WORK/proxy-$1.yaml"
}
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
servers_up() {
    local endpoint
    for endpoint in "${ENDPOINTS[@]}"; do
        # shellcheck disable=SC2086
        set -- $endpoint
        up "$3" || return 1
    done
}
# grpcio takes a few seconds to start on a busy machine: the proxies start once every server listens, so
# no endpoint begins unhealthy.
for _ in $(seq 1 300); do servers_up && break; sleep 0.1; done
check "the 6 gRPC servers are up" servers_up

# metric_sum FILE NAME LABELS...: the sum of a metric's samples carrying every LABEL (key="value").
metric_sum() {
    python3 - "$@" <<'PY'
import sys
path, name, labels = sys.argv[1], sys.argv[2], sys.argv[3:]
total = 0.0
for line in open(path):
    if line.startswith(name + "{") and all(label in line.split("}")[0] for label in labels):
        total += float(line.rsplit(" ", 1)[1])
print(int(total))
PY
}

export ZONEWARD_DB="$WORK/state.db"
declare -A PROXY_PORT ADMIN_PORT REPLANS
index=0
for zone in z-a z-b z-c; do
    PROXY_PORT[$zone]=$((BASE + 11 + index))
    ADMIN_PORT[$zone]=$((BASE + 21 + index))
    write_config "$zone" "${PROXY_PORT[$zone]}" "${ADMIN_PORT[$zone]}"
    "$ZW" proxy --config "$WORK/proxy-$zone.yaml" --zone "$zone" --db "$ZONEWARD_DB" --workers 1 \
        >"$WORK/proxy-$zone.log" 2>&1 &
    PIDS+=($!)
    index=$((index + 1))
done
# Ready, and every endpoint healthy (a TCP connect: a gRPC server answers no HTTP/1.1 GET) in every proxy.
proxies_ready() {
    local zone
    for zone in z-a z-b z-c; do
        curl -sf "http://127.0.0.1:${ADMIN_PORT[$zone]}/readyz" -o /dev/null || return 1
        curl -sf "http://127.0.0.1:${ADMIN_PORT[$zone]}/metrics" -o "$WORK/metrics-ready.txt" || return 1
        [ "$(metric_sum "$WORK/metrics-ready.txt" zoneward_endpoint_healthy 'service="grpc"')" = 6 ] || return 1
    done
}
for _ in $(seq 1 150); do proxies_ready && break; sleep 0.1; done
check "the 3 proxies are ready, with the 6 endpoints healthy in each" proxies_ready
for zone in z-a z-b z-c; do
    curl -s "http://127.0.0.1:${ADMIN_PORT[$zone]}/metrics" >"$WORK/metrics-before-$zone.txt"
    REPLANS[$zone]=$(metric_sum "$WORK/metrics-before-$zone.txt" zoneward_replans_total)
done

# Every proxy's plan has a cross-zone row: the test measures routing, not only local answers.
curl -s "http://127.0.0.1:${ADMIN_PORT[z-a]}/admin/plan?service=grpc" >"$WORK/plan-before.json"
check "the plan sends part of z-a's calls to other zones" python3 -c "
import json, sys
row = json.load(open('$WORK/plan-before.json'))['routes']['z-a']
sys.exit(0 if 0.05 < 1 - row['z-a'] < 0.95 else 1)"

echo "grpc-zone-traffic: ${CALLS[z-a]}, ${CALLS[z-b]}, ${CALLS[z-c]} unary gRPC calls through the proxies of z-a, z-b, z-c (h2load -c 8 -m 16)"
# One gRPC message (5-byte prefix, then "whoami") per call.
printf '\x00\x00\x00\x00\x06whoami' >"$WORK/message.bin"
declare -A LOAD_PID
STARTED=$(date +%s%N)
for zone in z-a z-b z-c; do
    timeout -k 5 60 h2load -n "${CALLS[$zone]}" -c 8 -m 16 -H 'content-type: application/grpc' -H 'te: trailers' \
        -d "$WORK/message.bin" "http://127.0.0.1:${PROXY_PORT[$zone]}/zw.Test/Unary" >"$WORK/h2load-$zone.txt" 2>&1 &
    LOAD_PID[$zone]=$!
done
for zone in z-a z-b z-c; do
    wait "${LOAD_PID[$zone]}"
done
LOAD_SECONDS=$(python3 -c "print(round(($(date +%s%N) - $STARTED) / 1e9, 1))")
for zone in z-a z-b z-c; do
    grep -E "^(requests|status codes):" "$WORK/h2load-$zone.txt" | sed "s/^/  h2load $zone: /"
    check "h2load via $zone: ${CALLS[$zone]} calls, all succeeded" \
        contains "$(cat "$WORK/h2load-$zone.txt")" "${CALLS[$zone]} succeeded, 0 failed"
    check "h2load via $zone: all 200" \
        contains "$(cat "$WORK/h2load-$zone.txt")" "status codes: ${CALLS[$zone]} 2xx, 0 3xx, 0 4xx, 0 5xx"
    curl -s "http://127.0.0.1:${ADMIN_PORT[$zone]}/metrics" >"$WORK/metrics-$zone.txt"
    curl -s "http://127.0.0.1:${ADMIN_PORT[$zone]}/admin/plan?service=grpc" >"$WORK/plan-$zone.json"
done

echo "grpc-zone-traffic: calls and streams counted once each"
for zone in z-a z-b z-c; do
    ok=$(metric_sum "$WORK/metrics-$zone.txt" zoneward_grpc_responses_total 'service="grpc"' 'grpc_status="0"')
    all=$(metric_sum "$WORK/metrics-$zone.txt" zoneward_grpc_responses_total 'service="grpc"')
    check "$zone: zoneward_grpc_responses_total{grpc_status=\"0\"} is ${CALLS[$zone]} ($ok, $all with any status)" \
        test "$ok" = "${CALLS[$zone]}" -a "$all" = "${CALLS[$zone]}"
    streams=$(metric_sum "$WORK/metrics-$zone.txt" zoneward_requests_total 'service="grpc"' "source_zone=\"$zone\"" 'code_class="2xx"')
    unrouted=$(metric_sum "$WORK/metrics-$zone.txt" zoneward_requests_total 'service="grpc"' 'destination_zone="none"')
    check "$zone: zoneward_requests_total counts ${CALLS[$zone]} 2xx streams ($streams), none unrouted ($unrouted)" \
        test "$streams" = "${CALLS[$zone]}" -a "$unrouted" = 0
done

echo "grpc-zone-traffic: measured routing matches the plan"
for zone in z-a z-b z-c; do
    replans=$(($(metric_sum "$WORK/metrics-$zone.txt" zoneward_replans_total) - ${REPLANS[$zone]}))
    check "$zone: no re-plan during the load ($replans)" test "$replans" = 0
done
check "every proxy routed by the same plan" python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
before = json.load(open(f"{work}/plan-before.json"))["routes"]
for zone in ["z-a", "z-b", "z-c"]:
    after = json.load(open(f"{work}/plan-{zone}.json"))["routes"]
    assert after == before, (zone, before, after)
PY
FRACTIONS=$(python3 "$ROOT/integration/lib/plan_fidelity.py" "$WORK" grpc z-a z-b z-c)
echo "$FRACTIONS"
DEVIATION=$(echo "$FRACTIONS" | awk '/max deviation/ {print $3}')
check "measured stream fractions match the plan within 0.02 (max deviation $DEVIATION)" \
    python3 -c "import sys; sys.exit(0 if '$DEVIATION' and float('$DEVIATION') <= 0.02 else 1)"

echo "FIGURE grpc-zone-traffic max |measured - plan| fraction: $DEVIATION ($TOTAL_CALLS calls in $LOAD_SECONDS s)"
if [ "$FAILED" != 0 ]; then
    for zone in z-a z-b z-c; do grep -v "^$" "$WORK/proxy-$zone.log" | tail -8 | sed "s/^/  proxy $zone: /"; done
fi
finish
