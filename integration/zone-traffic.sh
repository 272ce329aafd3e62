#!/usr/bin/env bash
# Zone-aware routing end to end: 6 nginx backends over 3 zones (2 regions) with unequal weights, one
# zoneward proxy per zone, real requests on loopback.
#   1. per-(source, destination) fractions in /metrics match each proxy's plan within 0.02;
#   2. killing one backend under steady load fails no GET;
#   3. killing every backend of a zone moves its traffic within 2 s, with no failures after that;
#   4. `zoneward zone drain` takes a zone's share to 0 within 1 s.
# Between 1 and 2, the status page (`GET /` on the admin port) is loaded in headless Chromium under load:
# its DOM names every zone and carries /admin/plan's route probabilities; a screenshot is taken.
source "$(dirname "$0")/lib/common.sh"

if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
    echo "installing nginx from Debian"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light) >/dev/null 2>&1 ||
        (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx) >/dev/null 2>&1
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "nginx is not available"; exit 1; }
LOAD="python3 $ROOT/integration/lib/load.py"
BASE=${ZONEWARD_IT_PORT_BASE:-23100}

# backend name, zone, port, weight
BACKENDS=(
    "a1 z-a $((BASE + 1)) 2"
    "a2 z-a $((BASE + 2)) 1"
    "b1 z-b $((BASE + 3)) 1"
    "b2 z-b $((BASE + 4)) 1"
    "c1 z-c $((BASE + 5)) 3"
    "c2 z-c $((BASE + 6)) 1"
)
declare -A BACKEND_PID
start_backend() { # name zone port
    local name=$1 zone=$2 port=$3 dir="$WORK/nginx-$1"
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir; proxy_temp_path $dir; fastcgi_temp_path $dir; uwsgi_temp_path $dir; scgi_temp_path $dir;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$port;
        location /healthz { return 200 "ok\n"; }
        location / { return 200 "zone=$zone backend=$name\n"; }
    }
}
CONF
    "$NGINX" -c "$dir/nginx.conf" -p "$dir" &
    BACKEND_PID[$name]=$!
    PIDS+=($!)
}
for backend in "${BACKENDS[@]}"; do
    # shellcheck disable=SC2086
    start_backend $backend
done

# One configuration per proxy: the same topology, its own listener and admin port.
write_config() { # zone listen-port admin-port
    local listen=$2 admin=$3
    {
        echo "zones:"
        echo "  - {name: z-a, region: r1}"
        echo "  - {name: z-b, region: r1}"
        echo "  - {name: z-c, region: r2}"
        # The plan's fidelity is measured against a fixed plan: demand pinned to the configured one.
        echo "routing: {overloadFactor: 0.2, costs: {crossZone: 1, crossRegion: 10}, measuredDemand: false}"
        echo "services:"
        echo "  - name: web"
        echo "    listen: 127.0.0.1:$listen"
        echo "    demand: {z-a: 6, z-b: 3, z-c: 1}"
        echo "    healthCheck: {path: /healthz, interval: 300ms, timeout: 250ms, unhealthyThreshold: 2, healthyThreshold: 2}"
        echo "    endpoints:"
        for backend in "${BACKENDS[@]}"; do
            # shellcheck disable=SC2086
            set -- $backend
            echo "      - {address: 127.0.0.1:$3, zone: $2, weight: $4}"
        done
        echo "admin: {listen: 127.0.0.1:$admin}"
    } >"$WORK/proxy-$1.yaml"
}
export ZONEWARD_DB="$WORK/state.db"
declare -A PROXY_PORT ADMIN_PORT
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

wait_ready() { # admin port
    local i
    for i in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0
        sleep 0.1
    done
    return 1
}
for zone in z-a z-b z-c; do
    check "proxy in $zone is ready" wait_ready "${ADMIN_PORT[$zone]}"
done
sleep 1 # first health checks

echo "zone-traffic: 1. measured routing matches the plan"
$LOAD --port "${PROXY_PORT[z-a]}" --count 10000 --threads 4 >"$WORK/load-a.json" &
load_a=$!
$LOAD --port "${PROXY_PORT[z-b]}" --count 6000 --threads 3 >"$WORK/load-b.json" &
load_b=$!
$LOAD --port "${PROXY_PORT[z-c]}" --count 2000 --threads 2 >"$WORK/load-c.json"
wait $load_a $load_b
for zone in z-a z-b z-c; do
    curl -s "http://127.0.0.1:${ADMIN_PORT[$zone]}/metrics" >"$WORK/metrics-$zone.txt"
    curl -s "http://127.0.0.1:${ADMIN_PORT[$zone]}/admin/plan?service=web" >"$WORK/plan-$zone.json"
done
check "every request of the measured load succeeded" python3 - "$WORK" <<'PY'
import json, sys
for zone in "abc":
    result = json.load(open(f"{sys.argv[1]}/load-{zone}.json"))
    assert result["failed"] == 0, result
PY
FRACTIONS=$(python3 "$ROOT/integration/lib/plan_fidelity.py" "$WORK" web z-a z-b z-c)
echo "$FRACTIONS"
DEVIATION=$(echo "$FRACTIONS" | awk '/max deviation/ {print $3}')
check "measured fractions match the plan within 0.02 (max deviation $DEVIATION)" \
    python3 -c "import sys; sys.exit(0 if float('$DEVIATION') <= 0.02 else 1)"

echo "zone-traffic: 1b. the status page under load, in headless Chromium"
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ]; then
    fail "chromium is not installed (apt-get install chromium; .ci/run installs it)"
else
    # chromium OUTPUT ARGS...: headless, with a throwaway profile, bounded; on timeout only its own process
    # group (timeout's child and the helpers it started) is killed.
    chromium_run() {
        local output=$1 profile
        shift
        profile=$(mktemp -d "$WORK/chromium-profile.XXXXXX")
        timeout -k 5 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$profile" \
            "$@" >"$output" 2>>"$WORK/chromium.log"
    }
    PAGE="http://127.0.0.1:${ADMIN_PORT[z-a]}/"
    $LOAD --port "${PROXY_PORT[z-a]}" --count 1000000 --seconds 12 --threads 2 >"$WORK/page-load.json" &
    page_load=$!
    sleep 1
    curl -s "http://127.0.0.1:${ADMIN_PORT[z-a]}/admin/plan" >"$WORK/page-plan-before.json"
    check "chromium --dump-dom loads the status page" chromium_run "$WORK/page-dom.html" --dump-dom "$PAGE"
    curl -s "http://127.0.0.1:${ADMIN_PORT[z-a]}/admin/plan" >"$WORK/page-plan-after.json"
    check "chromium --screenshot takes the status page" \
        chromium_run "$WORK/chromium-screenshot.out" --screenshot="$WORK/status-page.png" --window-size=1280,1000 "$PAGE"
    load_running=0
    kill -0 "$page_load" 2>/dev/null && load_running=1
    wait "$page_load"
    check "the load was still running when the pages were taken" [ "$load_running" = 1 ]
    check "the DOM names every zone and shows /admin/plan's route probabilities" \
        python3 - "$WORK/page-dom.html" "$WORK/page-plan-before.json" "$WORK/page-plan-after.json" <<'PY'
import json, re, sys
dom = open(sys.argv[1]).read()
before, after = (json.load(open(path)) for path in sys.argv[2:4])
assert before["version"] == after["version"], "the plan changed while the page was taken"
routes = before["services"]["web"]["routes"]
assert "<h1>Zoneward proxy · zone z-a</h1>" in dom, dom[:500]
def cell(name):
    match = re.search(r'data-cell="' + re.escape(name) + r'".*?<text[^>]*>([^<]*)</text>', dom, re.S)
    return match and match.group(1)
for zone in ["z-a", "z-b", "z-c"]:
    assert f'<td data-zone="{zone}">{zone}</td>' in dom, zone
    for destination in ["z-a", "z-b", "z-c"]:
        expected = f"{routes[zone][destination]:.2f}"
        assert cell(f"plan {zone} {destination}") == expected, (zone, destination, cell(f"plan {zone} {destination}"), expected)
# This proxy measured its own zone's requests: that row has numbers, the other zones' rows do not.
shares = [cell(f"measured z-a {d}") for d in ["z-a", "z-b", "z-c"]]
assert all(re.fullmatch(r"\d\.\d\d", s or "") for s in shares), shares
assert abs(sum(float(s) for s in shares) - 1) < 0.02, shares
assert cell("measured z-b z-a") == "—"
print(f"    plan z-a → z-a {routes['z-a']['z-a']:.4f} shown as {cell('plan z-a z-a')}; measured z-a row {shares}")
PY
    check "the screenshot is a non-empty PNG" python3 -c "
import sys
data = open('$WORK/status-page.png', 'rb').read()
sys.exit(0 if len(data) > 10000 and data[:8] == bytes.fromhex('89504e470d0a1a0a') else 1)"
    [ -s "$WORK/status-page.png" ] && echo "  screenshot: $(wc -c <"$WORK/status-page.png") bytes"
    if [ -n "${ZONEWARD_STATUS_SCREENSHOT:-}" ] && [ -s "$WORK/status-page.png" ]; then
        cp "$WORK/status-page.png" "$ZONEWARD_STATUS_SCREENSHOT"
    fi
fi

echo "zone-traffic: 2. kill one backend under steady load"
$LOAD --port "${PROXY_PORT[z-a]}" --count 6000 --seconds 6 --threads 4 >"$WORK/kill-one.json" &
load=$!
sleep 1.5
kill -9 "${BACKEND_PID[a2]}"
wait $load
KILL_ONE_FAILED=$(python3 -c "import json; print(json.load(open('$WORK/kill-one.json'))['failed'])")
KILL_ONE_TOTAL=$(python3 -c "import json; print(json.load(open('$WORK/kill-one.json'))['total'])")
check "no GET failed when a backend was killed ($KILL_ONE_FAILED of $KILL_ONE_TOTAL)" [ "$KILL_ONE_FAILED" = 0 ]

echo "zone-traffic: 3. kill every backend of zone z-a"
$LOAD --port "${PROXY_PORT[z-a]}" --count 8000 --seconds 6 --threads 4 --timeline >"$WORK/kill-zone.json" &
load=$!
sleep 1.5
killed_at=$(python3 -c "import time; print(time.monotonic())")
kill -9 "${BACKEND_PID[a1]}"
moved_after=""
for i in $(seq 1 60); do
    if curl -s "http://127.0.0.1:${ADMIN_PORT[z-a]}/admin/plan?service=web" |
        python3 -c "import json,sys; r=json.load(sys.stdin)['routes']['z-a']; sys.exit(0 if r['z-a'] == 0 else 1)"; then
        moved_after=$(python3 -c "import time; print(round(time.monotonic() - $killed_at, 2))")
        break
    fi
    sleep 0.05
done
wait $load
echo "  plan moved z-a's traffic after ${moved_after:-never} s"
check "the plan moved z-a's traffic within 2 s (${moved_after:-never} s)" \
    python3 -c "import sys; sys.exit(0 if '$moved_after' and float('$moved_after') <= 2 else 1)"
ZONE_FAILED=$(python3 - "$WORK/kill-zone.json" "$killed_at" "${moved_after:-99}" <<'PY'
import json, sys
result = json.load(open(sys.argv[1]))
moved = float(sys.argv[2]) - result["startedAt"] + float(sys.argv[3])
before = sum(1 for t, outcome in result["timeline"] if outcome.startswith("FAIL") and t < moved)
after = sum(1 for t, outcome in result["timeline"] if outcome.startswith("FAIL") and t >= moved)
print(before, after, result["total"])
PY
)
read -r zone_failed_before zone_failed_after zone_total <<<"$ZONE_FAILED"
check "no request failed after the traffic moved ($zone_failed_after of $zone_total)" [ "$zone_failed_after" = 0 ]

echo "zone-traffic: 4. drain zone z-b"
"$ZW" zone drain z-b --for 10m --reason "integration test" >/dev/null
drained_at=$(python3 -c "import time; print(time.monotonic())")
drained_after=""
for i in $(seq 1 40); do
    if curl -s "http://127.0.0.1:${ADMIN_PORT[z-b]}/admin/plan?service=web" |
        python3 -c "import json,sys; r=json.load(sys.stdin)['routes']; sys.exit(0 if all(row['z-b'] == 0 for row in r.values()) else 1)"; then
        drained_after=$(python3 -c "import time; print(round(time.monotonic() - $drained_at, 2))")
        break
    fi
    sleep 0.05
done
echo "  z-b's share reached 0 after ${drained_after:-never} s"
check "a drain takes z-b's share to 0 within 1 s (${drained_after:-never} s)" \
    python3 -c "import sys; sys.exit(0 if '$drained_after' and float('$drained_after') <= 1 else 1)"
$LOAD --port "${PROXY_PORT[z-b]}" --count 500 --threads 2 >"$WORK/drained.json"
check "no request is served in the drained zone" python3 -c \
    "import json; r=json.load(open('$WORK/drained.json')); assert r['failed']==0 and 'z-b' not in r['zones'], r"
# Read whole before matching: with pipefail, `curl | grep -q` fails when grep stops reading before curl ends.
curl -s "http://127.0.0.1:${ADMIN_PORT[z-b]}/metrics" >"$WORK/metrics-drained.txt"
grep -q 'zoneward_routing_state{service="web",state="draining"} 1' "$WORK/metrics-drained.txt" &&
    pass "the routing-state gauge says draining" || fail "the routing-state gauge says draining"

echo "FIGURE zone-traffic max |measured - plan| fraction: $DEVIATION"
echo "FIGURE zone-traffic failed GETs when one backend was killed: $KILL_ONE_FAILED of $KILL_ONE_TOTAL"
echo "FIGURE zone-traffic plan rerouted a dead zone after: ${moved_after:-never} s; failed requests before: $zone_failed_before, after: $zone_failed_after, of $zone_total"
echo "FIGURE zone-traffic drain took the zone's share to 0 after: ${drained_after:-never} s"
finish
