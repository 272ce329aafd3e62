#!/usr/bin/env bash
# One http listener, both protocols (issue #11): HTTP/2 clients (h2c with prior knowledge, h2 by ALPN on a
# TLS listener) to an http1 service backed by nginx and an upload sink, each stream one HTTP/1.1 exchange;
# HTTP/1.1 clients to an http2 service whose endpoint is a plain h2c server, each request one upstream
# stream; HTTP/1.1 keeps working on the http1 service's port; gRPC over HTTP/1.1 gets a clear 505.
source "$(dirname "$0")/lib/common.sh"

python3 -c "import h2" 2>/dev/null || pip install -q h2 >/dev/null 2>&1
command -v h2load >/dev/null ||
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client) >/dev/null 2>&1
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

BASE=${ZONEWARD_IT_PORT_BASE_H2BRIDGE:-24700}
NGINX_PORT=$((BASE + 1))
SINK=$((BASE + 2))
H2C=$((BASE + 3))
WEB=$((BASE + 11))
WEB_TLS=$((BASE + 12))
UPLOAD=$((BASE + 13))
H2SVC=$((BASE + 14))
UPLOAD_TLS=$((BASE + 15))
ADMIN=$((BASE + 21))
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=localhost" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1
mkdir -p "$WORK/www"
head -c $((3 * 1024 * 1024)) /dev/urandom >"$WORK/www/big.bin"
head -c $((2 * 1024 * 1024)) /dev/urandom >"$WORK/upload.bin"
UPLOAD_SHA=$(sha256sum "$WORK/upload.bin" | cut -d' ' -f1)

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
        listen 127.0.0.1:$NGINX_PORT;
        root $WORK/www;
        location = /healthz { return 200 "ok\n"; }
        location = /headers {
            return 200 "host=\$host xff=\$http_x_forwarded_for proto=\$http_x_forwarded_proto conn=[\$http_connection] proto-in=\$server_protocol\n";
        }
        location = /hop { add_header Connection "close"; add_header Keep-Alive "timeout=5"; return 200 "hop\n"; }
    }
}
CONF
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK" &
PIDS+=($!)
python3 "$ROOT/integration/lib/sink.py" "$SINK" &
PIDS+=($!)
python3 "$ROOT/integration/lib/h2c_server.py" "$H2C" h2c-endpoint >"$WORK/h2c.log" 2>&1 &
PIDS+=($!)

cat >"$WORK/zoneward.yaml" <<YAML
zones: [{name: z1, region: r1}]
services:
  - name: web
    listen: 127.0.0.1:$WEB
    healthCheck: {path: /healthz, interval: 500ms}
    endpoints: [{address: 127.0.0.1:$NGINX_PORT, zone: z1}]
  - name: web-tls
    listen: 127.0.0.1:$WEB_TLS
    tls: {cert: $WORK/cert.pem, key: $WORK/key.pem}
    healthCheck: {path: /healthz, interval: 500ms}
    endpoints: [{address: 127.0.0.1:$NGINX_PORT, zone: z1}]
  - name: upload
    listen: 127.0.0.1:$UPLOAD
    healthCheck: {interval: 1h}
    endpoints: [{address: 127.0.0.1:$SINK, zone: z1}]
  - name: upload-tls
    listen: 127.0.0.1:$UPLOAD_TLS
    tls: {cert: $WORK/cert.pem, key: $WORK/key.pem}
    healthCheck: {interval: 1h}
    endpoints: [{address: 127.0.0.1:$SINK, zone: z1}]
  - name: h2svc
    listen: 127.0.0.1:$H2SVC
    upstreamProtocol: http2
    healthCheck: {interval: 500ms}
    endpoints: [{address: 127.0.0.1:$H2C, zone: z1}]
admin: {listen: 127.0.0.1:$ADMIN}
YAML
"$ZW" proxy --config "$WORK/zoneward.yaml" --zone z1 --workers 2 >"$WORK/proxy.log" 2>&1 &
PROXY=$!
PIDS+=($PROXY)
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 1 100); do
    up "$NGINX_PORT" && up "$SINK" && up "$H2C" && curl -sf "http://127.0.0.1:$ADMIN/readyz" -o /dev/null && break
    sleep 0.1
done
check "the proxy, nginx, the sink and the h2c endpoint are up" curl -sf "http://127.0.0.1:$ADMIN/readyz" -o /dev/null
sleep 1 # a health check of each endpoint

echo "h2-bridge: HTTP/2 clients to an http1 service (h2c, prior knowledge)"
OUT=$(curl -s -i --max-time 5 --http2-prior-knowledge -w '\nversion=%{http_version}' "http://127.0.0.1:$WEB/headers")
check "curl --http2-prior-knowledge gets 200 over HTTP/2" contains "$OUT" "HTTP/2 200"
check "the response was HTTP/2 end to end on the client side" contains "$OUT" "version=2"
check "the endpoint got HTTP/1.1 with Host from :authority" contains "$OUT" "host=127.0.0.1 "
check "the endpoint got X-Forwarded-For and X-Forwarded-Proto" contains "$OUT" "xff=127.0.0.1 proto=http "
check "the endpoint spoke HTTP/1.1" contains "$OUT" "proto-in=HTTP/1.1"
OUT=$(curl -s -D - -o /dev/null --max-time 5 --http2-prior-knowledge "http://127.0.0.1:$WEB/hop")
check "an HTTP/2 response carries no Connection or Keep-Alive" \
    bash -c '! grep -qiE "^(connection|keep-alive|transfer-encoding):" <<<"$1"' _ "$OUT"
check "... and is still the endpoint's 200" contains "$OUT" "HTTP/2 200"
# HEAD: the endpoint's Content-Length with no body, which NIOHTTP2's content-length check allows for HEAD only.
OUT=$(curl -s -I --max-time 5 --http2-prior-knowledge -w 'code=%{http_code} size=%{size_download}' \
    "http://127.0.0.1:$WEB/big.bin")
check "HEAD over h2c gets the endpoint's 200 and Content-Length, no body" \
    bash -c 'grep -q "^HTTP/2 200" <<<"$1" && grep -qi "^content-length: 3145728" <<<"$1" && grep -q "size=0" <<<"$1"' _ "$OUT"
OUT=$(curl -s --max-time 10 --http2-prior-knowledge -o "$WORK/big.h2c" -w '%{http_code} %{size_download}' \
    "http://127.0.0.1:$WEB/big.bin")
check "a 3 MiB download over h2c arrives whole ($OUT)" cmp -s "$WORK/www/big.bin" "$WORK/big.h2c"
OUT=$(curl -s --max-time 20 --http2-prior-knowledge --data-binary @"$WORK/upload.bin" "http://127.0.0.1:$UPLOAD/u")
check "a 2 MiB POST over h2c reaches the HTTP/1.1 sink whole" contains "$OUT" "size=2097152 sha256=$UPLOAD_SHA"
OUT=$(timeout 10 nghttp "http://127.0.0.1:$WEB/headers" 2>&1)
check "nghttp (h2c) gets the endpoint's answer" contains "$OUT" "proto-in=HTTP/1.1"
OUT=$(timeout 10 nghttp -v "http://127.0.0.1:$WEB/hop" 2>&1)
check "nghttp sees no connection-specific field in the response" bash -c '! grep -qiE "recv .*(connection|keep-alive):" <<<"$1"' _ "$OUT"
check "... and a status 200" grep -q ":status: 200" <<<"$OUT"

echo "h2-bridge: h2 by ALPN on a TLS listener of an http1 service"
OUT=$(curl -s -k --max-time 5 --http2 -w '\nversion=%{http_version}' "https://127.0.0.1:$WEB_TLS/headers")
check "curl --http2 over TLS negotiates h2 and gets the endpoint's answer" contains "$OUT" "version=2"
check "... with X-Forwarded-Proto https" contains "$OUT" "proto=https "
OUT=$(curl -s -k --max-time 5 --http1.1 -w '\nversion=%{http_version}' "https://127.0.0.1:$WEB_TLS/headers")
check "HTTP/1.1 over TLS (ALPN http/1.1) still works on the same port" contains "$OUT" "version=1.1"
OUT=$(curl -s -k --max-time 20 --http2 --data-binary @"$WORK/upload.bin" -w 'version=%{http_version}' \
    "https://127.0.0.1:$UPLOAD_TLS/u")
check "a 2 MiB POST over h2 (TLS) reaches the HTTP/1.1 sink whole" contains "$OUT" "size=2097152 sha256=$UPLOAD_SHA"
check "... over HTTP/2" contains "$OUT" "version=2"

echo "h2-bridge: HTTP/1.1 keeps working on the http1 port"
OUT=$(curl -s --max-time 5 --http1.1 -w '\nversion=%{http_version}' "http://127.0.0.1:$WEB/headers" "http://127.0.0.1:$WEB/headers")
check "two keep-alive HTTP/1.1 requests get HTTP/1.1 answers" test "$(grep -c 'version=1.1' <<<"$OUT")" = 2
check "... both answered by the endpoint" test "$(grep -c 'proto-in=HTTP/1.1' <<<"$OUT")" = 2

echo "h2-bridge: h2load through the bridge"
H2LOAD=$(timeout 60 h2load -c4 -m16 -n 2000 "http://127.0.0.1:$WEB/headers" 2>&1)
check "h2load -c4 -m16 -n 2000 over h2c: all 2000 succeed" contains "$H2LOAD" "2000 succeeded, 0 failed, 0 errored"
check "... all 200" contains "$H2LOAD" "status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx"

echo "h2-bridge: HTTP/1.1 clients to an http2 service (h2c endpoint)"
OUT=$(curl -s -i --max-time 5 --http1.1 "http://127.0.0.1:$H2SVC/hello?x=1")
check "curl --http1.1 to an http2 service gets 200" contains "$OUT" "HTTP/1.1 200"
check "... from the h2c endpoint, with :path and :authority" contains "$OUT" "h2c-endpoint method=GET path=/hello?x=1 authority=127.0.0.1:$H2SVC"
check "... with X-Forwarded-For" contains "$OUT" "xff=127.0.0.1 proto=http"
OUT=$(curl -s --max-time 20 --http1.1 --data-binary @"$WORK/upload.bin" "http://127.0.0.1:$H2SVC/up")
check "a 2 MiB POST over HTTP/1.1 reaches the h2c endpoint whole" contains "$OUT" "size=2097152 sha256=$UPLOAD_SHA"
OUT=$(curl -s --max-time 10 --http1.1 -H 'Transfer-Encoding: chunked' --data-binary @"$WORK/upload.bin" "http://127.0.0.1:$H2SVC/up")
check "... and chunked" contains "$OUT" "size=2097152 sha256=$UPLOAD_SHA"
OUT=$(curl -s --max-time 10 --http1.1 -w 'code=%{http_code} conns=%{num_connects}\n' \
    "http://127.0.0.1:$H2SVC/a" "http://127.0.0.1:$H2SVC/b" "http://127.0.0.1:$H2SVC/c")
check "three sequential requests on one keep-alive connection" contains "$OUT" "code=200 conns=0"
check "... each answered" test "$(grep -c 'h2c-endpoint' <<<"$OUT")" = 3
OUT=$(curl -s -i --max-time 5 --http1.1 -X POST -H 'content-type: application/grpc' "http://127.0.0.1:$H2SVC/pkg.Svc/Call")
check "gRPC over HTTP/1.1 gets 505 naming the cause" contains "$OUT" "x-zoneward-error: http2-required"
RAW=$(printf 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' |
    timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$H2SVC; cat >&3; cat <&3")
check "Content-Length with Transfer-Encoding is refused with 400" contains "$RAW" "HTTP/1.1 400"
OUT=$(curl -s --max-time 5 --http2-prior-knowledge "http://127.0.0.1:$H2SVC/direct")
check "an HTTP/2 client of the http2 service is still relayed stream to stream" contains "$OUT" "path=/direct"

echo "h2-bridge: metrics"
METRICS=$(curl -s "http://127.0.0.1:$ADMIN/metrics")
check "bridged requests are counted per zone pair" \
    grep -qE 'zoneward_requests_total\{[^}]*service="web"[^}]*\} [0-9]{4}' <<<"$METRICS"
check "the proxy is still running" kill -0 "$PROXY"
finish
