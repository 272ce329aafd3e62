#!/usr/bin/env bash
# Kubernetes discovery against an API-server double (integration/lib/k8s_api_double.py: the real wire format
# over TLS; no real API server runs here). Under steady load through the proxy: scale a zone's endpoints
# 3 → 1 → 0 → 3, roll every endpoint (terminating, then new addresses) and back, drop the watch mid-stream,
# compact the history (resume gets 410 Gone, the proxy relists), expire the token (401: the last endpoints
# stay, stale) and rotate it in the token file. Checks: 0 failed requests, and the proxy's endpoint set
# equal to the double's within 1 s of each change.
source "$(dirname "$0")/lib/common.sh"

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
BASE=${ZONEWARD_IT_PORT_BASE_KUBERNETES:-23800}
API=$((BASE + 1))
CONTROL=$((BASE + 2))
PROXY_PORT=$((BASE + 3))
ADMIN=$((BASE + 4))
BACKEND_BASE=$((BASE + 20))   # backends on BACKEND_BASE+1 … +12
DOUBLE="$ROOT/integration/lib/k8s_api_double.py"

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=kubernetes" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$WORK/api-key.pem" -out "$WORK/api-cert.pem" >/dev/null 2>&1
printf 't1\n' >"$WORK/token"
python3 "$DOUBLE" --port "$API" --control-port "$CONTROL" --cert "$WORK/api-cert.pem" --key "$WORK/api-key.pem" \
    --token t1 --nodes node-a=a,node-b=b,node-c=c &
PIDS+=($!)

{
    echo "daemon off; master_process off; worker_processes 1; pid $WORK/nginx.pid; error_log $WORK/nginx-error.log warn;"
    echo "events { worker_connections 1024; }"
    echo "http { access_log off; client_body_temp_path $WORK; proxy_temp_path $WORK; fastcgi_temp_path $WORK;"
    echo "  uwsgi_temp_path $WORK; scgi_temp_path $WORK; server {"
    for i in $(seq 1 12); do echo "    listen 127.0.0.1:$((BACKEND_BASE + i));"; done
    echo "    location / { return 200 \"port=\$server_port\\n\"; } } }"
} >"$WORK/nginx.conf"
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK" &
PIDS+=($!)

cat >"$WORK/kubeconfig" <<YAML
apiVersion: v1
kind: Config
current-context: test
contexts: [{name: test, context: {cluster: double, user: proxy, namespace: shop}}]
clusters: [{name: double, cluster: {server: "https://127.0.0.1:$API", certificate-authority: api-cert.pem}}]
users: [{name: proxy, user: {tokenFile: token}}]
YAML
cat >"$WORK/zoneward.yaml" <<YAML
zones: [{name: a, region: r}, {name: b, region: r}, {name: c, region: r}]
services:
  - name: web
    listen: 127.0.0.1:$PROXY_PORT
    discovery: {kubernetes: {service: web, port: http}}
    healthCheck: {interval: 1h}
admin: {listen: 127.0.0.1:$ADMIN}
YAML

# change DESCRIPTION SPEC… -- PORT_OFFSET…: gives the double the service's slices, then polls the proxy's
# /admin/plan until its endpoints are exactly the listed ones; passes when that took at most 1 s (timed in
# the same process, from the double's acknowledgement of the change). SPEC is "zone:ready,…[:terminating,…]";
# zone c's endpoints name only their node (their zone comes from the node's label).
change() {
    local description=$1
    shift
    local out
    out=$(python3 "$ROOT/integration/lib/k8s_change.py" "$CONTROL" "$ADMIN" "$BACKEND_BASE" "$@")
    if [[ "$out" == ok* ]]; then pass "$description: ${out#ok }"; else fail "$description: $out"; fi
}

for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$CONTROL/state" >/dev/null && break; sleep 0.1; done
python3 "$ROOT/integration/lib/k8s_change.py" "$CONTROL" 0 "$BACKEND_BASE" a:1,2,3 b:4,5,6 c:7,8,9 -- >/dev/null
"$ZW" proxy --config "$WORK/zoneward.yaml" --zone a --kubeconfig "$WORK/kubeconfig" --workers 2 >"$WORK/proxy.log" 2>&1 &
PROXY=$!
PIDS+=($PROXY)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null && break; sleep 0.1; done
check "the proxy is ready" curl -sf "http://127.0.0.1:$ADMIN/readyz" -o /dev/null
change "initial list (zone c's zone from its nodes)" a:1,2,3 b:4,5,6 c:7,8,9 -- 1 2 3 4 5 6 7 8 9

# Steady load: keep-alive GETs, bounded by a stop file and 240 s, counting every failure.
python3 - "$PROXY_PORT" "$WORK/stop" "$WORK/load.json" <<'PY' &
import http.client, json, os, sys, time
port, stop, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
sent = failed = 0
errors = {}
deadline = time.monotonic() + 240
connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
while not os.path.exists(stop) and time.monotonic() < deadline:
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        body = response.read()
        sent += 1
        if response.status != 200:
            failed += 1
            key = f"{response.status} {response.getheader('X-Zoneward-Error', '')}"
            errors[key] = errors.get(key, 0) + 1
    except Exception as error:
        sent += 1
        failed += 1
        errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
        connection.close()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    time.sleep(0.005)
json.dump({"sent": sent, "failed": failed, "errors": errors}, open(out, "w"))
PY
LOAD=$!
PIDS+=($LOAD)
sleep 1

echo "kubernetes-discovery: scale zone a 3 → 1 → 0 → 3"
change "zone a scaled to 1" a:1 b:4,5,6 c:7,8,9 -- 1 4 5 6 7 8 9
change "zone a scaled to 0" a: b:4,5,6 c:7,8,9 -- 4 5 6 7 8 9
change "zone a back to 3" a:1,2,3 b:4,5,6 c:7,8,9 -- 1 2 3 4 5 6 7 8 9

echo "kubernetes-discovery: roll every endpoint (old ones terminating, then gone)"
change "terminating endpoints get no new requests" a:10:1,2,3 b:11:4,5,6 c:12:7,8,9 -- 10 11 12
change "the old endpoints are gone" a:10 b:11 c:12 -- 10 11 12
change "rolled back: new ready, old terminating" a:1,2,3:10 b:4,5,6:11 c:7,8,9:12 -- 1 2 3 4 5 6 7 8 9
change "and the terminating ones gone" a:1,2,3 b:4,5,6 c:7,8,9 -- 1 2 3 4 5 6 7 8 9

echo "kubernetes-discovery: the watch drops mid-stream"
curl -s -X POST "http://127.0.0.1:$CONTROL/drop" >/dev/null
sleep 0.6
change "a change after the reconnect is seen" a:1,2 b:4,5,6 c:7,8,9 -- 1 2 4 5 6 7 8 9

echo "kubernetes-discovery: history compacted, then a drop: resuming gets 410 Gone and the proxy relists"
curl -s -X POST "http://127.0.0.1:$CONTROL/compact" >/dev/null
curl -s -X POST "http://127.0.0.1:$CONTROL/drop" >/dev/null
sleep 0.6
change "a change after the relist is seen" a:1,2,3 b:4,5 c:7,8,9 -- 1 2 3 4 5 7 8 9
GONE=$(curl -s "http://127.0.0.1:$CONTROL/state" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"]["gone"])')
check "the double answered 410 Gone ($GONE)" [ "$GONE" -ge 1 ]

echo "kubernetes-discovery: the token expires (401): the last endpoints stay, marked stale"
curl -s -X POST "http://127.0.0.1:$CONTROL/token" -d '{"token": "t2"}' >/dev/null
curl -s -X POST "http://127.0.0.1:$CONTROL/drop" >/dev/null
STALE=0
for _ in $(seq 1 50); do
    curl -s "http://127.0.0.1:$ADMIN/metrics" | grep -q 'zoneward_discovery_state{service="web",state="stale"} 1.0' && { STALE=1; break; }
    sleep 0.1
done
check "discovery is reported stale" [ "$STALE" = 1 ]
for _ in $(seq 1 50); do
    PLAN=$(curl -s "http://127.0.0.1:$ADMIN/admin/plan?service=web")
    [[ "$PLAN" == *401* ]] && break
    sleep 0.1
done
check "/admin/plan says why" contains "$PLAN" "401"
change "the last known endpoints keep serving" -- 1 2 3 4 5 7 8 9
sleep 2
printf 't2\n' >"$WORK/token"
SYNCED=0
for _ in $(seq 1 400); do
    curl -s "http://127.0.0.1:$ADMIN/metrics" | grep -q 'zoneward_discovery_state{service="web",state="synced"} 1.0' && { SYNCED=1; break; }
    sleep 0.1
done
check "the rotated token file is picked up and discovery is synced again" [ "$SYNCED" = 1 ]
change "changes flow again" a:1,2,3 b:4,5,6 c:7,8,9 -- 1 2 3 4 5 6 7 8 9

touch "$WORK/stop"
wait "$LOAD"
RESULT=$(cat "$WORK/load.json")
echo "  load: $RESULT"
check "requests were served throughout" python3 -c "import json; r = json.load(open('$WORK/load.json')); exit(0 if r['sent'] > 500 else 1)"
check "no request failed" contains "$RESULT" '"failed": 0'
check "the proxy is still running" kill -0 "$PROXY"
finish
