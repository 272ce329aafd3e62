#!/usr/bin/env bash
# The Grafana dashboard (config/grafana/zoneward.json) and the alert rules (config/prometheus/alerts.yaml)
# name only metrics Zoneward exports: a controller (with a failover service and a backup job) and a proxy
# following it run on loopback, take traffic and a backup, and their /metrics are collected. A metric
# referenced but not seen in this run must at least be declared in Sources/ (some appear only once their
# event happens: a timeout, a 503 no-capacity); those are listed. promtool checks the rules when Debian's
# prometheus package provides it. The controller's and the proxy's status pages (`GET /`) are checked
# with curl, and the controller's page as rendered by headless Chromium.
source "$(dirname "$0")/lib/common.sh"

BASE=${ZONEWARD_IT_PORT_BASE_OBSERVABILITY:-26600}
API=$((BASE + 1))
ADMIN=$((BASE + 2))
WEB=$((BASE + 3))
echo "secret-$RANDOM$RANDOM" >"$WORK/token"
chmod 600 "$WORK/token"
openssl rand -base64 32 >"$WORK/backup.key"
chmod 600 "$WORK/backup.key"
mkdir -p "$WORK/www"
echo hello >"$WORK/www/index.html"
for port in $((BASE + 10)) $((BASE + 11)); do
    python3 -m http.server "$port" --bind 127.0.0.1 --directory "$WORK/www" >/dev/null 2>&1 &
    PIDS+=($!)
done
python3 -c "import sqlite3; c = sqlite3.connect('$WORK/app.db'); c.execute('CREATE TABLE t (n)'); c.commit()"
cat >"$WORK/zoneward.yaml" <<YAML
zones:
  - {name: za, region: ra}
  - {name: zb, region: rb}
services:
  - name: web
    listen: 127.0.0.1:$WEB
    protocol: http
    healthCheck: {interval: 500ms}
    endpoints:
      - {address: 127.0.0.1:$((BASE + 10)), zone: za}
      - {address: 127.0.0.1:$((BASE + 11)), zone: zb}
  - name: orders
    listen: 127.0.0.1:$((BASE + 4))
    protocol: tcp
    routing: activeRegion
    regions: [ra, rb]
    endpoints:
      - {address: 127.0.0.1:$((BASE + 10)), zone: za}
      - {address: 127.0.0.1:$((BASE + 11)), zone: zb}
    failover: {mode: manual}
admin: {listen: 127.0.0.1:$ADMIN}
backups:
  - name: app
    source: {sqlite: $WORK/app.db}
    schedule: "0 4 * * *"
    targets: [{filesystem: $WORK/backups}]
    encryption: {keyFile: $WORK/backup.key}
    drill: {every: 1d}
controller: {listen: 127.0.0.1:$API, tokenFile: $WORK/token}
YAML
"$ZW" controller --config "$WORK/zoneward.yaml" --db "$WORK/state.db" >"$WORK/controller.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$API/healthz" >/dev/null && break; sleep 0.05; done
"$ZW" proxy --config "$WORK/zoneward.yaml" --zone za --controller "http://127.0.0.1:$API" --token-file "$WORK/token" \
    --workers 1 >"$WORK/proxy.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null && break; sleep 0.1; done
for _ in $(seq 1 20); do curl -s -o /dev/null "http://127.0.0.1:$WEB/"; done
check "a backup through the controller" "$ZW" backup run --job app --config "$WORK/zoneward.yaml" \
    --controller "http://127.0.0.1:$API" --token-file "$WORK/token"
check "a restore drill recorded through the controller" "$ZW" drill restore --job app --config "$WORK/zoneward.yaml" \
    --controller "http://127.0.0.1:$API" --token-file "$WORK/token"
# The controller's gauges are refreshed every 15 s; wait for the backup's and the drill's to appear (bounded).
for _ in $(seq 1 40); do
    curl -s "http://127.0.0.1:$API/metrics" >"$WORK/controller-metrics.txt"
    grep -q '^zoneward_backup_last_success_timestamp_seconds' "$WORK/controller-metrics.txt" &&
        grep -q '^zoneward_drill_last_result' "$WORK/controller-metrics.txt" && break
    sleep 0.5
done
{ curl -s "http://127.0.0.1:$ADMIN/metrics"; curl -s "http://127.0.0.1:$API/metrics"; } >"$WORK/metrics.txt"
python3 - "$ROOT" "$WORK/metrics.txt" <<'PY' && pass "every metric the dashboard and the alert rules name is exported" || fail "metrics named but not exported"
import json, re, subprocess, sys, pathlib
root, metrics = pathlib.Path(sys.argv[1]), open(sys.argv[2]).read()
seen = set(re.findall(r"^(zoneward_[a-z_]+?)(?:_bucket|_sum|_count)?(?:\{| )", metrics, re.M))
texts = [json.dumps(json.load(open(root / "config/grafana/zoneward.json"))), open(root / "config/prometheus/alerts.yaml").read()]
named = set()
for text in texts:
    for name in re.findall(r"zoneward_[a-z_]+", text):
        named.add(re.sub(r"_(bucket|sum|count)$", "", name))
declared = set(re.findall(r'"(zoneward_[a-z_]+)"', "".join(p.read_text() for p in (root / "Sources").rglob("*.swift"))))
missing = sorted(n for n in named if n not in seen and n not in declared)
later = sorted(n for n in named if n not in seen and n in declared)
print(f"    {len(named)} metrics named; {len(named) - len(later) - len(missing)} seen in this run")
if later:
    print("    declared, not seen in this run (their event did not happen): " + ", ".join(later))
for n in missing:
    print(f"    not exported anywhere: {n}")
sys.exit(1 if missing else 0)
PY
echo "observability: status pages"
TOKEN=$(cat "$WORK/token")
check "the controller's page needs the token" \
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$API/")" = 401 ]
curl -s -D "$WORK/controller-page.headers" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$API/" \
    >"$WORK/controller-page.html"
curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$API/v1/status" >"$WORK/status.json"
check "the controller's page is HTML" grep -qi '^content-type: text/html; charset=utf-8' "$WORK/controller-page.headers"
# page-facts FILE: the page names service orders with /v1/status's epoch and active region, and job app.
page_facts() {
    python3 - "$1" "$WORK/status.json" <<'PY'
import json, re, sys
page, status = open(sys.argv[1]).read(), json.load(open(sys.argv[2]))
orders = next(s for s in status["services"] if s["name"] == "orders")
assert '<td data-service="orders"><strong>orders</strong></td>' in page, page[:400]
row = re.search(r'data-service="orders".*?</tr>', page, re.S).group(0)
assert f'data-epoch="orders">{orders["epoch"]}</td>' in row, row
assert f'<td>{orders["activeRegion"]}</td>' in row, row
backup = re.search(r'data-job="app".*?</tr>', page, re.S)
assert backup and re.search(r'badge [a-z]+">(completed|verified)</span>', backup.group(0)), page
PY
}
check "the controller's page names orders with its epoch and active region, and backup job app" \
    page_facts "$WORK/controller-page.html"
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -n "$CHROMIUM" ]; then
    # Chromium cannot send the bearer token: it renders the page fetched with curl. Bounded (on timeout only
    # its own process group is killed), with a throwaway profile.
    dump_dom() { # URL OUTPUT
        timeout -k 5 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run \
            --user-data-dir="$WORK/chromium-profile" --dump-dom "$1" >"$2" 2>"$WORK/chromium.log"
    }
    check "headless Chromium renders the controller's page" \
        dump_dom "file://$WORK/controller-page.html" "$WORK/controller-dom.html"
    check "the rendered DOM has the same facts" page_facts "$WORK/controller-dom.html"
else
    fail "chromium is not installed (apt-get install chromium; .ci/run installs it)"
fi
curl -s -D "$WORK/proxy-page.headers" "http://127.0.0.1:$ADMIN/" >"$WORK/proxy-page.html"
check "the proxy's page is HTML naming its zones and services" python3 - "$WORK/proxy-page.html" <<'PY'
import sys
page = open(sys.argv[1]).read()
for fact in ['<td data-zone="za">za</td>', '<td data-zone="zb">zb</td>', '<h2 id="service-web">', '<h2 id="service-orders">']:
    assert fact in page, fact
PY

if command -v promtool >/dev/null; then
    check "promtool check rules config/prometheus/alerts.yaml" promtool check rules "$ROOT/config/prometheus/alerts.yaml"
else
    echo "  skip promtool is not installed (apt-get install prometheus provides it)"
fi
check "the dashboard is valid JSON with panels" python3 -c "
import json, sys
d = json.load(open('$ROOT/config/grafana/zoneward.json'))
sys.exit(0 if d['panels'] and all(p['targets'] for p in d['panels']) else 1)"
finish
