#!/usr/bin/env bash
# Runs every test: builds once (debug), runs the unit tests, then each integration scenario.
# ZONEWARD_SCRATCH names the build folder (default .build); CI keeps it outside the clone.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
SCRATCH=${ZONEWARD_SCRATCH:-$ROOT/.build}
export ZONEWARD_SCRATCH=$SCRATCH

echo "== build (debug) into $SCRATCH"
swift build --scratch-path "$SCRATCH" --build-tests || exit 1

echo "== unit tests"
swift test --skip-build --scratch-path "$SCRATCH" 2>&1 | tee "$SCRATCH/unit-tests.log"
unit=${PIPESTATUS[0]}

passed=0
failed=0
for scenario in integration/*.sh; do
    [ "$scenario" = integration/run-tests.sh ] && continue
    echo "== $scenario"
    if bash "$scenario"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
[ "$unit" = 0 ] || echo "unit tests failed (exit $unit)"
echo "integration: $passed passed, $failed failed"
[ "$unit" = 0 ] && [ "$failed" = 0 ]
