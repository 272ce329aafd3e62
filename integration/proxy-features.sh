#!/usr/bin/env bash
# The proxy's data path against real nginx: forwarding headers, a 1 GiB chunked upload in bounded memory,
# a large streamed download, a TCP listener with half-close, TLS termination checked with curl, request
# smuggling refused on a live socket, errors that name their cause, reload (bad file refused, old config
# serving), and graceful shutdown that finishes the request in flight.
source "$(dirname "$0")/lib/common.sh"

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$NGINX" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light) >/dev/null 2>&1 ||
        (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx) >/dev/null 2>&1
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
fi
BASE=${ZONEWARD_IT_PORT_BASE_FEATURES:-23200}
BACKEND=$((BASE + 1))
SINK=$((BASE + 2))
HTTP=$((BASE + 11))
TCP=$((BASE + 12))
TLS=$((BASE + 13))
BROKEN=$((BASE + 14))
ADMIN=$((BASE + 21))
CLOSED_PORT=$((BASE + 99))

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=localhost" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=other" -keyout "$WORK/other-key.pem" \
    -out "$WORK/other-ca.pem" >/dev/null 2>&1
mkdir -p "$WORK/www"
head -c $((256 * 1024 * 1024)) /dev/zero >"$WORK/www/big.bin"
head -c $((400 * 1024)) /dev/urandom >"$WORK/www/slow.bin"
cat >"$WORK/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK; proxy_temp_path $WORK; fastcgi_temp_path $WORK; uwsgi_temp_path $WORK; scgi_temp_path $WORK;
    server {
        listen 127.0.0.1:$BACKEND;
        client_max_body_size 0;
        root $WORK/www;
        location = /healthz { return 200 "ok\n"; }
        location = /headers {
            return 200 "host=\$host xff=\$http_x_forwarded_for proto=\$http_x_forwarded_proto fwd=\$http_forwarded conn=[\$http_connection] ka=[\$http_keep_alive] drop=[\$http_x_drop] keep=[\$http_x_keep]\n";
        }
        location = /upload { return 200 "received\n"; }
        location = /slow.bin { limit_rate 200k; }
    }
    server {
        listen 127.0.0.1:$((BASE + 3)) ssl;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        location = /healthz { return 200 "ok\n"; }
        location / { return 200 "tls-backend scheme=\$scheme\n"; }
    }
}
CONF
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK" &
PIDS+=($!)
# nginx answers an upload before reading it; this sink reads every byte first, then answers.
python3 "$ROOT/integration/lib/sink.py" "$SINK" &
PIDS+=($!)

write_config() { # weight of the backend
    cat >"$WORK/zoneward.yaml" <<YAML
zones: [{name: z1, region: r1}]
services:
  - name: web
    listen: 127.0.0.1:$HTTP
    forwardedFor: {trustedProxies: [127.0.0.0/8]}   # the client stands in for a trusted proxy
    healthCheck: {path: /healthz, interval: 500ms}
    endpoints: [{address: 127.0.0.1:$BACKEND, zone: z1, weight: $1}]
  - name: raw
    listen: 127.0.0.1:$TCP
    protocol: tcp
    endpoints: [{address: 127.0.0.1:$BACKEND, zone: z1}]
  - name: secure
    listen: 127.0.0.1:$TLS
    tls: {cert: $WORK/cert.pem, key: $WORK/key.pem}
    endpoints: [{address: 127.0.0.1:$BACKEND, zone: z1}]
  - name: tls-upstream
    listen: 127.0.0.1:$((BASE + 16))
    upstreamTLS: {caFile: $WORK/cert.pem}
    healthCheck: {path: /healthz, interval: 500ms}
    endpoints: [{address: 127.0.0.1:$((BASE + 3)), zone: z1}]
  - name: untrusted-upstream
    listen: 127.0.0.1:$((BASE + 17))
    upstreamTLS: {caFile: $WORK/other-ca.pem}
    healthCheck: {interval: 1h}
    endpoints: [{address: 127.0.0.1:$((BASE + 3)), zone: z1}]
  - name: upload
    listen: 127.0.0.1:$((BASE + 15))
    healthCheck: {interval: 1h}
    endpoints: [{address: 127.0.0.1:$SINK, zone: z1}]
  - name: broken
    listen: 127.0.0.1:$BROKEN
    healthCheck: {interval: 1h}
    endpoints: [{address: 127.0.0.1:$CLOSED_PORT, zone: z1}]
admin: {listen: 127.0.0.1:$ADMIN}
YAML
}
write_config 1
"$ZW" proxy --config "$WORK/zoneward.yaml" --zone z1 --workers 2 >"$WORK/proxy.log" 2>&1 &
PROXY=$!
PIDS+=($PROXY)
for i in $(seq 1 100); do curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null && break; sleep 0.1; done
check "the proxy is ready" curl -sf "http://127.0.0.1:$ADMIN/readyz" -o /dev/null

echo "proxy-features: forwarding headers"
OUT=$(curl -s "http://127.0.0.1:$HTTP/headers" -H "Host: app.example" -H "Connection: keep-alive, X-Drop" \
    -H "X-Drop: secret" -H "Keep-Alive: timeout=5" -H "X-Keep: yes" -H "X-Forwarded-For: 198.51.100.9")
echo "  backend saw: $OUT"
check "Host is kept" contains "$OUT" "host=app.example"
check "X-Forwarded-For from a trusted peer is extended with the client" contains "$OUT" "xff=198.51.100.9, 127.0.0.1"
check "X-Forwarded-Proto is set" contains "$OUT" "proto=http "
check "Forwarded is added" contains "$OUT" "fwd=for=127.0.0.1;proto=http"
check "hop-by-hop headers are removed" contains "$OUT" "conn=[] ka=[] drop=[]"
check "end-to-end headers pass" contains "$OUT" "keep=[yes]"

echo "proxy-features: bodies streamed both ways"
UPLOAD=$(timeout 120 python3 -c "
import http.client
connection = http.client.HTTPConnection('127.0.0.1', $((BASE + 15)), timeout=60)
block = bytes(1 << 20)
connection.request('PUT', '/upload', body=(block for _ in range(1024)), headers={'Content-Length': str(1 << 30)})
print(connection.getresponse().read().decode())")
ZERO_SHA=$(head -c $((1024 * 1024 * 1024)) /dev/zero | sha256sum | cut -d' ' -f1)
check "a 1 GiB upload arrives whole" contains "$UPLOAD" "size=1073741824 sha256=$ZERO_SHA"
CHUNKED_UPLOAD=$(head -c $((64 * 1024 * 1024)) /dev/zero | curl -s -T - "http://127.0.0.1:$((BASE + 15))/upload")
ZERO64_SHA=$(head -c $((64 * 1024 * 1024)) /dev/zero | sha256sum | cut -d' ' -f1)
echo "  chunked upload: $CHUNKED_UPLOAD"; check "a 64 MiB chunked upload arrives whole" contains "$CHUNKED_UPLOAD" "size=67108864 sha256=$ZERO64_SHA"
PEAK_KB=$(awk '/VmHWM/ {print $2}' "/proc/$PROXY/status")
echo "  proxy peak RSS after the upload: $((PEAK_KB / 1024)) MiB"
check "the upload streamed in bounded memory (peak RSS $((PEAK_KB / 1024)) MiB ≤ 200 MiB)" [ "$PEAK_KB" -le $((200 * 1024)) ]
DOWNLOAD=$(curl -s "http://127.0.0.1:$HTTP/big.bin" -o "$WORK/big.out" -w "%{http_code} %{size_download}")
check "a 256 MiB response streams through ($DOWNLOAD)" [ "$DOWNLOAD" = "200 268435456" ]
check "the download is intact" cmp -s "$WORK/www/big.bin" "$WORK/big.out"
rm -f "$WORK/big.out"
CHUNKED=$(printf 'POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /headers HTTP/1.1\r\nHost: second\r\nConnection: close\r\n\r\n' |
    timeout 5 python3 -c "
import socket, sys
s = socket.create_connection(('127.0.0.1', $HTTP)); s.sendall(sys.stdin.buffer.read())
data = b''
while True:
    chunk = s.recv(65536)
    if not chunk: break
    data += chunk
print(data.decode(errors='replace'))")
check "a chunked request and a pipelined one on the same connection both get answers" \
    python3 -c "import sys; t=sys.argv[1]; assert t.count('HTTP/1.1 200') == 2 and 'received' in t and 'host=second' in t, t" "$CHUNKED"

echo "proxy-features: TCP listener"
TCP_OUT=$(curl -s "http://127.0.0.1:$TCP/headers" -H "Host: via-tcp")
check "HTTP passes through the TCP relay untouched" contains "$TCP_OUT" "host=via-tcp xff= "
HALF=$(timeout 5 python3 -c "
import socket
s = socket.create_connection(('127.0.0.1', $TCP))
s.sendall(b'GET /headers HTTP/1.0\r\nHost: half\r\n\r\n')
s.shutdown(socket.SHUT_WR)
data = b''
while True:
    chunk = s.recv(65536)
    if not chunk: break
    data += chunk
print(data.decode())")
check "a half-closed TCP client still gets its answer" contains "$HALF" "host=half"

echo "proxy-features: TLS"
TLS_OUT=$(curl -s --cacert "$WORK/cert.pem" "https://127.0.0.1:$TLS/headers")
check "TLS is terminated with the configured certificate" contains "$TLS_OUT" "proto=https"
check "a client that does not trust the certificate is refused" bash -c "! curl -s https://127.0.0.1:$TLS/headers >/dev/null"
check "TLS to an upstream verified with the configured CA file" \
    contains "$(curl -s "http://127.0.0.1:$((BASE + 16))/")" "tls-backend scheme=https"
check "an upstream whose certificate the CA file does not vouch for is refused" \
    contains "$(curl -s -i "http://127.0.0.1:$((BASE + 17))/" | tr -d '\r')" "HTTP/1.1 502"

echo "proxy-features: bad requests and failing upstreams"
SMUGGLE=$(printf 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' |
    timeout 5 python3 -c "
import socket, sys
s = socket.create_connection(('127.0.0.1', $HTTP)); s.sendall(sys.stdin.buffer.read())
data = b''
while True:
    chunk = s.recv(65536)
    if not chunk: break
    data += chunk
print(data.decode())")
check "Content-Length with Transfer-Encoding is refused with 400 and the connection closed" \
    contains "$SMUGGLE" "HTTP/1.1 400 Bad Request"
FOLD=$(printf 'GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n' | timeout 5 python3 -c "
import socket, sys
s = socket.create_connection(('127.0.0.1', $HTTP)); s.sendall(sys.stdin.buffer.read()); print(s.recv(4096).decode())")
check "obsolete line folding is refused" contains "$FOLD" "400 Bad Request"
BROKEN_OUT=$(curl -s -i "http://127.0.0.1:$BROKEN/" | tr -d '\r')
check "an unreachable endpoint gives 502 naming the cause" contains "$BROKEN_OUT" "X-Zoneward-Error: upstream-connect-failed"
check "the 502 has a short text body" contains "$BROKEN_OUT" "502 Bad Gateway: upstream-connect-failed"

echo "proxy-features: reload"
cp "$WORK/zoneward.yaml" "$WORK/good.yaml"
sed 's/zone: z1, weight: 1}/zone: z9, weight: 1}/' "$WORK/good.yaml" >"$WORK/zoneward.yaml"
kill -HUP "$PROXY"
sleep 1.5
METRICS=$(curl -s "http://127.0.0.1:$ADMIN/metrics")
# One edit seen by both SIGHUP and the file watcher is one reload attempt: refused and counted once.
check "an invalid config is refused and counted once" contains "$METRICS" "zoneward_config_reload_failures_total 1"
check "the refusal is logged with the bad field" grep -q 'services\[0\].endpoints\[0\].zone: unknown zone "z9"' "$WORK/proxy.log"
check "the old config keeps serving" contains "$(curl -s "http://127.0.0.1:$HTTP/headers")" "host=127.0.0.1"
write_config 3
sleep 1.5
check "a valid change is applied" contains "$(curl -s "http://127.0.0.1:$ADMIN/admin/plan?service=web")" '"weight":3'

echo "proxy-features: graceful shutdown"
curl -s "http://127.0.0.1:$HTTP/slow.bin" -o "$WORK/slow.out" -w "%{http_code}" >"$WORK/slow.code" &
SLOW=$!
sleep 0.5
kill -TERM "$PROXY"
sleep 0.3
check "no new connections are accepted while draining" bash -c "! curl -s -m 2 http://127.0.0.1:$HTTP/healthz >/dev/null"
wait "$SLOW"
check "the request in flight finished completely" cmp -s "$WORK/www/slow.bin" "$WORK/slow.out"
wait "$PROXY"
CODE=$?
check "the proxy exited 0 after draining (exit $CODE)" [ "$CODE" = 0 ]

echo "FIGURE proxy-features peak RSS during a 1 GiB upload (debug build): $((PEAK_KB / 1024)) MiB"
finish
