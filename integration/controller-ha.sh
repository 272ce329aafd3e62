#!/usr/bin/env bash
# Controller high availability, for real: a 3-member etcd cluster (Debian's etcd-server) on this machine,
# three controllers each in a network namespace of its own (a veth link to the host, where etcd listens),
# a proxy following all three, and a service `orders` switched between regions ra and rb by command
# drivers that log every call with the caller's term. State ships to a filesystem target after each change.
#
# Drills:
# - kill -9 the leader at random moments (often mid-switchover), 10 trials: a new leader acts within
#   TTL + 1 s, the operation in flight ends done, and no acknowledged write (operation) is lost;
# - partition the leader (its link down): it stops acting before another is elected; link up, it follows;
# - lose the leader's state volume (database deleted with it): the next leader restores from the target;
# - the audit, over every trial, from the drivers' log, the event log and the proxy's log: no epoch issued
#   twice, no driver step run by two controllers in one term, epochs only growing as the proxy applied them.
# Prints `controller takeover: N s (median), M s (max)` and `acknowledged writes lost: N`.
source "$(dirname "$0")/lib/common.sh"

ETCD=$(command -v etcd || true)
if [ -z "$ETCD" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server) >/dev/null 2>&1
    ETCD=$(command -v etcd || true)
fi
[ -n "$ETCD" ] || { echo "etcd is not available (apt-get install etcd-server)"; exit 1; }
command -v ip >/dev/null || { echo "ip (iproute2) is not available"; exit 1; }
TRIALS=${ZONEWARD_HA_TRIALS:-10}
BASE=${ZONEWARD_IT_PORT_BASE_HA:-26400}
NET=${ZONEWARD_HA_NET:-10.231}
TTL=5
API=9900
NS=(zwha1 zwha2 zwha3)
CPIDS=(0 0 0)
EPIDS=()
ADMIN=$((BASE + 51))
ORDERS=$((BASE + 50))

# --- network namespaces: controller i lives in ${NS[i]} at $NET.i.2, the host side is $NET.i.1
teardown_net() {
    local i
    for i in 0 1 2; do
        ip link del "zwh$((i + 1))" 2>/dev/null
        ip netns del "${NS[$i]}" 2>/dev/null
    done
}
stop_all() {
    local pid
    for pid in "${CPIDS[@]}" "${EPIDS[@]}"; do
        [ "$pid" != 0 ] && { kill -9 "$pid" && wait "$pid"; } 2>/dev/null
    done
    teardown_net
    cleanup
}
trap stop_all EXIT
teardown_net # leftovers of an interrupted run of this script (these names are this scenario's own)
for i in 0 1 2; do
    n=$((i + 1))
    ip netns add "${NS[$i]}" &&
        ip link add "zwh$n" type veth peer name "zwc$n" &&
        ip link set "zwc$n" netns "${NS[$i]}" &&
        ip addr add "$NET.$n.1/24" dev "zwh$n" && ip link set "zwh$n" up &&
        ip -n "${NS[$i]}" addr add "$NET.$n.2/24" dev "zwc$n" &&
        ip -n "${NS[$i]}" link set "zwc$n" up && ip -n "${NS[$i]}" link set lo up ||
        { echo "cannot create network namespaces (needs root and iproute2)"; exit 1; }
done
pass "three network namespaces with a veth link each"

# --- etcd: three members on the host, clients reach them on every host-side address
CLUSTER=""
for n in 1 2 3; do CLUSTER+="${CLUSTER:+,}e$n=http://127.0.0.1:$((BASE + 10 + n))"; done
for n in 1 2 3; do
    listen="http://127.0.0.1:$((BASE + n))"
    for h in 1 2 3; do listen+=",http://$NET.$h.1:$((BASE + n))"; done
    "$ETCD" --name "e$n" --data-dir "$WORK/etcd-$n" --listen-client-urls "$listen" \
        --advertise-client-urls "http://127.0.0.1:$((BASE + n))" \
        --listen-peer-urls "http://127.0.0.1:$((BASE + 10 + n))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((BASE + 10 + n))" \
        --initial-cluster "$CLUSTER" --initial-cluster-state new --initial-cluster-token "zwha-$$" \
        --heartbeat-interval 100 --election-timeout 1000 >"$WORK/etcd-$n.log" 2>&1 &
    EPIDS+=($!)
done
etcd_healthy() { curl -sf "http://127.0.0.1:$((BASE + 1))/health" | grep -q '"health":"true"'; }
for _ in $(seq 1 100); do etcd_healthy && break; sleep 0.1; done
check "a 3-member etcd cluster is healthy" etcd_healthy

# --- configuration: one file per controller (its etcd endpoints are its own host-side address)
echo "secret-$RANDOM$RANDOM" >"$WORK/token"
chmod 600 "$WORK/token"
openssl rand -base64 32 >"$WORK/state.key"
chmod 600 "$WORK/state.key"
DRIVER="$ROOT/integration/lib/ha_driver.sh"
export HA_DRIVER_LOG="$WORK/drivers.log"
: >"$HA_DRIVER_LOG"
write_config() { # index
    local n=$1
    cat >"$WORK/c$n.yaml" <<YAML
zones:
  - {name: za, region: ra}
  - {name: zb, region: rb}
services:
  - name: orders
    listen: 127.0.0.1:$ORDERS
    protocol: tcp
    routing: activeRegion
    regions: [ra, rb]
    endpoints:
      - {address: 127.0.0.1:$((BASE + 60)), zone: za}
      - {address: 127.0.0.1:$((BASE + 61)), zone: zb}
    failover:
      mode: manual
      fence: {command: [$DRIVER], timeout: 20s}
      promote: {command: [$DRIVER], timeout: 20s}
admin: {listen: 127.0.0.1:$ADMIN}
backups:
  - name: controller-state
    source: {sqlite: $WORK/c$n/state.db}
    schedule: "0 3 * * *"
    targets: [{filesystem: $WORK/state-target}]
    encryption: {keyFile: $WORK/state.key}
  - name: app
    source: {sqlite: $WORK/app.db}
    schedule: "0 4 * * *"
    targets: [{filesystem: $WORK/backups}]
    encryption: {keyFile: $WORK/state.key}
    verify: always
controller:
  listen: 0.0.0.0:$API
  tokenFile: $WORK/token
  ha:
    etcd:
      endpoints: [http://$NET.$n.1:$((BASE + 1)), http://$NET.$n.1:$((BASE + 2)), http://$NET.$n.1:$((BASE + 3))]
      prefix: /zoneward-ha-drill/
      ttl: ${TTL}s
    state: {job: controller-state}
YAML
}
for n in 1 2 3; do write_config $n; mkdir -p "$WORK/c$n"; done
check "the configuration is valid" "$ZW" config check "$WORK/c1.yaml"

start_controller() { # index
    local n=$1
    HA_CONTROLLER="c$n" ip netns exec "${NS[$((n - 1))]}" "$ZW" controller --config "$WORK/c$n.yaml" \
        --db "$WORK/c$n/state.db" --advertise "http://$NET.$n.2:$API" >>"$WORK/c$n.log" 2>&1 &
    CPIDS[$((n - 1))]=$!
}
url_of() { echo "http://$NET.$1.2:$API"; }
# leadership N: the JSON of /v1/leadership of controller N (asked inside its namespace, so it answers even
# when its link is down), or nothing.
leadership() {
    ip netns exec "${NS[$(($1 - 1))]}" curl -s -m 1 -H "Authorization: Bearer $(cat "$WORK/token")" \
        "http://127.0.0.1:$API/v1/leadership" 2>/dev/null
}
role_of() { leadership "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["role"])' 2>/dev/null; }
# leader [EXCEPT]: the index of the controller that says it leads (not EXCEPT), or nothing.
leader() {
    local n
    for n in 1 2 3; do
        [ "$n" = "${1:-0}" ] && continue
        [ "${CPIDS[$((n - 1))]}" != 0 ] && [ "$(role_of "$n")" = leader ] && { echo "$n"; return 0; }
    done
    return 1
}
acting_since_ms() { # index
    leadership "$1" | python3 -c 'import json, sys; print(json.load(sys.stdin).get("actingSinceMillis") or "")' 2>/dev/null
}
kill_controller() { # index: kill -9, quietly (no job-control notice)
    local pid=${CPIDS[$(($1 - 1))]}
    CPIDS[$(($1 - 1))]=0
    { kill -9 "$pid" && wait "$pid"; } 2>/dev/null
}
api() { # method url-path [body]: to the leader, following a 307 like any client
    local n
    n=$(leader) || return 1
    if [ -n "${3:-}" ]; then
        curl -s -m 10 -L -X "$1" -H "Authorization: Bearer $(cat "$WORK/token")" -H 'Content-Type: application/json' \
            -d "$3" -w '\n%{http_code}' "$(url_of "$n")$2"
    else
        curl -s -m 10 -L -H "Authorization: Bearer $(cat "$WORK/token")" -w '\n%{http_code}' "$(url_of "$n")$2"
    fi
}

for n in 1 2 3; do start_controller $n; done
for _ in $(seq 1 100); do leader >/dev/null && break; sleep 0.1; done
FIRST=$(leader)
check "one controller leads (c${FIRST:-none})" test -n "$FIRST"
followers=0
for n in 1 2 3; do [ "$(role_of $n)" = follower ] && followers=$((followers + 1)); done
check "the other two follow" test "$followers" = 2

"$ZW" proxy --config "$WORK/c1.yaml" --zone za --controller "$(url_of 1),$(url_of 2),$(url_of 3)" \
    --token-file "$WORK/token" --workers 1 >"$WORK/proxy.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null && break; sleep 0.1; done

# A follower redirects a write to the leader; curl -L follows the 307 with method and body.
follower=$(( FIRST % 3 + 1 ))
redirect=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' -X POST -H "Authorization: Bearer $(cat "$WORK/token")" \
    -d '{"zone":"zb","duration":"1m","reason":"redirect check"}' "$(url_of $follower)/v1/drains")
check "a follower answers a write with 307 to the leader ($redirect)" contains "$redirect" "307 $(url_of "$FIRST")/v1/drains"

ACKED=()       # operation ids the API acknowledged (202)
TAKEOVERS=()   # seconds, one per kill
region=rb
echo "controller-ha: $TRIALS trials of kill -9 of the leader"
for trial in $(seq 1 "$TRIALS"); do
    old=$(leader) || { fail "trial $trial: no leader before the kill"; break; }
    answer=$(api POST /v1/failover "{\"service\":\"orders\",\"to\":\"$region\",\"actor\":\"drill\",\"reason\":\"trial $trial\"}")
    code=${answer##*$'\n'}
    op=$(echo "${answer%$'\n'*}" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("operation") or "")' 2>/dev/null)
    if [ "$code" = 202 ] && [ -n "$op" ]; then ACKED+=("$op"); else
        fail "trial $trial: the switchover to $region was not acknowledged ($code ${answer%$'\n'*})"; fi
    sleep "$(python3 -c "import random; print(round(random.uniform(0, 2.5), 2))")"
    kill_controller "$old"
    killed_at=$(date +%s%3N)
    new=""
    for _ in $(seq 1 150); do new=$(leader "$old") && break; sleep 0.05; done
    if [ -z "$new" ]; then fail "trial $trial: no new leader within 7.5 s of the kill"; start_controller "$old"; continue; fi
    since=$(acting_since_ms "$new")
    takeover=$(python3 -c "print(round(max(0, ${since:-$killed_at} - $killed_at) / 1000, 2))")
    TAKEOVERS+=("$takeover")
    state=""
    for _ in $(seq 1 300); do
        state=$(api GET "/v1/operations/$op" | head -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["operation"]["state"])' 2>/dev/null)
        [ "$state" = done ] || [ "$state" = failed ] && break
        sleep 0.1
    done
    if [ "$state" = done ] && python3 -c "import sys; sys.exit(0 if $takeover <= $TTL + 1 else 1)"; then
        pass "trial $trial: c$old killed, c$new acted after $takeover s; operation $op done"
    else
        fail "trial $trial: c$old killed, c$new acted after $takeover s; operation $op is ${state:-unknown}"
    fi
    start_controller "$old"
    [ "$region" = rb ] && region=ra || region=rb
done

# --- partition: the leader's link goes down; it must stop acting before another is elected
old=$(leader)
ip -n "${NS[$((old - 1))]}" link set "zwc$old" down
new=""
for _ in $(seq 1 200); do new=$(leader "$old") && break; sleep 0.05; done
stopped=$(leadership "$old" | python3 -c 'import json, sys; print(json.load(sys.stdin).get("stoppedActingAtMillis") or "")' 2>/dev/null)
since=$(acting_since_ms "${new:-0}")
check "partitioned c$old stopped acting (${stopped:-never}) before c${new:-none} began (${since:-never})" \
    test -n "$stopped" -a -n "$since" -a "${stopped:-0}" -lt "${since:-0}"
check "partitioned c$old does not say it leads" test "$(role_of "$old")" != leader
ip -n "${NS[$((old - 1))]}" link set "zwc$old" up
rejoined=""
for _ in $(seq 1 100); do [ "$(role_of "$old")" = follower ] && rejoined=yes && break; sleep 0.1; done
check "with its link back, c$old rejoins as a follower" test "$rejoined" = yes

# --- lose the leader's state volume: the next leader restores from the target and carries on
answer=$(api POST /v1/failover "{\"service\":\"orders\",\"to\":\"$region\",\"actor\":\"drill\",\"reason\":\"volume loss\"}")
op=$(echo "${answer%$'\n'*}" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("operation") or "")' 2>/dev/null)
[ -n "$op" ] && ACKED+=("$op")
# A backup run by a job with no state volume records itself through the API (followed to the leader).
python3 -c "import sqlite3; c = sqlite3.connect('$WORK/app.db'); c.execute('CREATE TABLE t (n)'); c.executemany('INSERT INTO t VALUES (?)', [(i,) for i in range(500)]); c.commit()"
backup_out=$("$ZW" backup run --job app --config "$WORK/c1.yaml" --controller "$(url_of 1),$(url_of 2),$(url_of 3)" \
    --token-file "$WORK/token" 2>&1)
backup_id=$(echo "$backup_out" | sed -n 's/^\(app-[^:]*\): completed.*/\1/p' | head -1)
listing=$(api GET "/v1/backups?job=app" | head -1)
check "backup run --controller records the backup through the leader (${backup_id:-none: $backup_out})" \
    contains "$listing" "\"${backup_id:-none}\""
old=$(leader)
kill_controller "$old"
rm -f "$WORK/c$old/state.db" "$WORK/c$old/state.db-wal" "$WORK/c$old/state.db-shm"
start_controller "$old"
new=""
for _ in $(seq 1 200); do new=$(leader) && break; sleep 0.05; done
state=""
for _ in $(seq 1 300); do
    state=$(api GET "/v1/operations/$op" | head -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["operation"]["state"])' 2>/dev/null)
    [ "$state" = done ] && break
    sleep 0.1
done
check "after c$old lost its volume, c${new:-none} leads and operation $op is done ($state)" test "$state" = done
backups=$(api GET "/v1/backups?job=app" | head -1)
check "the new leader still knows backup $backup_id, verified" python3 -c "
import json, sys
sys.exit(0 if any(b['id'] == '$backup_id' and b['state'] == 'verified' for b in json.loads(sys.argv[1])) else 1)" "$backups"

# --- acknowledged writes: every acknowledged operation is known to the leader, and ended
ops_json=$(api GET "/v1/operations?limit=1000" | head -1)
lost=0
for id in "${ACKED[@]}"; do
    echo "$ops_json" | python3 -c "import json,sys; sys.exit(0 if any(o['id']==$id and o['state'] in ('done','failed') for o in json.load(sys.stdin)) else 1)" ||
        { lost=$((lost + 1)); echo "    acknowledged operation $id is missing or unfinished"; }
done
if [ -n "${backup_id:-}" ]; then
    api GET "/v1/backups?job=app" | head -1 | grep -q "\"$backup_id\"" ||
        { lost=$((lost + 1)); echo "    acknowledged backup $backup_id is missing"; }
fi
echo "acknowledged writes lost: $lost (of $(( ${#ACKED[@]} + 1 )): ${#ACKED[@]} operations and a backup record)"
check "no acknowledged write was lost" test "$lost" = 0

# --- the safety audit
python3 - "$HA_DRIVER_LOG" "$WORK/proxy.log" "$WORK"/c?.log <<'PY' && pass "safety audit: epochs unique and growing, one controller per term" || fail "safety audit"
import re, sys
drivers, proxy = sys.argv[1], sys.argv[2]
problems = []
by_term = {}
terms_of_op = {}
for line in open(drivers):
    parts = line.split()
    if len(parts) != 6:
        continue
    _, term, epoch, op, action, who = parts
    by_term.setdefault(term, set()).add(who)
    terms_of_op.setdefault(op, set()).add(term)
for term, who in by_term.items():
    if len(who) > 1:
        problems.append(f"term {term} drove by {sorted(who)}")
applied = [int(m.group(1)) for m in re.finditer(r"active region of orders: .* \(epoch (\d+)\)", open(proxy).read())]
for a, b in zip(applied, applied[1:]):
    if b <= a:
        problems.append(f"the proxy applied epoch {b} after {a}")
resumed = sorted(op for op, terms in terms_of_op.items() if len(terms) > 1)
print(f"    audit: {len(by_term)} terms drove drivers; {len(resumed)} operation(s) killed mid-failover were "
      f"finished by the next leader ({', '.join(resumed) or 'none'}); the proxy applied {len(applied)} epochs, "
      f"last {applied[-1] if applied else None}")
for p in problems:
    print("    " + p)
sys.exit(1 if problems or not applied else 0)
PY
# Epochs issued, from the event log as the final leader holds it: each once.
issued=$(ls "$WORK"/c?/state.db 2>/dev/null | head -1)
if [ -n "$issued" ]; then
    python3 - "$WORK/c$(leader)/state.db" <<'PY' && pass "no epoch issued twice (event log)" || fail "an epoch was issued twice"
import json, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
rows = [json.loads(d) for (d,) in db.execute("SELECT detail FROM event WHERE kind = 'service.active-region-changed' ORDER BY id")]
epochs = [int(r["epoch"]) for r in rows]
print(f"    {len(epochs)} epochs issued, terms {sorted({r.get('term') for r in rows})}")
sys.exit(0 if len(epochs) == len(set(epochs)) and epochs == sorted(epochs) else 1)
PY
fi
refused=$(cat "$HA_DRIVER_LOG.refused" 2>/dev/null | wc -l)
echo "    drivers refused $refused call(s) from an older term"

if [ "${#TAKEOVERS[@]}" -gt 0 ]; then
    python3 -c "
import statistics, sys
t = [float(x) for x in sys.argv[1:]]
print(f'controller takeover: {statistics.median(t):.1f} s (median), {max(t):.1f} s (max)')" "${TAKEOVERS[@]}"
fi
finish
