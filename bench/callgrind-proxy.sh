#!/usr/bin/env bash
# Instructions per proxied HTTP/1.1 request, counted by callgrind: repeatable whatever else the machine
# runs, unlike requests per second.
#
# Starts one nginx backend (a fixed BODY_BYTES body) and the release-built proxy (one event loop) under
# `valgrind --tool=callgrind`, warms it up, zeroes the counters, loads it with wrk for DURATION seconds,
# dumps the counters, and divides by the requests the proxy counted in that window (its own
# zoneward_requests_total). Prints the total per request and a breakdown: each function's own
# (exclusive) instructions summed by component, so the rows add up to the total, then the inclusive
# cost of a few entry points. Kernel work is not counted (callgrind sees user space only); SYSCALLS=1
# also counts system calls per request with strace.
#
#   swift build -c release && bash bench/callgrind-proxy.sh
#   ZONEWARD_BIN=/tmp/zoneward-before OUT=/tmp/cg-before bash bench/callgrind-proxy.sh
#   PROTO=h2 bash bench/callgrind-proxy.sh   # per HTTP/2 stream: h2c end to end, loaded by h2load
#   PROTO=h2h1 bash bench/callgrind-proxy.sh # per HTTP/2 stream bridged to an HTTP/1.1 backend
#   PROXY=haproxy PROTO=h2 bash bench/callgrind-proxy.sh  # the same count for HAProxy, for reference
#
# PROTO=h2: nginx listens with `http2` (h2c), the service has `upstreamProtocol: http2`, and h2load opens
# CONNECTIONS connections with STREAMS [8] concurrent streams each; the count is per stream.
#
# Knobs: ZONEWARD_BIN [.build/release/zoneward], DURATION [10], CONNECTIONS [8], BODY_BYTES [64],
# PROTO [h1], STREAMS [8], OUT [temporary directory, kept: the callgrind file and the full annotation], BASE_PORT [19500],
# TOP [25] functions listed, SYSCALLS [0], PROXY [zoneward], CACHE_SIM [0].
#
# CACHE_SIM=1 also simulates the caches (callgrind's --cache-sim=yes: first-level instruction and data
# caches and the last level, sized like this machine's) and prints the misses per request of each: how
# much memory a request touches beyond its instructions, the part a busy neighbour's cache use makes dear.
#
# PROXY=haproxy profiles HAProxy (one thread) instead, configured as bench/proxy-bench.sh configures it
# (FORWARDING [1] as there: it sets the forwarding fields Zoneward sets), and counts per request what the
# load generator completed in the window (HAProxy has no request counter to read); it prints the total
# and the top functions, not Zoneward's components.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ZONEWARD_BIN=${ZONEWARD_BIN:-$ROOT/.build/release/zoneward}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-8}
BODY_BYTES=${BODY_BYTES:-64}
BASE_PORT=${BASE_PORT:-19500}
TOP=${TOP:-25}
SYSCALLS=${SYSCALLS:-0}
CACHE_SIM=${CACHE_SIM:-0}
VALGRIND_TOOL=(--tool=callgrind)
[ "$CACHE_SIM" = 1 ] && VALGRIND_TOOL+=(--cache-sim=yes)
PROTO=${PROTO:-h1}
STREAMS=${STREAMS:-8}
PROXY=${PROXY:-zoneward}
FORWARDING=${FORWARDING:-1}
HOST=127.0.0.1
PATH=$PATH:/usr/sbin:/sbin
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/callgrind-proxy.XXXXXX")}
mkdir -p "$OUT"

fail() {
    echo "callgrind-proxy: $*" >&2
    exit 1
}
for tool in valgrind callgrind_control callgrind_annotate objcopy cc nginx wrk curl setsid; do
    command -v "$tool" >/dev/null || fail "needs $tool (apt-get install -y valgrind nginx wrk curl)"
done
case "$PROTO" in
h1) h2_listen="" upstream_protocol=http1 curl_proto=() ;;
h2)
    h2_listen=" http2" upstream_protocol=http2 curl_proto=(--http2-prior-knowledge)
    command -v h2load >/dev/null || fail "PROTO=h2 needs h2load (apt-get install -y nghttp2-client)"
    ;;
h2h1)
    # HTTP/2 clients, an HTTP/1.1 backend: the bridge.
    h2_listen="" upstream_protocol=http1 curl_proto=(--http2-prior-knowledge)
    command -v h2load >/dev/null || fail "PROTO=h2h1 needs h2load (apt-get install -y nghttp2-client)"
    ;;
*) fail "PROTO=$PROTO: expected h1, h2 or h2h1" ;;
esac
case "$PROXY" in
zoneward) [ -x "$ZONEWARD_BIN" ] || fail "no release binary at $ZONEWARD_BIN (swift build -c release)" ;;
haproxy) command -v haproxy >/dev/null || fail "PROXY=haproxy needs haproxy (apt-get install -y haproxy)" ;;
*) fail "PROXY=$PROXY: expected zoneward or haproxy" ;;
esac
DEMANGLE=$(command -v swift-demangle || true)
[ -n "$DEMANGLE" ] || fail "needs swift-demangle (ships with the Swift toolchain)"

BACKEND_PORT=$((BASE_PORT + 1))
PROXY_PORT=$((BASE_PORT + 2))
ADMIN_PORT=$((BASE_PORT + 3))
STARTED=()
stop_all() {
    local pid
    for pid in "${STARTED[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null; done
    for _ in $(seq 100); do
        local alive=0
        for pid in "${STARTED[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for pid in "${STARTED[@]}"; do kill -KILL -- "-$pid" 2>/dev/null; done
    wait 2>/dev/null
}
trap stop_all EXIT
trap 'exit 130' INT TERM

body=$(head -c $((BODY_BYTES - 1)) /dev/zero | tr '\0' 'b')
cat >"$OUT/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $OUT/nginx.pid; error_log $OUT/nginx-error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_timeout 120s; keepalive_requests 100000000;
  client_body_temp_path $OUT; proxy_temp_path $OUT; fastcgi_temp_path $OUT; uwsgi_temp_path $OUT; scgi_temp_path $OUT;
  server { listen $HOST:$BACKEND_PORT$h2_listen; default_type text/plain; location / { return 200 "$body\n"; } } }
EOF
setsid nginx -p "$OUT" -e "$OUT/nginx-error.log" -c "$OUT/nginx.conf" >"$OUT/nginx.log" 2>&1 </dev/null &
STARTED+=($!)

if [ "$PROXY" = haproxy ]; then
    h2_bind="" h2_server=""
    [ "$PROTO" != h1 ] && h2_bind=" proto h2"
    [ "$PROTO" = h2 ] && h2_server=" proto h2"
    {
        echo "global"
        echo "  nbthread 1"
        echo "  maxconn 4096"
        echo "defaults"
        echo "  mode http"
        echo "  option http-keep-alive"
        echo "  timeout connect 5s"
        echo "  timeout client 60s"
        echo "  timeout server 60s"
        echo "frontend bench"
        echo "  bind $HOST:$PROXY_PORT$h2_bind"
        if [ "$FORWARDING" = 1 ]; then
            echo "  http-request set-header X-Forwarded-For %[src]"
            echo "  http-request set-header X-Forwarded-Proto http"
            echo "  http-request set-header Forwarded \"for=%[src];proto=http\""
        fi
        echo "  default_backend backends"
        echo "backend backends"
        echo "  http-reuse always"
        echo "  server b0 $HOST:$BACKEND_PORT$h2_server"
    } >"$OUT/haproxy.cfg"
    haproxy -c -q -f "$OUT/haproxy.cfg" || fail "haproxy refused its configuration"
    setsid valgrind "${VALGRIND_TOOL[@]}" --callgrind-out-file="$OUT/callgrind.out" haproxy -db -f "$OUT/haproxy.cfg" \
        >"$OUT/proxy.log" 2>&1 </dev/null &
    PROXY_PID=$!
    STARTED+=($PROXY_PID)
else
# (Not indented: the here-documents below end at a bare EOF.)
cat >"$OUT/zoneward.yaml" <<EOF
zones: [{name: bench-a, region: bench}]
services:
  - name: bench
    listen: $HOST:$PROXY_PORT
    healthCheck: {interval: 5s}
    upstreamProtocol: $upstream_protocol
    endpoints:
      - {address: $HOST:$BACKEND_PORT, zone: bench-a}
admin: {listen: $HOST:$ADMIN_PORT}
EOF
# Valgrind 3.19 cannot read the DWARF 5 the Swift toolchain writes: profile a copy without debug
# information (the symbol table, all the function-level breakdown needs, stays).
PROFILED="$OUT/zoneward"
objcopy --strip-debug "$ZONEWARD_BIN" "$PROFILED" || fail "objcopy --strip-debug $ZONEWARD_BIN failed"
# Valgrind 3.19 also writes into the signal mask a program passes to rt_sigsuspend, and libdispatch's main
# thread passes a constant one: valgrind crashes. A preloaded sigsuspend hands the kernel a copy instead.
cat >"$OUT/sigsuspend-copy.c" <<'EOF'
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>
int sigsuspend(const sigset_t *mask) {
    sigset_t copy = *mask;
    return (int)syscall(SYS_rt_sigsuspend, &copy, _NSIG / 8);
}
EOF
cc -shared -fPIC -O2 -o "$OUT/sigsuspend-copy.so" "$OUT/sigsuspend-copy.c" || fail "cannot build the sigsuspend shim"
setsid env LD_PRELOAD="$OUT/sigsuspend-copy.so" valgrind "${VALGRIND_TOOL[@]}" --callgrind-out-file="$OUT/callgrind.out" \
    "$PROFILED" proxy --config "$OUT/zoneward.yaml" --zone bench-a --workers 1 --log-level warning \
    >"$OUT/proxy.log" 2>&1 </dev/null &
PROXY_PID=$!
STARTED+=($PROXY_PID)
fi

for _ in $(seq 600); do
    [ "$(curl "${curl_proto[@]}" -s -o /dev/null -w '%{http_code}' "http://$HOST:$PROXY_PORT/" 2>/dev/null)" = 200 ] && break
    kill -0 $PROXY_PID 2>/dev/null || break
    sleep 0.2
done
[ "$(curl "${curl_proto[@]}" -s -o /dev/null -w '%{http_code}' "http://$HOST:$PROXY_PORT/" 2>/dev/null)" = 200 ] ||
    fail "the proxy did not answer 200 under valgrind: $(tail -5 "$OUT/proxy.log")"

requests_counted() {
    curl -s "http://$HOST:$ADMIN_PORT/metrics" |
        awk '/^zoneward_requests_total/ { n += $NF } END { printf "%d\n", n }'
}
# What the load generator completed (HAProxy): wrk's "N requests in", h2load's "requests: … N succeeded".
requests_loaded() {
    awk '/requests in/ { print $1 } /^requests:/ { print $8 }' "$1"
}

# load SECONDS OUTPUT: wrk, or h2load for PROTO=h2.
load() {
    if [ "$PROTO" != h1 ]; then
        h2load -t1 -c"$CONNECTIONS" -m"$STREAMS" -D"$1" "http://$HOST:$PROXY_PORT/" >"$2" 2>&1
    else
        wrk -t1 -c"$CONNECTIONS" -d"${1}s" "http://$HOST:$PROXY_PORT/" >"$2" 2>&1
    fi
}
# Warm-up: the connection pool fills, lazy initialisations run.
load 3 "$OUT/warmup.txt"
before=0
[ "$PROXY" = zoneward ] && before=$(requests_counted)
callgrind_control -z $PROXY_PID >/dev/null || fail "callgrind_control -z failed"
if [ "$SYSCALLS" = 1 ]; then
    # Every thread of the proxy (valgrind runs them one at a time).
    timeout $((DURATION + 5)) strace -c -f -p $PROXY_PID -o "$OUT/strace.txt" &
    STRACE_PID=$!
    sleep 1
fi
load "$DURATION" "$OUT/wrk.txt"
[ "$SYSCALLS" = 1 ] && { kill -INT $STRACE_PID 2>/dev/null; wait $STRACE_PID 2>/dev/null; }
callgrind_control -d $PROXY_PID >/dev/null || fail "callgrind_control -d failed"
if [ "$PROXY" = zoneward ]; then after=$(requests_counted); else after=$(requests_loaded "$OUT/wrk.txt"); fi
requests=$((after - before))
[ "$requests" -gt 0 ] || fail "no requests counted (before $before, after $after)"
dump=$(ls -t "$OUT"/callgrind.out.* 2>/dev/null | head -1)
[ -n "$dump" ] || fail "no callgrind dump in $OUT"

# Instructions only (`--show=Ir`), whatever else was simulated: the parsing below reads one column.
callgrind_annotate --show=Ir --threshold=100 "$dump" 2>/dev/null | "$DEMANGLE" --simplified >"$OUT/exclusive.txt"
callgrind_annotate --show=Ir --inclusive=yes --threshold=100 "$dump" 2>/dev/null | "$DEMANGLE" --simplified \
    >"$OUT/inclusive.txt"
total=$(awk '/PROGRAM TOTALS/ { gsub(/,/, "", $1); print $1 }' "$OUT/exclusive.txt")

load_tool="wrk -c$CONNECTIONS"
[ "$PROTO" = h2 ] && load_tool="h2load -c$CONNECTIONS -m$STREAMS (h2c both sides)"
[ "$PROTO" = h2h1 ] && load_tool="h2load -c$CONNECTIONS -m$STREAMS (h2c clients, HTTP/1.1 backend)"
if [ "$PROXY" = zoneward ]; then
    echo "# callgrind-proxy: $(basename "$ZONEWARD_BIN") ($ZONEWARD_BIN), $load_tool for ${DURATION}s, body ${BODY_BYTES} B"
    echo "# requests counted by the proxy: $requests; instructions: $total"
else
    echo "# callgrind-proxy: $(haproxy -v | head -1 | cut -d' ' -f1-3), FORWARDING=$FORWARDING, $load_tool for ${DURATION}s, body ${BODY_BYTES} B"
    echo "# requests the load generator completed: $requests; instructions: $total"
fi
awk -v total="$total" -v n="$requests" 'BEGIN { printf "instructions per request: %.0f\n\n", total / n }'
if [ "$CACHE_SIM" = 1 ]; then
    # The simulated misses per request, and the functions with the most last-level data misses.
    callgrind_annotate --show=I1mr,ILmr,D1mr,D1mw,DLmr,DLmw --sort=DLmr --threshold=100 "$dump" 2>/dev/null |
        "$DEMANGLE" --simplified >"$OUT/cache.txt"
    awk -v n="$requests" '
    /^Events shown:/ { for (i = 3; i <= NF; i++) event[i - 2] = $i; events = NF - 2 }
    /PROGRAM TOTALS/ {
        # "13,268,421 (100.0%) 51 (100.0%) …": the counts, without their shares.
        k = 0
        for (i = 1; i <= NF && k < events; i++) if ($i ~ /^[0-9,]+$/) { v = $i; gsub(/,/, "", v); count[++k] = v }
        printf "simulated cache misses per request:"
        for (i = 1; i <= k; i++) printf "  %s %.1f", event[i], count[i] / n
        printf "\n(I1/D1: first-level instruction and data caches; IL/DL: last level; r read, w write)\n\n"
        exit
    }' "$OUT/cache.txt"
fi

if [ "$PROXY" = zoneward ]; then
# (Zoneward's components and entry points; not indented, like the awk programs they hold.)
# Exclusive costs by component: the first matching rule wins, so the rows add up to the total.
awk -v n="$requests" -v total="$total" '
/^ *[0-9,]+ +\([ 0-9.]+%\) +/ || /^ *[0-9,]+ +/ {
    line = $0
    sub(/^ */, "", line)
    cost = line; sub(/ .*/, "", cost); gsub(/,/, "", cost)
    if (cost !~ /^[0-9]+$/) next
    name = line; sub(/^[0-9,]+ +(\([ 0-9.]+%\) +)?/, "", name)
    if (name ~ /PROGRAM TOTALS/) next
    # The frames open when the counters were zeroed (thread start, the event loop run) come out of a
    # mid-run dump with everything under them as their own cost: not a component.
    if (cost + 0 > 0.9 * total) next
    c = "other"
    if (name ~ /swift_(retain|release|bridgeObjectRetain|bridgeObjectRelease|unknownObjectRetain|unknownObjectRelease|isUniquelyReferenced|beginAccess|endAccess)/) c = "ARC retain/release, exclusivity"
    else if (name ~ /swift_(allocObject|deallocObject|deallocClassInstance|slowAlloc|slowDealloc)|malloc|free|_int_|tcache|cfree/) c = "allocation (swift_allocObject, malloc/free)"
    else if (name ~ /NIOHPACK|HPACK|Huffman|IndexedHeaderTable|DynamicHeaderTable|StaticHeaderTable|HeaderTableStorage/) c = "HPACK (NIOHPACK)"
    else if (name ~ /HTTP2StreamChannel|MultiplexerAbstractChannel|HTTP2StreamMultiplexer|InlineStreamMultiplexer|HTTP2CommonInboundStreamMultiplexer|StreamChannelList|StreamMap/) c = "HTTP/2 stream channels (NIOHTTP2 multiplexer)"
    else if (name ~ /NIOHTTP2|HTTP2Frame|HTTP2Connection|HTTP2Stream|HTTP2Settings|HTTP2Headers|HTTP2Flow|ConnectionStateMachine|StreamStateMachine|FrameEncoder|FrameDecoder|HTTP2FrameParser|HTTP2FrameEncoder|OutboundFlowControl|InboundWindowManager|ContentLengthVerifier|HeaderBlockValidator/) c = "HTTP/2 framing and state (NIOHTTP2)"
    else if (name ~ /H2StreamProxy|H2Upstream|H2Listener|H2Headers|ClientConnection|FlushCoalescer|H2GoAway|H2Client|Bridge/) c = "HTTP/2 proxy (own code)"
    else if (name ~ /HTTPHeadParser|HeaderSummary|LineScanner|ForwardingInfo/) c = "HTTP head parsing and rewriting"
    else if (name ~ /ExchangeStateMachine|BodyTracker|ChunkedBodyScanner/) c = "exchange state machine, body framing"
    else if (name ~ /ClientTimer|IdleWatch/) c = "timers (ClientTimer, IdleWatch)"
    else if (name ~ /HTTPProxyHandler/) c = "HTTPProxyHandler (own code)"
    else if (name ~ /UpstreamConnection/) c = "UpstreamConnection (own code)"
    else if (name ~ /UpstreamPool|RetryBudget/) c = "upstream pool, retry budget"
    else if (name ~ /ServiceRoutes|BalancerRandom|RoutingTable|UpstreamEndpoint/) c = "routing (zone pick, P2C)"
    else if (name ~ /Prometheus|Counter|Histogram|Gauge|ServiceMetrics|CoreMetrics|Metrics\./) c = "metrics"
    else if (name ~ /Logging|Logger|LogHandler/) c = "logging"
    else if (name ~ /mem(cpy|move|set|chr|cmp)|__memcpy|__memmove|__memset|__memchr/) c = "libc memcpy/memchr"
    else if (name ~ /ChannelPipeline|ChannelHandlerContext|ChannelHandler|NIOAny|fireChannel|invokeChannel|invokeWrite|invokeFlush|invokeRead/) c = "NIO pipeline hops (contexts, NIOAny)"
    else if (name ~ /ByteBuffer|ByteBufferAllocator/) c = "NIO ByteBuffer"
    else if (name ~ /PendingStreamWrites|PendingWrites|writev|readFromSocket|Socket|BaseSocketChannel|SocketChannel|RecvByteBuffer|IOVector|__libc_(read|write|recv|send)|^(read|write|readv|writev)$|syscall|sendmsg|recvmsg/) c = "NIO socket read/write path"
    else if (name ~ /SelectableEventLoop|Selector|epoll|EventLoop|Scheduled|PriorityQueue|Heap|timerfd|eventfd|clock_gettime|NIODeadline/) c = "NIO event loop, selector, scheduling"
    else if (name ~ /NIOCore|NIOPosix|NIO\./) c = "NIO other"
    else if (name ~ /^\?\?\?|libswiftCore|Swift\.|swift_/) c = "Swift runtime/stdlib other"
    cost_of[c] += cost
    sum += cost
}
END {
    for (c in cost_of) printf "%-46s %12.0f %7.1f%%\n", c, cost_of[c] / n, 100 * cost_of[c] / total
    printf "%-46s %12.0f %7.1f%%\n", "(functions under the listing threshold)", (total - sum) / n, 100 * (total - sum) / total
}' "$OUT/exclusive.txt" | sort -t'|' -k1,1 >"$OUT/components.txt"
printf "%-46s %12s %8s\n" "component (own instructions)" "instr/req" "share"
# Largest first: the instructions per request are the second to last column.
awk '{ print $(NF - 1) "\t" $0 }' "$OUT/components.txt" | sort -rn | cut -f2-
echo

echo "inclusive cost of entry points (instructions per request; nested, so they overlap):"
awk -v n="$requests" '
function report(label, pattern,   i) {
    for (i = 1; i <= count; i++) if (names[i] ~ pattern) { printf "  %-58s %10.0f\n", label, costs[i] / n; return }
    printf "  %-58s %10s\n", label, "-"
}
/^ *[0-9,]+ +/ {
    line = $0; sub(/^ */, "", line)
    cost = line; sub(/ .*/, "", cost); gsub(/,/, "", cost)
    name = line; sub(/^[0-9,]+ +(\([ 0-9.]+%\) +)?/, "", name)
    if (cost ~ /^[0-9]+$/ && name !~ /PROGRAM TOTALS/) { count++; costs[count] = cost; names[count] = name }
}
END {
    report("HTTPProxyHandler.channelRead (client bytes in)", "HTTPProxyHandler\\.channelRead\\(context")
    report("UpstreamConnection.channelRead (response bytes in)", "UpstreamConnection\\.channelRead\\(context")
    report("HTTPHeadParser.parseRequest", "HTTPHeadParser\\.parseRequest")
    report("HTTPHeadParser.parseResponse", "HTTPHeadParser\\.parseResponse")
    report("HTTPHeadParser.headLength", "HTTPHeadParser\\.headLength")
    report("ServiceRoutes.pick", "ServiceRoutes\\.pick")
    report("UpstreamPool.acquire", "UpstreamPool\\.acquire")
    report("ServiceMetrics.recordRequest", "ServiceMetrics\\.recordRequest")
    report("DurationHistogram.record", "DurationHistogram\\.record")
    report("NIO readFromSocket", "readFromSocket")
    report("NIO flush / writes", "PendingStreamWritesManager\\.triggerAppropriateWriteOperations|flushNow")
    report("epoll_wait", "^epoll_wait")
}' "$OUT/inclusive.txt"
echo
fi
echo "top $TOP functions by own instructions per request:"
awk -v n="$requests" -v top="$TOP" -v total="$total" '
/^ *[0-9,]+ +/ {
    line = $0; sub(/^ */, "", line)
    cost = line; sub(/ .*/, "", cost); gsub(/,/, "", cost)
    name = line; sub(/^[0-9,]+ +(\([ 0-9.]+%\) +)?/, "", name)
    if (cost !~ /^[0-9]+$/ || name ~ /PROGRAM TOTALS/ || cost + 0 > 0.9 * total) next
    if (++shown > top) exit
    if (length(name) > 110) name = substr(name, 1, 107) "..."
    printf "  %8.0f  %s\n", cost / n, name
}' "$OUT/exclusive.txt"
if [ "$SYSCALLS" = 1 ] && [ -s "$OUT/strace.txt" ]; then
    echo
    echo "system calls per request (strace -c while loaded; strace slows the run, so the window differs):"
    strace_requests=$(awk '/requests in/ { print $1 }' "$OUT/wrk.txt")
    awk -v n="${strace_requests:-1}" '$NF ~ /^[a-z_0-9]+$/ && $(NF - 1) ~ /^[0-9]+$/ && $NF != "total" {
        printf "  %-16s %6.2f\n", $NF, $(NF - 1) / n } $NF == "total" { printf "  %-16s %6.2f\n", "total", $(NF - 1) / n }' \
        "$OUT/strace.txt" | sort -k2 -rn | head -12
fi
echo
echo "# files: $OUT (exclusive.txt, inclusive.txt: callgrind_annotate demangled)"
