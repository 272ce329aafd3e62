#!/usr/bin/env bash
# Measured demand, closed loop: three zones with equal capacity (nginx, 1:1:1), three proxies (one per zone)
# reporting their demand to a controller and following its snapshot. Load from the zones' clients runs
# 60/30/10, then shifts to 10/30/60 while the configuration still says 60/30/10. Reported, side by side:
# the cross-zone share measured from the proxies' own /metrics with measured demand; what the stale
# configured plan and Envoy's algorithm would have sent across zones for the same measured load (their plan
# rows applied to it, from `zoneward plan`); the time from the shift until every proxy's plan was made for the
# new demand (goal ≤ 2 demand windows); and failed requests (goal 0).
source "$(dirname "$0")/lib/common.sh"

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
BASE=${ZONEWARD_IT_PORT_BASE_DEMAND:-24000}
API=$((BASE + 1))
WINDOW=5   # demandWindow, seconds (the default is 30 s; short here to keep the scenario short)
printf 'demand-token\n' >"$WORK/token"
chmod 600 "$WORK/token"

cat >"$WORK/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $WORK/nginx.pid; error_log $WORK/nginx-error.log warn;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $WORK; proxy_temp_path $WORK; fastcgi_temp_path $WORK;
  uwsgi_temp_path $WORK; scgi_temp_path $WORK;
  server { listen 127.0.0.1:$((BASE + 11)); listen 127.0.0.1:$((BASE + 12)); listen 127.0.0.1:$((BASE + 13));
    location / { return 200 "ok\n"; } } }
CONF
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK" &
PIDS+=($!)

# One configuration per proxy (its own listener and admin port); the controller reads the first.
for zone in a b c; do
    index=$(( $(printf '%d' "'$zone") - 96 ))
    cat >"$WORK/zoneward-$zone.yaml" <<YAML
zones: [{name: a, region: r}, {name: b, region: r}, {name: c, region: r}]
routing: {overloadFactor: 0.2, demandWindow: ${WINDOW}s, replanThreshold: 0.1}
services:
  - name: web
    listen: 127.0.0.1:$((BASE + 20 + index))
    demand: {a: 60, b: 30, c: 10}
    healthCheck: {interval: 1h}
    endpoints:
      - {address: 127.0.0.1:$((BASE + 11)), zone: a}
      - {address: 127.0.0.1:$((BASE + 12)), zone: b}
      - {address: 127.0.0.1:$((BASE + 13)), zone: c}
admin: {listen: 127.0.0.1:$((BASE + 30 + index))}
controller: {listen: 127.0.0.1:$API, tokenFile: $WORK/token}
YAML
done
"$ZW" controller --config "$WORK/zoneward-a.yaml" --db "$WORK/state.db" >"$WORK/controller.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$API/healthz" >/dev/null && break; sleep 0.1; done
for zone in a b c; do
    index=$(( $(printf '%d' "'$zone") - 96 ))
    "$ZW" proxy --config "$WORK/zoneward-$zone.yaml" --zone "$zone" --controller "http://127.0.0.1:$API" \
        --token-file "$WORK/token" --workers 1 >"$WORK/proxy-$zone.log" 2>&1 &
    PIDS+=($!)
done
for index in 1 2 3; do
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$((BASE + 30 + index))/readyz" >/dev/null && break; sleep 0.1; done
done
check "controller and three proxies are ready" curl -sf "http://127.0.0.1:$((BASE + 33))/readyz" -o /dev/null
PROXIES_STARTED=$(date +%s)

# The plan the proxies should converge to: the optimal rows for the new mix 10/30/60.
cat >"$WORK/target.json" <<JSON
{"overloadFactor": 0.2, "zones": [{"name": "a", "region": "r", "demand": 10, "capacity": 1},
  {"name": "b", "region": "r", "demand": 30, "capacity": 1}, {"name": "c", "region": "r", "demand": 60, "capacity": 1}]}
JSON
"$ZW" plan --topology "$WORK/target.json" --format json >"$WORK/target-plan.json"

# The load and the observer in one process: phase 1 (60/30/10) for 6 windows, then 10/30/60 for 10 windows.
# Every 0.25 s it reads each proxy's plan; it reports when every proxy's plan in force first had the rows
# of the optimal plan for the new mix (each probability within 0.05), and the cross-zone traffic of the
# last 4 windows from the proxies' /metrics.
python3 - "$BASE" "$WINDOW" "$WORK/result.json" "$WORK/target-plan.json" <<'PY'
import http.client, json, re, sys, threading, time, urllib.request
base, window, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
target = json.load(open(sys.argv[4]))["routes"]
zones = ["a", "b", "c"]
total_rate = 150.0  # requests per second over all zones
mix = {"a": 0.6, "b": 0.3, "c": 0.1}
stop = False
sent = {z: 0 for z in zones}
failed = {z: 0 for z in zones}

def client(zone, index):
    connection = http.client.HTTPConnection("127.0.0.1", base + 20 + index, timeout=5)
    next_at = time.monotonic()
    while not stop:
        next_at += 1.0 / max(total_rate * mix[zone], 0.1)
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            response.read()
            sent[zone] += 1
            if response.status != 200:
                failed[zone] += 1
        except Exception:
            sent[zone] += 1
            failed[zone] += 1
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", base + 20 + index, timeout=5)

def plans():
    result = {}
    for index, zone in enumerate(zones, 1):
        with urllib.request.urlopen(f"http://127.0.0.1:{base + 30 + index}/admin/plan?service=web", timeout=2) as answer:
            result[zone] = json.load(answer)
    return result

def traffic():
    pairs = {}
    for index, zone in enumerate(zones, 1):
        with urllib.request.urlopen(f"http://127.0.0.1:{base + 30 + index}/metrics", timeout=2) as answer:
            for line in answer.read().decode().splitlines():
                match = re.match(r'zoneward_requests_total\{service="web",source_zone="(\w)",destination_zone="(\w)",code_class="2xx"\} (\S+)', line)
                if match:
                    pairs[(match[1], match[2])] = pairs.get((match[1], match[2]), 0) + float(match[3])
    return pairs

threads = [threading.Thread(target=client, args=(zone, index), daemon=True) for index, zone in enumerate(zones, 1)]
for thread in threads:
    thread.start()
time.sleep(6 * window)
phase1 = plans()
mix = {"a": 0.1, "b": 0.3, "c": 0.6}
shift = time.monotonic()
converged = None
while time.monotonic() - shift < 6 * window:
    time.sleep(0.25)
    try:
        current = plans()
    except OSError:
        continue
    ok = all(
        abs(plan["routes"][s][t] - target[s][t]) <= 0.05
        for zone, plan in current.items() for s in zones for t in zones if s == zone
    )
    if ok and converged is None:
        converged = time.monotonic() - shift
        break
time.sleep(max(0, shift + 6 * window - time.monotonic()))
before = traffic()
time.sleep(4 * window)
after = traffic()
final = plans()
stop = True
for thread in threads:
    thread.join(timeout=10)
delta = {pair: after.get(pair, 0) - before.get(pair, 0) for pair in after}
json.dump({
    "converged": converged,
    "window": window,
    "phase1Demand": phase1["a"].get("demand"),
    "finalDemand": final["a"].get("demand"),
    "traffic": {f"{s}->{t}": n for (s, t), n in sorted(delta.items())},
    "sent": sent, "failed": failed,
}, open(out, "w"), indent=1)
PY
RESULT=$(cat "$WORK/result.json")

# The measured load of the last 4 windows, and what each plan would send across zones for it.
python3 - "$WORK/result.json" "$ZW" "$WORK" <<'PY' >"$WORK/report.txt"
import json, subprocess, sys
result, zw, work = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
traffic = result["traffic"]
zones = ["a", "b", "c"]
load = {s: sum(n for pair, n in traffic.items() if pair.startswith(s + "->")) for s in zones}
total = sum(load.values()) or 1
cross = sum(n for pair, n in traffic.items() if pair[0] != pair[-1])
served = {t: sum(n for pair, n in traffic.items() if pair.endswith("->" + t)) for t in zones}

def plan(demand):
    topology = {"overloadFactor": 0.2, "zones": [
        {"name": z, "region": "r", "demand": demand[z], "capacity": 1} for z in zones]}
    path = f"{work}/topology.json"
    json.dump(topology, open(path, "w"))
    return json.loads(subprocess.run([zw, "plan", "--topology", path, "--format", "json"], check=True,
                                      capture_output=True, text=True).stdout)

def crossing(routes):
    return sum(load[s] * (1 - routes[s][s]) for s in zones) / total

stale = plan({"a": 60, "b": 30, "c": 10})
actual = plan(load)
envoy_share = actual["envoy"]["crossZoneFraction"]
print(f"measured load (last 4 windows): " + ", ".join(f"{z} {load[z] / total:.0%}" for z in zones))
def worst(routes):
    return max(sum(load[s] * routes[s][t] for s in zones) / (total / 3) for t in zones)

print("                                    cross-zone share   worst zone load ÷ fair share")
print(f"measured demand (proxies' /metrics)       {cross / total:.3f}              {max(served[t] / (total / 3) for t in zones):.2f}")
print(f"optimal plan for the measured load        {actual['crossZoneFraction']:.3f}              {actual['maxLoadFactor']:.2f}")
print(f"configured (stale) demand 60/30/10        {crossing(stale['routes']):.3f}              {worst(stale['routes']):.2f}")
print(f"Envoy's zone-aware routing                {envoy_share:.3f}              {actual['envoy']['maxLoadFactor']:.2f}")
print(f"plan matched the new demand after: {result['converged']} s (goal ≤ {2 * result['window']:.0f} s)")
print(f"requests: {sum(result['sent'].values())}, failed: {sum(result['failed'].values())}")
PY
sed 's/^/  /' "$WORK/report.txt"
CONVERGED=$(python3 -c "import json; print(json.load(open('$WORK/result.json'))['converged'])")
check "every proxy planned for the new demand within 2 demand windows ($CONVERGED s ≤ $((2 * WINDOW)) s)" \
    python3 -c "c = $CONVERGED; exit(0 if c is not None and c <= 2 * $WINDOW else 1)"
row() { grep "^$1" "$WORK/report.txt" | awk '{print $(NF-1), $NF}'; }
read -r MEASURED_CROSS MEASURED_LOAD <<<"$(row "measured demand")"
read -r STALE_CROSS STALE_LOAD <<<"$(row configured)"
read -r ENVOY_CROSS _ <<<"$(row Envoy)"
check "measured demand keeps every zone within its bound ($MEASURED_LOAD ≤ 1.2, with 0.1 for sampling)" \
    python3 -c "exit(0 if $MEASURED_LOAD <= 1.3 else 1)"
check "the stale configured plan would overload a zone ($STALE_LOAD > 1.2)" python3 -c "exit(0 if $STALE_LOAD > 1.2 else 1)"
check "measured demand crosses zones less than Envoy ($MEASURED_CROSS < $ENVOY_CROSS)" \
    python3 -c "exit(0 if $MEASURED_CROSS < $ENVOY_CROSS else 1)"
check "no request failed through the re-plans" contains "$(tail -1 "$WORK/report.txt")" "failed: 0"
check "the demand in /admin/plan says where it came from" contains "$RESULT" '"source": "measured"'
run_zw 0 "zoneward plan --from-controller plans for the measured demand" plan --from-controller "http://127.0.0.1:$API" \
    --token-file "$WORK/token" --config "$WORK/zoneward-a.yaml" --service web
check "and says where each zone's demand came from" contains "$OUT" "Demand source per zone: a measured, b measured, c measured"
check "and how old it is" contains "$OUT" "Measured demand as of"
run_zw 2 "plan with neither --topology nor --from-controller is refused" plan

# The bill of this run's traffic, and of the same traffic routed other ways, from the proxies' counters.
for index in 1 2 3; do curl -s "http://127.0.0.1:$((BASE + 30 + index))/metrics" >"$WORK/metrics-$index.prom"; done
ELAPSED=$(( $(date +%s) - PROXIES_STARTED ))
COST=(cost --config "$WORK/zoneward-a.yaml" --metrics "$WORK/metrics-1.prom" --metrics "$WORK/metrics-2.prom"
    --metrics "$WORK/metrics-3.prom" --window "${ELAPSED}s")
run_zw 0 "zoneward cost prices the measured traffic" "${COST[@]}"
echo "$OUT" | sed 's/^/    /'
check "and the alternatives" bash -c 'for a in measured envoy prefer-same-zone round-robin "zoneward α=0.2 (α in force)"; do
    [[ "$1" == *"$a"* ]] || exit 1; done' _ "$OUT"
run_zw 0 "zoneward cost --format svg draws the Pareto plot" "${COST[@]}" --format svg
printf '%s\n' "$OUT" >"$WORK/cost.svg"
check "the plot names every alternative" bash -c 'for a in "measured (plan in force)" envoy prefer-same-zone round-robin "α=0.2"; do
    grep -qF "$a" "$1" || exit 1; done' _ "$WORK/cost.svg"
if command -v rsvg-convert >/dev/null; then
    check "the plot renders to PNG (rsvg-convert)" bash -c "rsvg-convert -o '$WORK/cost.png' '$WORK/cost.svg' && [ -s '$WORK/cost.png' ]"
fi
[ -n "${COST_PLOT_OUT:-}" ] && cp "$WORK/cost.svg" "$COST_PLOT_OUT"
run_zw 2 "saved metrics without --window are refused, naming it" cost --config "$WORK/zoneward-a.yaml" --metrics "$WORK/metrics-1.prom"
check "the error names --window" contains "$ERR" "--window"
finish
