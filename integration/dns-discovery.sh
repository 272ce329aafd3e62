#!/usr/bin/env bash
# DNS discovery against a real DNS server (dnsmasq on loopback): names per zone resolved to endpoints,
# re-resolved at the record's TTL (5 s here), a changed record followed, and the last answer kept while the
# server is down (state stale), with requests served throughout.
source "$(dirname "$0")/lib/common.sh"

DNSMASQ=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
if [ ! -x "$DNSMASQ" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsmasq-base) >/dev/null 2>&1
    DNSMASQ=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
BASE=${ZONEWARD_IT_PORT_BASE_DNS:-24100}
DNS=$((BASE + 1))
BACKEND=$((BASE + 2))
PROXY_PORT=$((BASE + 3))
ADMIN=$((BASE + 4))

cat >"$WORK/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $WORK/nginx.pid; error_log $WORK/nginx-error.log warn;
events { worker_connections 256; }
http { access_log off; client_body_temp_path $WORK; proxy_temp_path $WORK; fastcgi_temp_path $WORK;
  uwsgi_temp_path $WORK; scgi_temp_path $WORK;
  server { listen 127.0.0.11:$BACKEND; listen 127.0.0.12:$BACKEND; listen 127.0.0.21:$BACKEND;
    listen 127.0.0.22:$BACKEND; location / { return 200 "addr=\$server_addr\n"; } } }
CONF
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK" &
PIDS+=($!)

printf '127.0.0.11 web-a.internal\n127.0.0.12 web-a.internal\n127.0.0.21 web-b.internal\n' >"$WORK/hosts"
start_dns() {
    "$DNSMASQ" --keep-in-foreground --conf-file=/dev/null --user=root --port="$DNS" --listen-address=127.0.0.1 \
        --bind-interfaces --no-resolv --no-hosts --addn-hosts="$WORK/hosts" --local-ttl=5 \
        --pid-file="$WORK/dnsmasq.pid" 2>"$WORK/dnsmasq.log" &
    DNS_PID=$!
    PIDS+=($DNS_PID)
}
start_dns

cat >"$WORK/zoneward.yaml" <<YAML
zones: [{name: a, region: r}, {name: b, region: r}]
services:
  - name: web
    listen: 127.0.0.1:$PROXY_PORT
    healthCheck: {interval: 1h}
    discovery:
      dns:
        - {name: web-a.internal, port: $BACKEND, zone: a, resolver: 127.0.0.1:$DNS}
        - {name: web-b.internal, port: $BACKEND, zone: b, resolver: 127.0.0.1:$DNS}
admin: {listen: 127.0.0.1:$ADMIN}
YAML
"$ZW" proxy --config "$WORK/zoneward.yaml" --zone a --workers 1 >"$WORK/proxy.log" 2>&1 &
PROXY=$!
PIDS+=($PROXY)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null && break; sleep 0.1; done
check "the proxy is ready" curl -sf "http://127.0.0.1:$ADMIN/readyz" -o /dev/null

# wait_endpoints SECONDS ADDRESS…: the proxy's endpoints become exactly these within SECONDS.
wait_endpoints() {
    local limit=$1
    shift
    local wanted seen
    wanted=$(for host in "$@"; do echo "$host:$BACKEND"; done | sort | tr '\n' ' ')
    for _ in $(seq 1 $((limit * 10))); do
        seen=$(curl -s "http://127.0.0.1:$ADMIN/admin/plan?service=web" |
            python3 -c 'import json,sys; print(" ".join(sorted(e["address"] for e in json.load(sys.stdin)["endpoints"])) + " ")' 2>/dev/null)
        [ "$seen" = "$wanted" ] && return 0
        sleep 0.1
    done
    echo "    wanted [$wanted], saw [$seen]" >&2
    return 1
}
metric() { curl -s "http://127.0.0.1:$ADMIN/metrics" | grep -F "$1" | awk '{print $2}' | head -1; }

check "both names resolve to their zones' endpoints" wait_endpoints 5 127.0.0.11 127.0.0.12 127.0.0.21
PLAN=$(curl -s "http://127.0.0.1:$ADMIN/admin/plan?service=web")
check "zones come from the entries" contains "$PLAN" '"address":"127.0.0.21:'"$BACKEND"'","ejected":false,"eligible":true,"healthy":true,"outstanding":0,"weight":1,"zone":"b"'
OK=0
for _ in $(seq 1 20); do curl -sf "http://127.0.0.1:$PROXY_PORT/" >/dev/null && OK=$((OK + 1)); done
check "requests are served ($OK of 20)" [ "$OK" = 20 ]

echo "dns-discovery: records change (TTL 5 s)"
printf '127.0.0.11 web-a.internal\n127.0.0.21 web-b.internal\n127.0.0.22 web-b.internal\n' >"$WORK/hosts"
kill -HUP "$DNS_PID"
check "the change is followed within the TTL plus one resolution" wait_endpoints 8 127.0.0.11 127.0.0.21 127.0.0.22

echo "dns-discovery: the DNS server goes away"
kill "$DNS_PID"
wait "$DNS_PID" 2>/dev/null
STALE=0
for _ in $(seq 1 120); do
    [ "$(metric 'zoneward_discovery_state{service="web",state="stale"}')" = 1.0 ] && { STALE=1; break; }
    sleep 0.1
done
check "discovery is reported stale" [ "$STALE" = 1 ]
check "the last answer keeps serving" wait_endpoints 1 127.0.0.11 127.0.0.21 127.0.0.22
OK=0
for _ in $(seq 1 20); do curl -sf "http://127.0.0.1:$PROXY_PORT/" >/dev/null && OK=$((OK + 1)); done
check "requests are still served ($OK of 20)" [ "$OK" = 20 ]
start_dns
SYNCED=0
for _ in $(seq 1 120); do
    [ "$(metric 'zoneward_discovery_state{service="web",state="synced"}')" = 1.0 ] && { SYNCED=1; break; }
    sleep 0.1
done
check "back to synced when the server answers again" [ "$SYNCED" = 1 ]
check "the proxy is still running" kill -0 "$PROXY"
finish
