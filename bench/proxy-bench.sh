#!/usr/bin/env bash
# Side-by-side HTTP/1.1 reverse-proxy benchmark on loopback.
#
# Starts BACKENDS small nginx servers (each answers every request with the same BODY_BYTES body), then in
# front of all of them: HAProxy (mode http, keep-alive to the backends), nginx as a reverse proxy (upstream
# keepalive) and the release-built Zoneward proxy (through bench/proxy-candidate.sh). wrk then loads each
# target in turn (the first backend directly, then each proxy), ROUNDS times in a rotating order, and the
# medians are printed: requests/s, p50 and p99 latency, and the ratios to HAProxy and to the direct run;
# and each target's CPU time (user + system) per request, read from /proc around each run: on a shared
# machine the sturdier figure, since CPU time other tenants take lowers requests/s but not it. Beside it,
# the system part of that time and the read/write system calls per request (/proc/PID/io's syscr + syscw:
# the read and write family only, not recv or send, so HAProxy shows 0).
#
#   swift build -c release && bash bench/proxy-bench.sh
#   PIN=split bash bench/proxy-bench.sh          # wrk + backends on CPU 1, every proxy on CPU 0
#   BASELINE_BIN=/tmp/zoneward-before bash bench/proxy-bench.sh   # also an older binary, as "baseline"
#   PROTO=h2 PIN=split bash bench/proxy-bench.sh  # HTTP/2 (h2c) end to end, loaded by h2load
#   PROTO=h2h1 PIN=split bash bench/proxy-bench.sh  # HTTP/2 (h2c) clients, HTTP/1.1 backends
#
# PROTO=h2: the backends speak h2c (nginx `listen … http2`), HAProxy uses `proto h2` on both sides, nginx
# proxies with `grpc_pass` (its HTTP/2 upstream), Zoneward with `upstreamProtocol: http2`; h2load opens
# CONNECTIONS [8] connections with STREAMS [8] concurrent streams each (64 in flight), and p50/p99 come from
# its per-request log. Requests/s are then streams/s.
#
# PROTO=h2h1: h2load's HTTP/2 clients as above, HTTP/1.1 backends: HAProxy binds `proto h2` and keeps its
# HTTP/1.1 servers, nginx listens `http2` and uses proxy_pass, Zoneward bridges each stream to an HTTP/1.1
# exchange (`upstreamProtocol: http1`, what TLS clients offered h2 by ALPN get). No direct run (the
# backends do not speak HTTP/2 to h2load).
#
# Knobs (defaults in brackets): DURATION [10] seconds per run, WARMUP [2] seconds per target first,
# ROUNDS [3], CONNECTIONS [64], THREADS [1] wrk threads, BODY_BYTES [64], BACKENDS [3],
# PIN [none] (split: pin as above; PROXY_CPUS / LOAD_CPUS override the CPU lists),
# WORKERS [CPUs the proxies may use] threads of each proxy, TARGETS [direct haproxy nginx zoneward
# (baseline)], ZONEWARD_BIN [.build/release/zoneward], BASE_PORT [19400], KEEP_WORK [0] (1: keep logs),
# FORWARDING [1], SYSCALLS [0].
#
# With ROUNDS of 2 or more, a second table pairs each target with HAProxy round by round and prints the
# median of the per-round ratios (requests/s, p99, CPU time), with a 95% interval from 6 rounds up: on a
# shared machine, many short rounds (ROUNDS=15 DURATION=5) say more than a few long ones.
#
# SYSCALLS=1: each target's system calls during each run are also counted with perf's syscall tracepoints
# (`perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_NAME,… -p <the target's pids>`): all of them
# ("all"), and by name a fixed list (SYSCALL_NAMES: the reads and writes `rw/req` sees, recv and send,
# epoll_wait, epoll_ctl, timerfd_settime, futex, …), printed per request after the table, summed over the
# rounds. Far cheaper than ptrace, but not free: while counting, each call takes the kernel's slower
# traced path, so CPU figures from a SYSCALLS=1 run are a little higher, the more so the more calls a
# target makes.
#
# FORWARDING=1: HAProxy and nginx also set X-Forwarded-For (replacing the client's), X-Forwarded-Proto and
# Forwarded on each request, as Zoneward always does, so every proxy does the same work. FORWARDING=0:
# HAProxy and nginx pass the request on with no forwarding fields (the figures before session 7).
#
# Everything runs from a temporary directory; every process started is stopped by its pid (each in its own
# process group, so a wrapper's child goes too) on exit, also on failure or Ctrl-C.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-3}
PROTO=${PROTO:-h1}
case "$PROTO" in
h1) CONNECTIONS=${CONNECTIONS:-64} ;;
h2 | h2h1) CONNECTIONS=${CONNECTIONS:-8} ;;
*)
    echo "proxy-bench: PROTO=$PROTO: expected h1, h2 or h2h1" >&2
    exit 2
    ;;
esac
STREAMS=${STREAMS:-8}
THREADS=${THREADS:-1}
BODY_BYTES=${BODY_BYTES:-64}
BACKENDS=${BACKENDS:-3}
PIN=${PIN:-none}
BASE_PORT=${BASE_PORT:-19400}
ZONEWARD_BIN=${ZONEWARD_BIN:-$ROOT/.build/release/zoneward}
BASELINE_BIN=${BASELINE_BIN:-}
KEEP_WORK=${KEEP_WORK:-0}
FORWARDING=${FORWARDING:-1}
SYSCALLS=${SYSCALLS:-0}
HOST=127.0.0.1
PATH=$PATH:/usr/sbin:/sbin

fail() {
    echo "proxy-bench: $*" >&2
    exit 1
}
for tool in nginx haproxy wrk setsid timeout awk curl sort; do
    command -v "$tool" >/dev/null || fail "needs $tool (apt-get install -y nginx haproxy wrk curl)"
done
[ "$PROTO" = h1 ] || command -v h2load >/dev/null || fail "PROTO=$PROTO needs h2load (apt-get install -y nghttp2-client)"
# HTTP/2 without TLS (h2c, prior knowledge): clients to proxies for PROTO=h2 and h2h1 (h2_listen, h2_curl),
# proxies to backends for PROTO=h2 only (backend_listen, backend_curl).
h2_listen=""
h2_curl=()
backend_listen=""
backend_curl=()
if [ "$PROTO" != h1 ]; then
    h2_listen=" http2"
    h2_curl=(--http2-prior-knowledge)
fi
if [ "$PROTO" = h2 ]; then
    backend_listen=" http2"
    backend_curl=(--http2-prior-knowledge)
fi
[ -x "$ZONEWARD_BIN" ] || fail "no Zoneward release binary at $ZONEWARD_BIN (swift build -c release)"
[ -z "$BASELINE_BIN" ] || [ -x "$BASELINE_BIN" ] || fail "BASELINE_BIN=$BASELINE_BIN is not executable"

# CPU placement.
if [ "$PIN" = split ]; then
    PROXY_CPUS=${PROXY_CPUS:-0}
    LOAD_CPUS=${LOAD_CPUS:-1}
fi
PROXY_CPUS=${PROXY_CPUS:-}
LOAD_CPUS=${LOAD_CPUS:-}
proxy_pin=()
load_pin=()
[ -n "$PROXY_CPUS" ] && proxy_pin=(taskset -c "$PROXY_CPUS")
[ -n "$LOAD_CPUS" ] && load_pin=(taskset -c "$LOAD_CPUS")
if [ -z "${WORKERS:-}" ]; then
    if [ -n "$PROXY_CPUS" ]; then
        WORKERS=$(taskset -c "$PROXY_CPUS" nproc)
    else
        WORKERS=$(nproc)
    fi
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/proxy-bench.XXXXXX") || fail "mktemp failed"
STARTED=()
stop_all() {
    local pid
    for pid in "${STARTED[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null; done
    for _ in $(seq 50); do
        local alive=0
        for pid in "${STARTED[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for pid in "${STARTED[@]}"; do kill -KILL -- "-$pid" 2>/dev/null; done
    wait 2>/dev/null
    if [ "$KEEP_WORK" = 1 ]; then echo "proxy-bench: logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# launch NAME COMMAND...: in the background, in a session of its own, output to $WORK/NAME.log.
launch() {
    local name=$1
    shift
    setsid "$@" >"$WORK/$name.log" 2>&1 </dev/null &
    STARTED+=($!)
    eval "PID_${name//-/_}=$!"
}

# ready NAME PORT [CURL OPTIONS...]: waits up to 15 s for a 200 on the port.
ready() {
    local name=$1 port=$2 pidvar="PID_${1//-/_}"
    shift 2
    for _ in $(seq 150); do
        [ "$(curl "$@" -s -o /dev/null -w '%{http_code}' "http://$HOST:$port/" 2>/dev/null)" = 200 ] &&
            return 0
        kill -0 "${!pidvar}" 2>/dev/null || break
        sleep 0.1
    done
    tail -20 "$WORK/$name.log" >&2
    fail "$name did not answer 200 on port $port"
}

nginx_common() { # prefix directory
    echo "pid $1/nginx.pid; error_log $1/error.log warn;"
    echo "events { worker_connections 8192; }"
}
nginx_http_common() {
    echo "access_log off; keepalive_timeout 120s; keepalive_requests 100000000;"
    echo "client_body_temp_path $1; proxy_temp_path $1; fastcgi_temp_path $1; uwsgi_temp_path $1; scgi_temp_path $1;"
}

# Backends: nginx returning a fixed body.
body=$(head -c $((BODY_BYTES - 1)) /dev/zero | tr '\0' 'b')
backend_list=()
for ((i = 1; i <= BACKENDS; i++)); do
    port=$((BASE_PORT + i))
    dir="$WORK/backend$i"
    mkdir -p "$dir"
    {
        echo "daemon off; master_process off; worker_processes 1;"
        nginx_common "$dir"
        echo "http { $(nginx_http_common "$dir")"
        echo "  server { listen $HOST:$port$backend_listen; default_type text/plain; location / { return 200 \"$body\n\"; } } }"
    } >"$dir/nginx.conf"
    launch "backend$i" "${load_pin[@]}" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
    backend_list+=("$HOST:$port")
done
BACKEND_CSV=$(IFS=,; echo "${backend_list[*]}")

declare -A PORT=([direct]=$((BASE_PORT + 1)) [haproxy]=$((BASE_PORT + 20)) [nginx]=$((BASE_PORT + 21))
    [zoneward]=$((BASE_PORT + 22)) [baseline]=$((BASE_PORT + 23)))
default_targets="direct haproxy nginx zoneward"
[ "$PROTO" = h2h1 ] && default_targets="haproxy nginx zoneward"
[ -n "$BASELINE_BIN" ] && default_targets="$default_targets baseline"
read -ra targets <<<"${TARGETS:-$default_targets}"
wants() { [[ " ${targets[*]} " == *" $1 "* ]]; }

if wants haproxy; then
    {
        echo "global"
        echo "  nbthread $WORKERS"
        echo "  maxconn 4096"
        echo "defaults"
        echo "  mode http"
        echo "  option http-keep-alive"
        echo "  timeout connect 5s"
        echo "  timeout client 60s"
        echo "  timeout server 60s"
        echo "frontend bench"
        echo "  bind $HOST:${PORT[haproxy]}${h2_listen:+ proto h2}"
        if [ "$FORWARDING" = 1 ]; then
            echo "  http-request set-header X-Forwarded-For %[src]"
            echo "  http-request set-header X-Forwarded-Proto http"
            echo "  http-request set-header Forwarded \"for=%[src];proto=http\""
        fi
        echo "  default_backend backends"
        echo "backend backends"
        echo "  balance roundrobin"
        echo "  http-reuse always"
        for ((i = 0; i < BACKENDS; i++)); do echo "  server b$i ${backend_list[$i]}${backend_listen:+ proto h2}"; done
    } >"$WORK/haproxy.cfg"
    haproxy -c -q -f "$WORK/haproxy.cfg" || fail "haproxy refused its configuration"
    launch haproxy "${proxy_pin[@]}" haproxy -db -f "$WORK/haproxy.cfg"
fi

if wants nginx; then
    dir="$WORK/nginx-proxy"
    mkdir -p "$dir"
    {
        echo "daemon off; master_process on; worker_processes $WORKERS;"
        nginx_common "$dir"
        echo "http { $(nginx_http_common "$dir")"
        echo "  upstream backends {"
        for backend in "${backend_list[@]}"; do echo "    server $backend;"; done
        echo "    keepalive 256; keepalive_requests 100000000; }"
        echo "  server { listen $HOST:${PORT[nginx]}$h2_listen; location / {"
        if [ -n "$backend_listen" ]; then
            # nginx's HTTP/2 upstream is its gRPC proxy module: it relays any HTTP/2 request.
            [ "$FORWARDING" = 1 ] && echo "    grpc_set_header X-Forwarded-For \$remote_addr;" \
                "grpc_set_header X-Forwarded-Proto \$scheme;" \
                "grpc_set_header Forwarded \"for=\$remote_addr;proto=\$scheme\";"
            echo "    grpc_pass grpc://backends; } } }"
        else
            [ "$FORWARDING" = 1 ] && echo "    proxy_set_header X-Forwarded-For \$remote_addr;" \
                "proxy_set_header X-Forwarded-Proto \$scheme;" \
                "proxy_set_header Forwarded \"for=\$remote_addr;proto=\$scheme\";"
            echo "    proxy_pass http://backends; proxy_http_version 1.1; proxy_set_header Connection \"\"; } } }"
        fi
    } >"$dir/nginx.conf"
    launch nginx "${proxy_pin[@]}" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
fi

# zoneward_target NAME BINARY ADMIN_PORT
zoneward_target() {
    launch "$1" env ZONEWARD_RELEASE_BIN="$2" CANDIDATE_PORT="${PORT[$1]}" CANDIDATE_ADMIN_PORT="$3" \
        BACKENDS="$BACKEND_CSV" PROXY_WORKERS="$WORKERS" TMPDIR="$WORK" \
        UPSTREAM_PROTOCOL="$([ -n "$backend_listen" ] && echo http2 || echo http1)" \
        "${proxy_pin[@]}" bash "$ROOT/bench/proxy-candidate.sh"
}
wants zoneward && zoneward_target zoneward "$ZONEWARD_BIN" $((BASE_PORT + 30))
wants baseline && zoneward_target baseline "$BASELINE_BIN" $((BASE_PORT + 31))

for ((i = 1; i <= BACKENDS; i++)); do ready "backend$i" $((BASE_PORT + i)) "${backend_curl[@]}"; done
for target in "${targets[@]}"; do
    [ -n "${PORT[$target]:-}" ] || fail "unknown target $target"
    [ "$PROTO" = h2h1 ] && [ "$target" = direct ] && fail "PROTO=h2h1 has no direct run (HTTP/1.1 backends)"
    [ "$target" = direct ] || ready "$target" "${PORT[$target]}" "${h2_curl[@]}"
done

# load_run TARGET SECONDS OUTPUT: wrk (h1), or h2load with a per-request log in OUTPUT.log (h2).
load_run() {
    if [ "$PROTO" != h1 ]; then
        timeout -k 5 $(($2 + 30)) "${load_pin[@]}" h2load -t"$THREADS" -c"$CONNECTIONS" -m"$STREAMS" -D"$2" \
            --log-file="$3.log" "http://$HOST:${PORT[$1]}/" >"$3" 2>&1
    else
        timeout -k 5 $(($2 + 30)) "${load_pin[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$2s" --latency \
            "http://$HOST:${PORT[$1]}/" >"$3" 2>&1
    fi
}
# h2_percentile LOG P: the P-th percentile of h2load's per-request times (third column, microseconds), in ms.
h2_percentile() {
    awk '{ print $3 }' "$1" | sort -n | awk -v p="$2" '{ v[NR] = $1 } END {
        if (NR == 0) { print "nan"; exit }
        i = int(NR * p / 100 + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR
        print v[i] / 1000 }'
}
# group_pids NAME: the pids of NAME's process group (each target runs in its own: nginx's master and
# workers, the candidate's wrapper and proxy; "direct" is the first backend), space-separated.
group_pids() {
    local name=$1
    [ "$name" = direct ] && name=backend1
    local pidvar="PID_${name//-/_}"
    local group=${!pidvar} pids="" stat rest fields
    for stat in /proc/[0-9]*/stat; do
        { read -r rest <"$stat"; } 2>/dev/null || continue
        # After the command's closing parenthesis: state ppid pgrp …
        read -ra fields <<<"${rest##*) }"
        [ "${fields[2]:-}" = "$group" ] || continue
        stat=${stat%/stat}
        pids="${pids:+$pids }${stat#/proc/}"
    done
    echo "$pids"
}
# cpu_ticks NAME: what the processes of NAME's process group used so far: CPU time (user + system) and
# system time alone, in clock ticks, and their read and write system calls (/proc/PID/io's syscr + syscw:
# read, readv, write, writev…; not recv, send or epoll_wait).
cpu_ticks() {
    local total=0 system=0 calls=0 pid rest fields key value
    for pid in $(group_pids "$1"); do
        { read -r rest <"/proc/$pid/stat"; } 2>/dev/null || continue
        # After the command's closing parenthesis: state ppid pgrp … utime (12th) stime (13th).
        read -ra fields <<<"${rest##*) }"
        total=$((total + fields[11] + fields[12]))
        system=$((system + fields[12]))
        while read -r key value; do
            case "$key" in syscr: | syscw:) calls=$((calls + value)) ;; esac
        done 2>/dev/null <"/proc/$pid/io"
    done
    echo "$total $system $calls"
}
# The system calls SYSCALLS=1 counts: every one a proxy makes per request on these paths.
SYSCALL_NAMES="read readv recvfrom recvmsg write writev sendto sendmsg epoll_wait epoll_pwait epoll_ctl
    timerfd_settime eventfd2 futex accept4 close setsockopt getsockopt ioctl fcntl splice clock_gettime"
if [ "$SYSCALLS" = 1 ]; then
    command -v perf >/dev/null || fail "SYSCALLS=1 needs perf (Debian's linux-perf)"
    SYSCALL_EVENTS=raw_syscalls:sys_enter
    for name in $SYSCALL_NAMES; do SYSCALL_EVENTS+=",syscalls:sys_enter_$name"; done
    perf stat -e "$SYSCALL_EVENTS" true >/dev/null 2>&1 || fail "SYSCALLS=1: perf cannot read syscall tracepoints here"
fi
CLOCK_HZ=$(getconf CLK_TCK)
# per_request COUNT SCALE: COUNT × SCALE per completed request (done_requests), two decimals.
per_request() {
    awk -v t="$1" -v scale="$2" -v n="${done_requests:-0}" \
        'BEGIN { if (n > 0) printf "%.2f", t * scale / n; else print "nan" }'
}
# Latency as wrk prints it (850.00us, 1.20ms, 2.00s) in milliseconds.
milliseconds() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); print v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); print v + 0 }
        else if (v ~ /s$/) { sub(/s$/, "", v); print v * 1000 }
        else print "nan" }'
}

echo "# proxy-bench: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); $(haproxy -v | head -1 | cut -d' ' -f1-3); $(nginx -v 2>&1); FORWARDING=$FORWARDING"
load_tool="wrk -t$THREADS -c$CONNECTIONS"
[ "$PROTO" = h2 ] && load_tool="h2load -t$THREADS -c$CONNECTIONS -m$STREAMS (h2c)"
[ "$PROTO" = h2h1 ] && load_tool="h2load -t$THREADS -c$CONNECTIONS -m$STREAMS (h2c clients, HTTP/1.1 backends)"
echo "# ${DURATION}s x $ROUNDS rounds, $load_tool, body ${BODY_BYTES} B, $BACKENDS backends, $WORKERS proxy workers, pin: proxies ${PROXY_CPUS:-any}, wrk+backends ${LOAD_CPUS:-any}"
for target in "${targets[@]}"; do
    load_run "$target" "$WARMUP" "$WORK/warmup-$target.txt" || fail "warm-up of $target failed: $(tail -3 "$WORK/warmup-$target.txt")"
done
RESULTS="$WORK/results.csv"
: >"$RESULTS"
count=${#targets[@]}
for ((round = 0; round < ROUNDS; round++)); do
    for ((k = 0; k < count; k++)); do
        target=${targets[$(((k + round) % count))]}
        out="$WORK/run$round-$target.txt"
        read -r ticks_before sys_before calls_before <<<"$(cpu_ticks "$target")"
        if [ "$SYSCALLS" = 1 ]; then
            pids=$(group_pids "$target")
            [ -n "$pids" ] || fail "SYSCALLS=1: no processes found for $target"
            perf stat -x, -e "$SYSCALL_EVENTS" -p "${pids// /,}" -o "$out.perf" &
            PERF_PID=$!
            # Attached before the load starts (perf opens its events in well under this), so the calls
            # counted and the requests served cover the same time.
            sleep 0.5
        fi
        load_run "$target" "$DURATION" "$out" || fail "load against $target failed: $(tail -3 "$out")"
        if [ "$SYSCALLS" = 1 ]; then
            # SIGINT makes perf print its counts and exit; one sent before perf set its handler up would
            # be lost (a background job starts with SIGINT ignored), so it is sent until perf is gone, and
            # after 10 s perf is killed (that round then counts no calls).
            for _ in $(seq 100); do
                kill -INT "$PERF_PID" 2>/dev/null || break
                sleep 0.1
                kill -0 "$PERF_PID" 2>/dev/null || break
            done
            kill -KILL "$PERF_PID" 2>/dev/null
            wait "$PERF_PID" 2>/dev/null
        fi
        read -r ticks_after sys_after calls_after <<<"$(cpu_ticks "$target")"
        ticks=$((ticks_after - ticks_before))
        sys_ticks=$((sys_after - sys_before))
        calls=$((calls_after - calls_before))
        if [ "$PROTO" != h1 ]; then
            # "finished in 10.00s, 12345.60 req/s, …"; "requests: N total, N started, N done, N succeeded, N failed, N errored, …"
            rps=$(awk '/^finished in/ { print $4 }' "$out")
            p50=$(h2_percentile "$out.log" 50)
            p99=$(h2_percentile "$out.log" 99)
            errors=$(awk '/^requests:/ { gsub(/,/, ""); print $10 + $12 }' "$out")
            errors=$((${errors:-0} + $(awk '$2 != 200' "$out.log" | wc -l)))
            done_requests=$(awk '/^requests:/ { gsub(/,/, ""); print $8 }' "$out")
        else
            rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
            p50=$(milliseconds "$(awk '$1 == "50%" { print $2 }' "$out")")
            p99=$(milliseconds "$(awk '$1 == "99%" { print $2 }' "$out")")
            errors=$(awk '/Non-2xx/ { n += $NF } /Socket errors/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$out")
            done_requests=$(awk '/requests in/ { print $1 }' "$out")
        fi
        # The target's CPU time per request, in microseconds: what the run cost the proxy itself, which
        # CPU time stolen by other tenants does not inflate (requests/s it does).
        cpu=$(per_request "$ticks" "$((1000000 / CLOCK_HZ))")
        sys=$(per_request "$sys_ticks" "$((1000000 / CLOCK_HZ))")
        rw=$(per_request "$calls" 1)
        [ -n "$rps" ] || fail "no result from wrk against $target: $(cat "$out")"
        echo "$target,$rps,$p50,$p99,$errors,$cpu,$sys,$rw,$round" >>"$RESULTS"
        # "count,,event,…" per event: summed per target over the rounds, with the requests they served.
        [ "$SYSCALLS" = 1 ] && awk -F, -v t="$target" -v n="$done_requests" \
            '$3 ~ /^(raw_)?syscalls:sys_enter/ { e = $3; sub(/.*sys_enter_?/, "", e); if (e == "") e = "all"; print t "," e "," ($1 + 0) "," n }' \
            "$out.perf" >>"$WORK/syscalls.csv"
        printf '#   round %d  %-9s %10s req/s  p50 %7s ms  p99 %7s ms  cpu %6s us/req (sys %s)  rw %s/req  errors %s\n' \
            $((round + 1)) "$target" "$rps" "$p50" "$p99" "$cpu" "$sys" "$rw" "$errors"
        for pid in "${STARTED[@]}"; do kill -0 "$pid" 2>/dev/null || fail "a server (pid $pid) died during the run"; done
    done
done

awk -F, -v order="${targets[*]}" '
function median(list,   v, n, i, j, t) {
    n = split(list, v, " ")
    for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
{
    rps[$1] = rps[$1] " " $2; p50[$1] = p50[$1] " " $3; p99[$1] = p99[$1] " " $4; errors[$1] += $5
    cpu[$1] = cpu[$1] " " $6; sys[$1] = sys[$1] " " $7; rw[$1] = rw[$1] " " $8
}
END {
    n = split(order, names, " ")
    for (i = 1; i <= n; i++) {
        t = names[i]; R[t] = median(rps[t]); P50[t] = median(p50[t]); P99[t] = median(p99[t]); C[t] = median(cpu[t])
        S[t] = median(sys[t]); W[t] = median(rw[t])
    }
    printf "\n%-10s %10s %9s %9s %12s %12s %12s %7s %11s %12s %11s %7s\n", "target", "req/s", "p50 ms", "p99 ms",
        "rps/haproxy", "p99/haproxy", "rps/direct", "errors", "cpu us/req", "cpu/haproxy", "sys us/req", "rw/req"
    for (i = 1; i <= n; i++) {
        t = names[i]
        hr = ("haproxy" in R) ? sprintf("%.3f", R[t] / R["haproxy"]) : "-"
        hp = ("haproxy" in P99 && P99["haproxy"] > 0) ? sprintf("%.3f", P99[t] / P99["haproxy"]) : "-"
        dr = ("direct" in R) ? sprintf("%.3f", R[t] / R["direct"]) : "-"
        cr = ("haproxy" in C && C["haproxy"] > 0) ? sprintf("%.3f", C[t] / C["haproxy"]) : "-"
        printf "%-10s %10.0f %9.3f %9.3f %12s %12s %12s %7d %11.2f %12s %11.2f %7.2f\n", t, R[t], P50[t], P99[t], hr, hp,
            dr, errors[t], C[t], cr, S[t], W[t]
    }
}' "$RESULTS"

# Each target against HAProxy in the same round (a minute apart at most, so a slow spell on a shared machine
# weighs on both): the median of the per-round ratios, with a distribution-free 95% confidence interval for
# it (order statistics of the ratios: with n rounds, the k-th smallest and largest, k the largest for which
# P(Binomial(n, 1/2) < k) <= 2.5%; none below 6 rounds).
[ "$ROUNDS" -ge 2 ] && awk -F, -v order="${targets[*]}" '
function sort(v, n,   i, j, t) {
    for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
}
function median(v, n) { return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }
# The rank k of the interval: the largest k with P(X < k) <= 0.025, X ~ Binomial(n, 1/2); 0 when none.
function rank(n,   k, p, cumulative, term) {
    cumulative = 0; term = 0.5 ^ n; k = 0
    while (cumulative + term <= 0.025) { cumulative += term; k++; term = term * (n - k + 1) / k }
    return k
}
function interval(v, n,   k) {
    k = rank(n)
    return k > 0 ? sprintf("%.3f-%.3f", v[k], v[n + 1 - k]) : "-"
}
# A positive number, not "nan" (which awk takes for a number) or an empty field.
function usable(x) { return x ~ /^[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$/ && x + 0 > 0 }
function cell(v, n) { return n > 0 ? sprintf("%6.3f %-13s", median(v, n), interval(v, n)) : sprintf("%6s %-13s", "-", "") }
{ rps[$1, $9] = $2; p99[$1, $9] = $4; cpu[$1, $9] = $6; rounds[$9] = 1 }
END {
    n = split(order, names, " ")
    printf "\nper-round ratios to haproxy (median, 95%% interval of the median)\n"
    printf "%-10s %7s  %-20s %-20s %-20s\n", "target", "rounds", "req/s", "p99", "cpu/req"
    for (i = 1; i <= n; i++) {
        t = names[i]
        if (t == "haproxy") continue
        # A round whose figure did not parse ("nan", or none) is left out of that column only.
        ma = mb = mc = 0
        for (r in rounds) {
            if (!((t, r) in rps) || !(("haproxy", r) in rps)) continue
            if (usable(rps["haproxy", r]) && usable(rps[t, r])) a[++ma] = rps[t, r] / rps["haproxy", r]
            if (usable(p99["haproxy", r]) && usable(p99[t, r])) b[++mb] = p99[t, r] / p99["haproxy", r]
            if (usable(cpu["haproxy", r]) && usable(cpu[t, r])) c[++mc] = cpu[t, r] / cpu["haproxy", r]
        }
        if (ma == 0) continue
        sort(a, ma); sort(b, mb); sort(c, mc)
        printf "%-10s %7d  %6.3f %-13s %s %s\n", t, ma, median(a, ma), interval(a, ma), cell(b, mb), cell(c, mc)
    }
}' "$RESULTS"

if [ "$SYSCALLS" = 1 ] && [ -s "$WORK/syscalls.csv" ]; then
    # Per request, over every round: each counted call that any target made at least 0.01 times a request.
    awk -F, -v order="${targets[*]}" '
    { count[$1 "," $2] += $3; if (!seen[$1 "," $2]++) names[$2] = 1 }
    $2 == "all" { served[$1] += $4 }
    END {
        n = split(order, t, " ")
        printf "\nsystem calls per request (perf syscall tracepoints, all rounds)\n%-16s", "call"
        for (i = 1; i <= n; i++) printf " %10s", t[i]
        printf "\n"
        for (e in names) {
            keep = 0
            for (i = 1; i <= n; i++) if (served[t[i]] > 0 && count[t[i] "," e] / served[t[i]] >= 0.01) keep = 1
            if (!keep) continue
            printf "%-16s", e
            # (Parenthesised: a bare ">" in printf'\''s arguments is a redirection to awk.)
            for (i = 1; i <= n; i++) printf " %10s", (served[t[i]] > 0 ? sprintf("%.3f", count[t[i] "," e] / served[t[i]]) : "-")
            printf "\n"
        }
    }' "$WORK/syscalls.csv" | { read -r; echo "$REPLY"; read -r; echo "$REPLY"; read -r; echo "$REPLY"; sort -k1,1; }
fi
