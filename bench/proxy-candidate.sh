#!/usr/bin/env bash
# The Zoneward candidate of a side-by-side proxy benchmark (a harness that runs wrk against HAProxy, nginx
# and a candidate started by CANDIDATE_CMD=bench/proxy-candidate.sh).
# Given CANDIDATE_PORT, BACKENDS (host:port,…) and PROXY_WORKERS, writes a one-zone configuration and
# execs the release-built `zoneward proxy` in the foreground. Build first: swift build -c release.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${ZONEWARD_RELEASE_BIN:-$ROOT/.build/release/zoneward}
[ -x "$BIN" ] || { echo "proxy-candidate: no release build at $BIN (swift build -c release)" >&2; exit 1; }
: "${CANDIDATE_PORT:?}" "${BACKENDS:?}"
CONFIG=$(mktemp "${TMPDIR:-/tmp}/zoneward-bench.XXXXXX.yaml")
{
    echo "zones: [{name: bench-a, region: bench}]"
    echo "services:"
    echo "  - name: bench"
    echo "    listen: 127.0.0.1:$CANDIDATE_PORT"
    echo "    upstreamProtocol: ${UPSTREAM_PROTOCOL:-http1}"
    echo "    healthCheck: {interval: 5s}"
    echo "    endpoints:"
    IFS=, read -ra backends <<<"$BACKENDS"
    for backend in "${backends[@]}"; do
        echo "      - {address: $backend, zone: bench-a}"
    done
    echo "admin: {listen: 127.0.0.1:${CANDIDATE_ADMIN_PORT:-19901}}"
} >"$CONFIG"
exec "$BIN" proxy --config "$CONFIG" --zone bench-a --workers "${PROXY_WORKERS:-$(nproc)}" --log-level warning
