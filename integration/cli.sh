#!/usr/bin/env bash
# The command line as an operator meets it: plan, config check, zone drain/undrain/list, exit codes.
source "$(dirname "$0")/lib/common.sh"
cd "$ROOT" || exit 1
export ZONEWARD_DB="$WORK/state.db"

echo "cli: version and help"
run_zw 0 "--version" --version
check "--version prints the version" contains "$OUT" "0."
for cmd in "plan" "config check" "zone drain" "zone undrain" "zone list"; do
    # shellcheck disable=SC2086
    run_zw 0 "$cmd --help" $cmd --help
    check "$cmd --help has an example" contains "$OUT" "Example"
done
run_zw 2 "an unknown option is a usage error" plan --topology config/topology.yaml --colour

echo "cli: config check"
run_zw 0 "the example config is valid" config check config/zoneward.yaml
sed 's/zone: us-west-2a, weight: 1}/zone: us-east-1d, weight: 1}/' config/zoneward.yaml >"$WORK/bad.yaml"
run_zw 2 "a config with an unknown zone is refused" config check "$WORK/bad.yaml"
check "the error names the field and the known zones" contains "$ERR" \
    'services[0].endpoints[4].zone: unknown zone "us-east-1d" (known: us-east-1a, us-east-1b, us-west-2a)'
check "every problem is listed" contains "$ERR" 'services[0].endpoints[5].zone'
sed 's/interval: 2s/interval: 99999999999999999999h/' config/zoneward.yaml >"$WORK/long.yaml"
run_zw 2 "a duration too long to hold is refused, not a crash" config check "$WORK/long.yaml"
check "the error names the duration field" contains "$ERR" \
    'services[0].healthCheck.interval: must be at most 36500d, got "99999999999999999999h"'
run_zw 2 "a missing config file is refused" config check "$WORK/none.yaml"
check "the error names the file" contains "$ERR" "$WORK/none.yaml: no such file"

echo "cli: plan"
run_zw 0 "plan prints a table" plan --topology config/topology.yaml
check "the table compares with Envoy" contains "$OUT" "Envoy zone-aware"
check "the table compares with all-local" contains "$OUT" "all-local"
run_zw 0 "plan prints json" plan --topology config/topology.yaml --format json
echo "$OUT" >"$WORK/plan.json"
check "the json plan keeps its contract" python3 - "$WORK/plan.json" <<'PY'
import json, sys
plan = json.load(open(sys.argv[1]))
for key in ["routes", "load", "objective", "crossZoneFraction", "crossRegionFraction", "maxLoadFactor", "envoy"]:
    assert key in plan, key
assert set(plan["envoy"]) >= {"objective", "crossZoneFraction"}
for source, row in plan["routes"].items():
    assert abs(sum(row.values()) - 1) < 1e-9, (source, row)
for zone, load in plan["load"].items():
    assert load <= plan["bound"][zone] * (1 + 1e-9), zone
assert plan["objective"] <= plan["envoy"]["objective"] + 1e-9
PY
cat >"$WORK/topology.json" <<'JSON'
{"overloadFactor": 0.5, "zones": [{"name": "a", "region": "r", "demand": 50, "capacity": 1},
 {"name": "b", "region": "r", "demand": 30, "capacity": 1}, {"name": "c", "region": "r", "demand": 20, "capacity": 1}]}
JSON
run_zw 0 "plan reads JSON" plan --topology "$WORK/topology.json" --format json
check "α = 0.5 keeps 50/30/20 all local" python3 -c "import json,sys; assert json.loads(sys.argv[1])['crossZoneFraction'] == 0" "$OUT"

bad_topology() { # NAME EXPECTED_MESSAGE CONTENT
    printf '%s\n' "$3" >"$WORK/$1.yaml"
    run_zw 2 "plan refuses $1" plan --topology "$WORK/$1.yaml"
    check "the message for $1 names the field" contains "$ERR" "$2"
}
bad_topology negative-demand "zones[0].demand: must be ≥ 0" 'zones: [{name: a, region: r, demand: -5, capacity: 1}]'
bad_topology non-finite "zones[0].capacity: must be a finite number" 'zones: [{name: a, region: r, demand: 5, capacity: .inf}]'
bad_topology wrong-type 'zones[0].capacity: expected a number, got "many"' 'zones: [{name: a, region: r, demand: 5, capacity: many}]'
bad_topology duplicate 'zones[1].name: duplicate zone name "a"' \
    'zones: [{name: a, region: r, demand: 5, capacity: 1}, {name: a, region: r, demand: 5, capacity: 1}]'
bad_topology unknown-pair 'costs.pairs[0].from: unknown zone "x" (known: a)' \
    $'costs: {pairs: [{from: x, to: a, cost: 2}]}\nzones: [{name: a, region: r, demand: 5, capacity: 1}]'
bad_topology no-zones "zones: at least one zone is needed" 'zones: []'
bad_topology negative-alpha "overloadFactor: must be ≥ 0" $'overloadFactor: -1\nzones: [{name: a, region: r, demand: 5, capacity: 1}]'
bad_topology huge-demand "zones[0].demand: must be ≤ 1000000000000, got 1e+308" \
    'zones: [{name: a, region: r, demand: 1e308, capacity: 1}, {name: b, region: r, demand: 1e308, capacity: 1}]'
bad_topology no-capacity "every zone has capacity 0" 'zones: [{name: a, region: r, demand: 5, capacity: 0}]'
bad_topology not-yaml "not valid YAML or JSON" 'zones: [{name: a'
run_zw 2 "plan refuses a missing file" plan --topology "$WORK/absent.yaml"
check "the message names the file" contains "$ERR" "absent.yaml: no such file"

echo "cli: zone drain, undrain, list"
run_zw 2 "drain without --for is a usage error" zone drain us-east-1a --reason test
run_zw 2 "drain with a bad --for is refused" zone drain us-east-1a --for soon --reason test
check "the message names --for" contains "$ERR" "--for"
run_zw 2 "drain with a --for too long to hold is refused, not a crash" \
    zone drain us-east-1a --for 99999999999999999999h --reason test
check "the message names --for" contains "$ERR" "--for"
run_zw 2 "drain of an unknown zone is refused with --config" \
    zone drain us-east-1z --for 30m --reason test --config config/zoneward.yaml
check "the message lists the known zones" contains "$ERR" "known: us-east-1a"
run_zw 0 "list with nothing drained" zone list
check "list says nothing is drained" contains "$OUT" "No zone is drained."
run_zw 0 "drain a zone with spare capacity elsewhere in its region" \
    zone drain us-east-1b --for 30m --reason "AZ impairment" --config config/zoneward.yaml --actor alice
check "drain prints the cross-zone share before and after" contains "$OUT" "cross-zone before"
check "drain says until when" contains "$OUT" "Drained us-east-1b until"
run_zw 3 "draining the last zone of a region is refused" \
    zone drain us-west-2a --for 30m --reason test --config config/zoneward.yaml
check "the refusal names the service and region" contains "$ERR" "service web would have no capacity left in us-west-2"
run_zw 0 "list json" zone list --format json
check "the refused drain changed nothing" python3 -c \
    "import json,sys; d=json.loads(sys.argv[1]); assert [x['zone'] for x in d]==['us-east-1b'], d; assert d[0]['actor']=='alice'" "$OUT"
run_zw 0 "--force overrides the guard" \
    zone drain us-west-2a --for 30m --reason test --config config/zoneward.yaml --force
run_zw 0 "undrain" zone undrain us-west-2a
run_zw 1 "undrain of a zone that is not drained" zone undrain us-west-2a
run_zw 0 "a short drain" zone drain us-east-1a --for 1s --reason blip
sleep 1.3
run_zw 0 "list after expiry" zone list --format json
check "an expired drain stops counting by itself" python3 -c \
    "import json,sys; assert [x['zone'] for x in json.loads(sys.argv[1])]==['us-east-1b']" "$OUT"
check "every change wrote an event" python3 - "$ZONEWARD_DB" <<'PY'
import sqlite3, sys
kinds = [r[0] for r in sqlite3.connect(sys.argv[1]).execute("SELECT kind FROM event ORDER BY id")]
assert kinds == ["zone.drained", "zone.drained", "zone.undrained", "zone.drained", "zone.drain-expired"], kinds
PY
run_zw 0 "--db overrides ZONEWARD_DB" zone list --db "$WORK/other.db"
check "the other database is separate" contains "$OUT" "No zone is drained."
run_zw 1 "a database in a missing folder is a clear error" zone list --db "$WORK/missing/state.db"
check "the message says the folder is missing" contains "$ERR" "its folder does not exist"

echo "cli: token files"
echo "secret" >"$WORK/open-token"
chmod 644 "$WORK/open-token"
run_zw 2 "a token file readable by others is refused" failover status --controller http://127.0.0.1:9 \
    --token-file "$WORK/open-token"
check "the message names the file and its mode" contains "$ERR" "$WORK/open-token has mode 0644"

finish
