#!/usr/bin/env bash
# The kernel's cost of SwiftNIO's socket calls against HAProxy's: one loopback TCP connection, 64-byte
# messages bounced between its ends, and the CPU time of the four calls one proxied HTTP/1.1 exchange makes
# (a write and a read each way), with read(2)/write(2) (what SwiftNIO calls) and with recv(2)/send(2) (what
# HAProxy calls). PAIRS pairs of runs, pinned to CPU (0), each pair in the other order from the last (so a
# warm-up effect does not always land on the same side); it prints each pair and the median of the
# differences. The two reach the same TCP code; read and write first go through the VFS.
#
#   bash bench/syscall-cost.sh            # PAIRS [9], ROUNDTRIPS [200000], CPU [0]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PAIRS=${PAIRS:-9}
ROUNDTRIPS=${ROUNDTRIPS:-200000}
CPU=${CPU:-0}
command -v gcc >/dev/null || { echo "syscall-cost: needs gcc" >&2; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/syscall-cost.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
gcc -O2 -Wall -o "$WORK/pingpong" "$ROOT/bench/syscall-cost/pingpong.c"

echo "# syscall-cost: $PAIRS pairs of $ROUNDTRIPS round trips, CPU $CPU, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# CPU time of four calls (µs): read/write  recv/send  difference"
for ((pair = 1; pair <= PAIRS; pair++)); do
    if ((pair % 2)); then
        rw=$(taskset -c "$CPU" "$WORK/pingpong" rw "$ROUNDTRIPS")
        sr=$(taskset -c "$CPU" "$WORK/pingpong" sr "$ROUNDTRIPS")
    else
        sr=$(taskset -c "$CPU" "$WORK/pingpong" sr "$ROUNDTRIPS")
        rw=$(taskset -c "$CPU" "$WORK/pingpong" rw "$ROUNDTRIPS")
    fi
    awk -v rw="$rw" -v sr="$sr" 'BEGIN { printf "%12.3f %10.3f %11.3f\n", rw, sr, rw - sr }'
done | tee "$WORK/pairs.txt"
sort -n -k3,3 "$WORK/pairs.txt" | awk '{ d[NR] = $3; r[NR] = $1; s[NR] = $2 } END {
    m = NR % 2 ? d[(NR + 1) / 2] : (d[NR / 2] + d[NR / 2 + 1]) / 2
    printf "median difference: %.3f µs per exchange (read/write minus recv/send)\n", m }'
