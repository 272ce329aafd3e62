#!/usr/bin/env bash
# Fuzzes the HTTP/1.1 framer (request heads, response heads, chunked bodies, pipelined connections) with
# libFuzzer for N seconds (default 60) from a copy of the committed seed corpus, then prints executions
# per second and the corpus size. Exits non-zero when an input crashes or breaks a property; the input is
# kept in $SCRATCH/artifacts and shown as hex.
#   bash fuzz/run.sh [SECONDS]          # ZONEWARD_FUZZ_SECONDS works too
# ZONEWARD_FUZZ_SCRATCH names the build folder (default fuzz/.build); CI keeps it outside the clone.
# Needs Swift on Linux: its toolchain ships clang's libFuzzer runtime (-sanitize=fuzzer).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
SECONDS_TO_RUN=${1:-${ZONEWARD_FUZZ_SECONDS:-60}}
SCRATCH=${ZONEWARD_FUZZ_SCRATCH:-$ROOT/fuzz/.build}
SEEDS=$ROOT/fuzz/corpus/http-framing
ARTIFACTS=$SCRATCH/artifacts
BIN=$SCRATCH/release/HTTPFramingFuzz
# Inputs that found new coverage are kept (minimised) in $SCRATCH/corpus for the next run on this
# machine, so CI digs deeper run after run; ZONEWARD_FUZZ_KEEP_CORPUS=0 starts from the seeds alone.
KEEP=${ZONEWARD_FUZZ_KEEP_CORPUS:-1}

echo "== build the fuzzer (release, -sanitize=fuzzer,address) into $SCRATCH"
started=$(date +%s)
swift build -c release --package-path fuzz --scratch-path "$SCRATCH" \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -g || exit 1
echo "built in $(($(date +%s) - started)) s"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/corpus" "$ARTIFACTS"
cp "$SEEDS"/* "$WORK/corpus/"
seeds=$(ls "$WORK/corpus" | wc -l)
kept=0
if [ "$KEEP" = 1 ] && [ -d "$SCRATCH/corpus" ]; then
    cp -n "$SCRATCH/corpus"/* "$WORK/corpus/" 2>/dev/null
    kept=$(ls "$SCRATCH/corpus" | wc -l)
fi

echo "== fuzz for $SECONDS_TO_RUN s from $seeds seeds and $kept inputs kept from earlier runs"
# The Swift runtime's backtracer would trip AddressSanitizer in its own crash handler: let libFuzzer report.
SWIFT_BACKTRACE=enable=no "$BIN" "$WORK/corpus" \
    -max_total_time="$SECONDS_TO_RUN" -timeout=10 -dict="$ROOT/fuzz/http.dict" \
    -artifact_prefix="$ARTIFACTS/" -print_final_stats=1 >"$WORK/fuzz.log" 2>&1
status=$?

grep -E '^#[0-9]+[[:space:]]+INITED' "$WORK/fuzz.log" | tail -1
corpus=$(grep -E '^#[0-9]+[[:space:]]' "$WORK/fuzz.log" | grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' | tail -1)
runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$WORK/fuzz.log" | grep -o '[0-9]*$')
rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$WORK/fuzz.log" | grep -o '[0-9]*$')
files=$(ls "$WORK/corpus" | wc -l)
corpus=${corpus#corp: }
echo "executions: ${runs:-?}, ${rate:-?}/s; corpus: ${corpus%%/*} inputs (${corpus#*/}), $files files (started from $seeds seeds + $kept kept)"

if [ "$status" != 0 ]; then
    echo "fuzzer failed (exit $status):"
    grep -vE '^#[0-9]+[[:space:]]|^INFO:|^MS:|^base64:|^0x|^\s*$' "$WORK/fuzz.log" | head -60
    crash=$(grep -o "Test unit written to .*" "$WORK/fuzz.log" | tail -1 | sed 's/Test unit written to //')
    if [ -n "$crash" ] && [ -f "$crash" ]; then
        echo "input ($crash), selector byte first:"
        od -A d -c "$crash" | head -40
        echo "reproduce: SWIFT_BACKTRACE=enable=no $BIN $crash"
    fi
    exit 1
fi

if [ "$KEEP" = 1 ]; then
    rm -rf "$SCRATCH/corpus.next"
    mkdir -p "$SCRATCH/corpus.next"
    if SWIFT_BACKTRACE=enable=no "$BIN" -merge=1 "$SCRATCH/corpus.next" "$WORK/corpus" >"$WORK/merge.log" 2>&1; then
        rm -rf "$SCRATCH/corpus"
        mv "$SCRATCH/corpus.next" "$SCRATCH/corpus"
        echo "kept $(ls "$SCRATCH/corpus" | wc -l) inputs in $SCRATCH/corpus for the next run"
    fi
fi
