# Shared helpers for the integration scenarios: the binary, a temp folder, checks, cleanup by pid.
# Source it from a scenario; it sets ZW (the zoneward binary), WORK (a temp folder) and counters.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SCRATCH=${ZONEWARD_SCRATCH:-$ROOT/.build}
ZW=${ZONEWARD_BIN:-$SCRATCH/debug/zoneward}
[ -x "$ZW" ] || { echo "no zoneward binary at $ZW: build first (swift build)" >&2; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/zoneward-it.XXXXXX")
PASSED=0
FAILED=0
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    [ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

pass() { PASSED=$((PASSED + 1)); echo "  ok   $*"; }
fail() { FAILED=$((FAILED + 1)); echo "  FAIL $*"; }

# check DESCRIPTION COMMAND...: passes when the command exits 0.
check() {
    local description=$1
    shift
    if "$@"; then pass "$description"; else fail "$description"; fi
}

# run_zw EXPECTED_EXIT DESCRIPTION ARGS...: runs zoneward, keeps stdout in $OUT and stderr in $ERR.
run_zw() {
    local expected=$1 description=$2
    shift 2
    OUT=$("$ZW" "$@" 2>"$WORK/stderr")
    local code=$?
    ERR=$(cat "$WORK/stderr")
    if [ "$code" = "$expected" ]; then
        pass "$description (exit $code)"
    else
        fail "$description: expected exit $expected, got $code; stdout: $OUT; stderr: $ERR"
    fi
}

contains() { [[ "$1" == *"$2"* ]] || { echo "    expected to find: $2" >&2; echo "    in: $1" >&2; return 1; }; }

# finish: the closing line every scenario prints, and its exit status.
finish() {
    echo "$(basename "$0" .sh): $PASSED passed, $FAILED failed"
    [ "$FAILED" = 0 ]
}
