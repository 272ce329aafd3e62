#!/bin/sh
# A fence/promote driver for the controller-HA drill: it keeps the highest controller term it has seen and
# refuses a call from an older one (a deposed leader), then logs one line per call it accepted:
#   wall_ms term epoch operation action controller
# and takes DRIVER_SLEEP seconds, so a kill lands mid-failover often. Its log is the audit's evidence.
set -eu
log=${HA_DRIVER_LOG:?}
exec 9>>"$log.lock"
flock 9
highest=$(cat "$log.term" 2>/dev/null || echo 0)
if [ "$ZONEWARD_TERM" -lt "$highest" ]; then
    echo "$(date +%s%3N) refused term $ZONEWARD_TERM < $highest $ZONEWARD_ACTION ${HA_CONTROLLER:-?}" >>"$log.refused"
    exit 1
fi
echo "$ZONEWARD_TERM" >"$log.term"
echo "$(date +%s%3N) $ZONEWARD_TERM $ZONEWARD_EPOCH $ZONEWARD_OPERATION $ZONEWARD_ACTION ${HA_CONTROLLER:-?}" >>"$log"
flock -u 9
sleep "${DRIVER_SLEEP:-0.8}"
