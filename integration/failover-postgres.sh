#!/usr/bin/env bash
# Region failover with real PostgreSQL: region ra runs a primary, region rb a synchronous streaming
# standby; service `orders` is a TCP listener of a zoneward proxy that follows the controller. A writer
# inserts numbered rows through the proxy. Kill ra's PostgreSQL: the controller fences ra, promotes rb
# (pg_ctl promote), bumps the epoch, and the proxy reroutes. Checks: writes resume through the same
# address; every acknowledged row is on rb; the old primary, restarted, gets no traffic. Then 20 trials
# of kill -9 of the controller mid-switchover: every operation ends done or failed, the epoch consistent.
source "$(dirname "$0")/lib/common.sh"

BASE=${ZONEWARD_IT_PORT_BASE_FAILOVER:-25400}
PORT_A=$((BASE + 32))
PORT_B=$((BASE + 33))
ORDERS=$((BASE + 50))
ADMIN=$((BASE + 51))
API=$((BASE + 90))
source "$(dirname "$0")/lib/pg_pair.sh"

echo "failover-postgres: primary in ra, synchronous standby in rb"
pg_pair_start

echo "secret-$RANDOM$RANDOM" >"$WORK/token"
chmod 600 "$WORK/token"   # token files readable by others are refused
SCRIPTS="$ROOT/runbooks/scripts"
cat >"$WORK/zoneward.yaml" <<YAML
zones:
  - {name: za, region: ra}
  - {name: zb, region: rb}
services:
  - name: orders
    listen: 127.0.0.1:$ORDERS
    protocol: tcp
    routing: activeRegion
    regions: [ra, rb]
    healthCheck: {interval: 1s, timeout: 500ms}
    endpoints:
      - {address: 127.0.0.1:$PORT_A, zone: za}
      - {address: 127.0.0.1:$PORT_B, zone: zb}
    failover:
      mode: automatic
      probes:
        ra: {tcp: 127.0.0.1:$PORT_A, interval: 1s, timeout: 500ms, failuresToDown: 2, successesToUp: 2}
        rb: {tcp: 127.0.0.1:$PORT_B, interval: 1s, timeout: 500ms, failuresToDown: 2, successesToUp: 2}
      maxLagSeconds: 5
      lag: {command: [$SCRIPTS/pg-lag.sh]}
      cooldown: 5m
      fence: {command: [$SCRIPTS/pg-fence.sh], timeout: 20s}
      promote: {command: [$SCRIPTS/pg-promote.sh], timeout: 30s}
      verifyTimeout: 15s
  - name: trial
    listen: 127.0.0.1:$((BASE + 52))
    protocol: tcp
    routing: activeRegion
    regions: [ra, rb]
    endpoints:
      - {address: 127.0.0.1:$PORT_B, zone: za}
      - {address: 127.0.0.1:$PORT_B, zone: zb}
    failover:
      mode: manual
      probes:
        ra: {tcp: 127.0.0.1:$ADMIN, interval: 200ms, timeout: 200ms}
        rb: {tcp: 127.0.0.1:$ADMIN, interval: 200ms, timeout: 200ms}
      fence: {command: [sleep, "0.3"]}
      promote: {command: [sleep, "0.3"]}
admin: {listen: 127.0.0.1:$ADMIN}
controller: {listen: 127.0.0.1:$API, tokenFile: $WORK/token}
YAML
check "the configuration is valid" "$ZW" config check "$WORK/zoneward.yaml"
DB="$WORK/state.db"
start_controller() {
    "$ZW" controller --config "$WORK/zoneward.yaml" --db "$DB" >>"$WORK/controller.log" 2>&1 &
    CONTROLLER=$!
    PIDS+=($CONTROLLER)
    local i
    for i in $(seq 1 100); do curl -sf "http://127.0.0.1:$API/healthz" >/dev/null && return 0; sleep 0.05; done
    return 1
}
check "the controller starts" start_controller
"$ZW" proxy --config "$WORK/zoneward.yaml" --zone za --controller "http://127.0.0.1:$API" --token-file "$WORK/token" \
    --workers 1 >"$WORK/proxy.log" 2>&1 &
PIDS+=($!)
for i in $(seq 1 100); do curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null && break; sleep 0.1; done
sleep 2.5 # probes settle; the standby's lag is measured
via_controller() { "$ZW" failover "$@" --controller "http://127.0.0.1:$API" --token-file "$WORK/token"; }
run_zw 0 "failover status answers" failover status --controller "http://127.0.0.1:$API" --token-file "$WORK/token"
echo "$OUT" | sed 's/^/    /'
check "status says automatic failover would not fire while the primary is up" contains "$OUT" "would not fire"
run_zw 0 "failover plan shows the guards and changes nothing" \
    failover plan orders --to rb --controller "http://127.0.0.1:$API" --token-file "$WORK/token"
check "the plan lists the steps" contains "$OUT" "planned → fencing → promoting → rerouting → verifying → done"
run_zw 2 "an unknown service is refused" \
    failover plan nosuch --to rb --controller "http://127.0.0.1:$API" --token-file "$WORK/token"
echo "wrong" >"$WORK/bad-token"
chmod 600 "$WORK/bad-token"
run_zw 2 "a wrong token is refused" failover status --controller "http://127.0.0.1:$API" --token-file "$WORK/bad-token"

echo "failover-postgres: writer through the proxy, then kill the primary"
python3 - "$ORDERS" "$WORK" >"$WORK/writer.json" <<'PY' &
import json, subprocess, sys, time, os
port, work = sys.argv[1], sys.argv[2]
acked = []
failed = 0
start = time.time()
n = 0
while time.time() - start < 40 and not os.path.exists(f"{work}/stop-writer"):
    n += 1
    sent = time.time()
    result = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-qAtc",
         f"INSERT INTO orders (n) VALUES ({n}) RETURNING inet_server_port()"],
        capture_output=True, text=True, env={**os.environ, "PGCONNECT_TIMEOUT": "1"})
    if result.returncode == 0:
        acked.append([n, time.time(), int(result.stdout.strip() or 0), sent])
    else:
        failed += 1
        time.sleep(0.02)
print(json.dumps({"acked": acked, "failed": failed}))
PY
WRITER=$!
sleep 3
KILLED_AT=$(python3 -c "import time; print(time.time())")
kill -9 "$(pg_pid "$A")"
for i in $(seq 1 150); do
    "$ZW" failover status --format json --db "$DB" --config "$WORK/zoneward.yaml" 2>/dev/null |
        python3 -c "import json,sys; s=[x for x in json.load(sys.stdin)['services'] if x['name']=='orders'][0]; sys.exit(0 if s['activeRegion']=='rb' and s['epoch']==1 and s['lastOperation']['state']=='done' else 1)" &&
        break
    sleep 0.2
done
sleep 4
touch "$WORK/stop-writer"
wait "$WRITER"
RESULT=$(python3 - "$WORK/writer.json" "$KILLED_AT" "$PORT_A" "$PORT_B" <<'PY'
import json, sys
data = json.load(open(sys.argv[1])); killed = float(sys.argv[2]); a, b = int(sys.argv[3]), int(sys.argv[4])
# Split by send time: a write sent before the kill may be acknowledged by the old primary just after it.
before = [x for x in data["acked"] if x[3] < killed]
after = [x for x in data["acked"] if x[3] >= killed]
rto = (after[0][1] - max(x[1] for x in before)) if before and after else float("nan")
print(f"{rto:.2f} {len(before)} {len(after)} {all(x[2] == b for x in after)} {max(x[0] for x in data['acked'])}")
PY
)
read -r RTO ACK_BEFORE ACK_AFTER AFTER_ON_B LAST_N <<<"$RESULT"
echo "  acknowledged before the kill: $ACK_BEFORE, after: $ACK_AFTER; RTO $RTO s"
check "the controller failed over to rb (epoch 1)" bash -c "'$ZW' failover status --format json --db '$DB' --config '$WORK/zoneward.yaml' | grep -q '\"activeRegion\" : \"rb\"'"
check "writes resumed through the same proxy address" [ "$ACK_AFTER" -gt 0 ]
check "writes sent after the kill land on rb" [ "$AFTER_ON_B" = True ]
check "RTO is at most 5 s ($RTO s)" python3 -c "import sys; sys.exit(0 if float('$RTO') <= 5 else 1)"
check "every acknowledged row exists on rb" python3 - "$WORK/writer.json" "$PORT_B" <<'PY'
import json, subprocess, sys
acked = {x[0] for x in json.load(open(sys.argv[1]))["acked"]}
rows = subprocess.run(["psql", "-h", "127.0.0.1", "-p", sys.argv[2], "-U", "postgres", "-Atc", "SELECT n FROM orders"],
                      capture_output=True, text=True, check=True).stdout.split()
missing = acked - {int(r) for r in rows}
assert not missing, f"missing on rb: {sorted(missing)[:10]}"
PY
check "the operation's steps were recorded" bash -c "'$ZW' failover history --format json --db '$DB' --config '$WORK/zoneward.yaml' | grep -q '\"state\" : \"done\"'"

echo "failover-postgres: the old primary comes back"
rm -f "$A/postmaster.pid"
as_postgres "$PGBIN/pg_ctl" -D "$A" -l "$WORK/sock/pg-a.log" -w start >/dev/null
sleep 1
PORTS=$(for i in $(seq 1 10); do psql -h 127.0.0.1 -p "$ORDERS" -U postgres -Atc "SELECT inet_server_port()"; done | sort -u | tr '\n' ' ')
check "the restarted old primary gets no traffic (served by: $PORTS)" [ "$PORTS" = "$PORT_B " ]
check "the old primary saw no client after the failover" bash -c \
    "[ \$(psql -h 127.0.0.1 -p $PORT_A -U postgres -Atc \"SELECT count(*) FROM orders WHERE n > $LAST_N\") = 0 ]"

echo "failover-postgres: kill -9 the controller during switchovers, 20 trials"
FINAL=0
FOLLOW=""
for trial in $(seq 1 20); do
    target=$([ $((trial % 2)) = 1 ] && echo rb || echo ra)
    via_controller execute trial --to "$target" --yes --reason "trial $trial" >>"$WORK/trials.log" 2>&1 &
    cli=$!
    sleep "$(python3 -c "import random; print(round(random.uniform(0.05, 1.2), 2))")"
    kill -9 "$CONTROLLER" 2>/dev/null
    wait "$CONTROLLER" 2>/dev/null
    wait "$cli" 2>/dev/null
    start_controller || { fail "controller restart in trial $trial"; continue; }
    for i in $(seq 1 100); do
        "$ZW" failover history --format json --limit 1 --db "$DB" --config "$WORK/zoneward.yaml" 2>/dev/null |
            python3 -c "import json,sys; o=json.load(sys.stdin); sys.exit(0 if not o or o[0]['service']!='trial' or o[0]['state'] in ('done','failed') else 1)" &&
            break
        sleep 0.1
    done
    # The proxy follows the restarted controller at once: it routes za's traffic to the active region's zone.
    active=$(python3 -c "import sqlite3,sys; r=sqlite3.connect(sys.argv[1]).execute(\"SELECT activeRegion FROM serviceState WHERE service='trial'\").fetchone(); print(r[0] if r else 'ra')" "$DB")
    want=$([ "$active" = rb ] && echo zb || echo za)
    started=$(date +%s.%N)
    followed=""
    for i in $(seq 1 100); do
        if curl -sf "http://127.0.0.1:$ADMIN/admin/plan?service=trial" |
            python3 -c "import json,sys; r=json.load(sys.stdin)['routes'].get('za',{}); sys.exit(0 if r and max(r,key=r.get)=='$want' else 1)" 2>/dev/null; then
            followed=$(python3 -c "print(round($(date +%s.%N) - $started, 2))")
            break
        fi
        sleep 0.1
    done
    FOLLOW="$FOLLOW ${followed:-never}"
done
echo "  proxy followed the restarted controller after (s):$FOLLOW"
check "the proxy followed every restarted controller within 3 s" \
    python3 -c "import sys; v=sys.argv[1:]; sys.exit(0 if all(x!='never' and float(x)<3 for x in v) else 1)" $FOLLOW
TRIALS=$(python3 - "$DB" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
ops = db.execute("SELECT state, epochAfter FROM failoverOperation WHERE service='trial'").fetchall()
final = sum(1 for s, _ in ops if s in ("done", "failed"))
rerouted = sum(1 for _, e in ops if e is not None)
epoch = (db.execute("SELECT epoch FROM serviceState WHERE service='trial'").fetchone() or [0])[0]
print(final, len(ops), rerouted, epoch)
PY
)
read -r FINAL TOTAL REROUTED EPOCH <<<"$TRIALS"
check "20 switchovers were started ($TOTAL)" [ "$TOTAL" = 20 ]
check "every interrupted operation reached a final state ($FINAL of $TOTAL)" [ "$FINAL" = "$TOTAL" ]
check "the epoch moved exactly once per rerouted operation (epoch $EPOCH, rerouted $REROUTED)" [ "$EPOCH" = "$REROUTED" ]

echo "FIGURE failover-postgres RTO: $RTO s"
echo "FIGURE failover-postgres resume trials: $FINAL of $TOTAL reached a final state"
finish
