#!/usr/bin/env bash
# Fuzzes the HTTP/1.1 framer (request heads, response heads, chunked bodies, pipelined connections) for N
# seconds (default 60), then the HTTP/2 listener (NIOHTTP2 configured as the proxy configures it, with the
# proxy's header relaying) for N/2 seconds, each with libFuzzer from a copy of its committed seed corpus,
# and prints executions per second and the corpus size. Exits non-zero when an input crashes or breaks a
# property; the input is kept in $SCRATCH/artifacts and shown as hex.
#   bash fuzz/run.sh [SECONDS]          # ZONEWARD_FUZZ_SECONDS works too; ZONEWARD_FUZZ_H2_SECONDS for HTTP/2
# ZONEWARD_FUZZ_SCRATCH names the build folder (default fuzz/.build); CI keeps it outside the clone.
# Needs Swift on Linux: its toolchain ships clang's libFuzzer runtime (-sanitize=fuzzer).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
SECONDS_TO_RUN=${1:-${ZONEWARD_FUZZ_SECONDS:-60}}
H2_SECONDS=${ZONEWARD_FUZZ_H2_SECONDS:-$(((SECONDS_TO_RUN + 1) / 2))}
SCRATCH=${ZONEWARD_FUZZ_SCRATCH:-$ROOT/fuzz/.build}
ARTIFACTS=$SCRATCH/artifacts
# Inputs that found new coverage are kept (minimised) in $SCRATCH/corpus/NAME for the next run on this
# machine, so CI digs deeper run after run; ZONEWARD_FUZZ_KEEP_CORPUS=0 starts from the seeds alone.
KEEP=${ZONEWARD_FUZZ_KEEP_CORPUS:-1}

echo "== build the fuzzers (release, -sanitize=fuzzer,address) into $SCRATCH"
started=$(date +%s)
swift build -c release --package-path fuzz --scratch-path "$SCRATCH" \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -g || exit 1
echo "built in $(($(date +%s) - started)) s"
# The HTTP/1.1 fuzzer's corpus was kept in $SCRATCH/corpus before there were two.
if [ -d "$SCRATCH/corpus" ] && [ ! -d "$SCRATCH/corpus/http-framing" ]; then
    mkdir -p "$SCRATCH/corpus.old" && mv "$SCRATCH/corpus"/* "$SCRATCH/corpus.old/" 2>/dev/null
    mkdir -p "$SCRATCH/corpus" && mv "$SCRATCH/corpus.old" "$SCRATCH/corpus/http-framing"
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# fuzz NAME BINARY SECONDS [libFuzzer options…]: one fuzzer from fuzz/corpus/NAME.
fuzz() {
    local name=$1 product=$2 seconds=$3
    shift 3
    local BIN=$SCRATCH/release/$product KEPT=$SCRATCH/corpus/$name
    local dir=$WORK/$name
    mkdir -p "$dir/corpus" "$ARTIFACTS"
    cp "$ROOT/fuzz/corpus/$name"/* "$dir/corpus/"
    local seeds kept=0 status
    seeds=$(ls "$dir/corpus" | wc -l)
    if [ "$KEEP" = 1 ] && [ -d "$KEPT" ]; then
        cp -n "$KEPT"/* "$dir/corpus/" 2>/dev/null
        kept=$(ls "$KEPT" | wc -l)
    fi

    echo "== fuzz $name for $seconds s from $seeds seeds and $kept inputs kept from earlier runs"
    # The Swift runtime's backtracer would trip AddressSanitizer in its own crash handler: let libFuzzer report.
    SWIFT_BACKTRACE=enable=no "$BIN" "$dir/corpus" -max_total_time="$seconds" -timeout=10 "$@" \
        -artifact_prefix="$ARTIFACTS/" -print_final_stats=1 >"$dir/fuzz.log" 2>&1
    status=$?

    grep -E '^#[0-9]+[[:space:]]+INITED' "$dir/fuzz.log" | tail -1
    local corpus runs rate files crash
    corpus=$(grep -E '^#[0-9]+[[:space:]]' "$dir/fuzz.log" | grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' | tail -1)
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$dir/fuzz.log" | grep -o '[0-9]*$')
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$dir/fuzz.log" | grep -o '[0-9]*$')
    files=$(ls "$dir/corpus" | wc -l)
    corpus=${corpus#corp: }
    echo "executions: ${runs:-?}, ${rate:-?}/s; corpus: ${corpus%%/*} inputs (${corpus#*/}), $files files (started from $seeds seeds + $kept kept)"

    if [ "$status" != 0 ]; then
        echo "fuzzer failed (exit $status):"
        grep -vE '^#[0-9]+[[:space:]]|^INFO:|^MS:|^base64:|^0x|^\s*$' "$dir/fuzz.log" | head -60
        crash=$(grep -o "Test unit written to .*" "$dir/fuzz.log" | tail -1 | sed 's/Test unit written to //')
        if [ -n "$crash" ] && [ -f "$crash" ]; then
            echo "input ($crash), selector byte first:"
            od -A d -c "$crash" | head -40
            echo "reproduce: SWIFT_BACKTRACE=enable=no $BIN $crash"
        fi
        return 1
    fi

    if [ "$KEEP" = 1 ]; then
        rm -rf "$KEPT.next"
        mkdir -p "$KEPT.next"
        if SWIFT_BACKTRACE=enable=no "$BIN" -merge=1 "$KEPT.next" "$dir/corpus" >"$dir/merge.log" 2>&1; then
            rm -rf "$KEPT"
            mv "$KEPT.next" "$KEPT"
            echo "kept $(ls "$KEPT" | wc -l) inputs in $KEPT for the next run"
        fi
    fi
}

status=0
fuzz http-framing HTTPFramingFuzz "$SECONDS_TO_RUN" -dict="$ROOT/fuzz/http.dict" || status=1
fuzz h2-framing H2FramingFuzz "$H2_SECONDS" || status=1
exit $status
