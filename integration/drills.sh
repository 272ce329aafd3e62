#!/usr/bin/env bash
# DR drills measured, not claimed, against the real PostgreSQL pair of failover-postgres.sh (lib/pg_pair.sh):
# `zoneward drill switchover orders --to rb --and-back` moves the primary to rb and back through the controller
# while a probe loop writes through the proxy, re-seeding the old primary as a standby after each leg
# (runbooks/scripts/pg-rejoin.sh); `zoneward drill restore --job state` restores the newest backup of the
# controller's own SQLite state into a scratch location and checks it. Checks: both drills recorded with
# plausible RTO per leg and RPO, exported as metrics and in the status report; `drill status` exits 0 while
# fresh and 1 once the policy (1s) is exceeded.
source "$(dirname "$0")/lib/common.sh"

BASE=${ZONEWARD_IT_PORT_BASE_DRILLS:-26800}
PORT_A=$((BASE + 32))
PORT_B=$((BASE + 33))
ORDERS=$((BASE + 50))
ADMIN=$((BASE + 51))
API=$((BASE + 90))
source "$(dirname "$0")/lib/pg_pair.sh"

echo "drills: primary in ra, synchronous standby in rb"
pg_pair_start

echo "secret-$RANDOM$RANDOM" >"$WORK/token"
chmod 600 "$WORK/token"
head -c 32 /dev/urandom | base64 >"$WORK/backup.key"
chmod 600 "$WORK/backup.key"
mkdir -p "$WORK/backups"
SCRIPTS="$ROOT/runbooks/scripts"
DB="$WORK/state.db"
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
      mode: manual
      probes:
        ra: {tcp: 127.0.0.1:$PORT_A, interval: 500ms, timeout: 500ms, failuresToDown: 2, successesToUp: 2}
        rb: {tcp: 127.0.0.1:$PORT_B, interval: 500ms, timeout: 500ms, failuresToDown: 2, successesToUp: 2}
      maxLagSeconds: 5
      lag: {command: [$SCRIPTS/pg-lag.sh]}
      fence: {command: [$SCRIPTS/pg-fence.sh], timeout: 20s}
      promote: {command: [$SCRIPTS/pg-promote.sh], timeout: 30s}
      verifyTimeout: 15s
      drill: {every: 10m, rtoTarget: 30s}
backups:
  - name: state
    source: {sqlite: $DB}
    schedule: "0 3 * * *"
    targets: [{filesystem: $WORK/backups}]
    encryption: {keyFile: $WORK/backup.key}
    verify: never
    drill: {every: 10m, rtoTarget: 1m, rpoTarget: 1h}
admin: {listen: 127.0.0.1:$ADMIN}
controller: {listen: 127.0.0.1:$API, tokenFile: $WORK/token}
YAML
check "the configuration is valid" "$ZW" config check "$WORK/zoneward.yaml"
sed 's/drill: {every: 10m, rtoTarget: 30s}/drill: {every: 10m, rtoTarget: 30s, schedule: "every day"}/' \
    "$WORK/zoneward.yaml" >"$WORK/bad.yaml"
run_zw 2 "a bad drill schedule is refused" config check "$WORK/bad.yaml"
check "the refusal names the field" contains "$ERR$OUT" "failover.drill.schedule"

"$ZW" controller --config "$WORK/zoneward.yaml" --db "$DB" >>"$WORK/controller.log" 2>&1 &
PIDS+=($!)
for i in $(seq 1 100); do curl -sf "http://127.0.0.1:$API/healthz" >/dev/null && break; sleep 0.05; done
"$ZW" proxy --config "$WORK/zoneward.yaml" --zone za --controller "http://127.0.0.1:$API" --token-file "$WORK/token" \
    --workers 1 >"$WORK/proxy.log" 2>&1 &
PIDS+=($!)
for i in $(seq 1 100); do curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null && break; sleep 0.1; done
sleep 2 # probes settle; the standby's lag is measured
CTL=(--controller "http://127.0.0.1:$API" --token-file "$WORK/token")

run_zw 2 "drill switchover refuses --probe with --probe-command" \
    drill switchover orders --to rb --probe http://127.0.0.1:1/ --probe-command true "${CTL[@]}"
check "the refusal names both arguments" contains "$ERR" "--probe and --probe-command"
run_zw 2 "drill switchover refuses a malformed --probe-interval" \
    drill switchover orders --to rb --probe-interval soon "${CTL[@]}"
run_zw 1 "drill status before any drill exits 1 (never drilled)" drill status --config "$WORK/zoneward.yaml" "${CTL[@]}"
check "it names the stale drill" contains "$ERR" "STALE: switchover drill of orders"

echo "drills: switchover drill orders ra → rb → ra through the controller, probing through the proxy"
run_zw 0 "the switchover drill there and back succeeds" \
    drill switchover orders --to rb --and-back --probe-command "$SCRIPTS/pg-probe.sh 127.0.0.1 $ORDERS" \
    --rejoin-command "$SCRIPTS/pg-rejoin.sh" --timeout 60s --settle-timeout 60s "${CTL[@]}"
echo "$OUT" | sed 's/^/    /'
[ -n "$ERR" ] && echo "$ERR" | sed 's/^/    stderr: /'
check "ra is the primary again and rb streams from it" bash -c \
    "psql -h 127.0.0.1 -p $PORT_A -U postgres -Atc 'SELECT count(*) FROM pg_stat_replication' | grep -qx 1"
check "writes through the proxy land on ra again" bash -c \
    "[ \"\$(psql -h 127.0.0.1 -p $ORDERS -U postgres -Atc 'INSERT INTO orders (n) VALUES (1) RETURNING inet_server_port()' | head -1)\" = $PORT_A ]"

echo "drills: restore drill of the controller's state backup"
run_zw 0 "a backup of the state is taken through the controller" \
    backup run --job state --config "$WORK/zoneward.yaml" "${CTL[@]}"
sleep 2 # the data ages: the restore drill's RPO is the time since the backup's snapshot
run_zw 0 "the restore drill succeeds" drill restore --job state --config "$WORK/zoneward.yaml" "${CTL[@]}"
echo "$OUT" | sed 's/^/    /'
check "it checked integrity" contains "$OUT" "integrity_check ok"
check "no scratch copy is left behind" bash -c "! ls -d \"\${TMPDIR:-/tmp}\"/zoneward-staging-drill-* 2>/dev/null | grep -q ."

run_zw 0 "drill history lists the drills" drill history --format json "${CTL[@]}"
echo "$OUT" >"$WORK/history.json"
FIGURES=$(python3 - "$WORK/history.json" <<'PY'
import json, sys
drills = json.load(open(sys.argv[1]))
switch = [d for d in drills if d["kind"] == "switchover" and d["target"] == "orders"]
restore = [d for d in drills if d["kind"] == "restore" and d["target"] == "state"]
assert switch and restore, drills
s, r = switch[0], restore[0]
assert s["success"] and r["success"], (s, r)
assert len(s["rtoSeconds"]) == 2 and all(0 < x < 60 for x in s["rtoSeconds"]), s
assert len(s["probeErrors"]) == 2 and all(x >= 0 for x in s["probeErrors"]), s
assert len(r["rtoSeconds"]) == 1 and 0 < r["rtoSeconds"][0] < 60, r
assert r["rpoSeconds"] is not None and 1.5 <= r["rpoSeconds"] < 120, r
lag = s.get("rpoSeconds")
print(f'{s["rtoSeconds"][0]:.2f} {s["rtoSeconds"][1]:.2f} {s["probeErrors"][0]} {s["probeErrors"][1]} '
      f'{r["rtoSeconds"][0]:.3f} {r["rpoSeconds"]:.1f} {"-" if lag is None else f"{lag:.2f}"}')
PY
)
check "history shows both drills with plausible RTO per leg and RPO ($FIGURES)" [ -n "$FIGURES" ]
read -r RTO_THERE RTO_BACK ERRORS_THERE ERRORS_BACK RESTORE_RTO RESTORE_RPO SWITCH_LAG <<<"${FIGURES:-- - - - - - -}"

METRICS=$(curl -s "http://127.0.0.1:$API/metrics")
check "the switchover RTO is exported" contains "$METRICS" 'zoneward_drill_rto_seconds{kind="switchover",target="orders"}'
check "the restore drill's last success is exported" \
    contains "$METRICS" 'zoneward_drill_last_success_timestamp_seconds{kind="restore",target="state"}'
check "the restore RPO is exported" contains "$METRICS" 'zoneward_drill_rpo_seconds{kind="restore",target="state"}'

run_zw 0 "failover status shows the DR posture" failover status "${CTL[@]}"
check "the posture line names the strategy and the measured RTO" \
    contains "$OUT" "DR posture: orders: geo-replicated standby (ra → rb); last switchover drill"
run_zw 0 "the status report carries the drills" failover status --format json "${CTL[@]}"
check "the report has both postures, fresh" python3 -c "
import json, sys
report = json.loads(sys.argv[1])
posture = {p['target']: p for p in report['drills']['posture']}
assert not posture['orders']['stale'] and not posture['state']['stale'], posture
assert posture['orders']['measuredRTOSeconds'] > 0 and posture['state']['measuredRPOSeconds'] > 0, posture
assert len(report['drills']['recent']) >= 2
" "$OUT"

PAGE=$(curl -s -H "Authorization: Bearer $(cat "$WORK/token")" "http://127.0.0.1:$API/")
check "the controller's status page shows both postures and the drills" bash -c '
    grep -q "DR posture and drills" <<<"$1" && grep -q "data-drill=\"switchover orders\"" <<<"$1" &&
        grep -q "data-drill=\"restore state\"" <<<"$1" && grep -q "id=\"drills\"" <<<"$1"' _ "$PAGE"

run_zw 0 "drill status exits 0 while the drills are fresh" drill status --config "$WORK/zoneward.yaml" "${CTL[@]}"
echo "$OUT" | sed 's/^/    /'
sed 's/every: 10m/every: 1s/' "$WORK/zoneward.yaml" >"$WORK/strict.yaml"
sleep 1.5
run_zw 1 "drill status exits 1 once the last drill is older than a 1s policy" \
    drill status --config "$WORK/strict.yaml" "${CTL[@]}"
check "it says which drill is stale and how old" contains "$ERR" "STALE: restore drill of state: its last successful drill finished"
run_zw 1 "backup status exits 1 when the job's restore drill is stale" \
    backup status --config "$WORK/strict.yaml" --db "$DB"
check "backup status names the stale restore drill" contains "$ERR" "STALE: restore drill of state"

echo "FIGURE drills switchover RTO: ra → rb $RTO_THERE s ($ERRORS_THERE probe errors), rb → ra $RTO_BACK s ($ERRORS_BACK probe errors); standby lag at the start ${SWITCH_LAG} s"
echo "FIGURE drills restore: RTO $RESTORE_RTO s, RPO $RESTORE_RPO s"
finish
