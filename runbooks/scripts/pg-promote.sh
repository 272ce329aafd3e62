#!/usr/bin/env bash
# Promote driver: make the standby of $ZONEWARD_TO the primary. Idempotent: a server no longer in
# recovery is already promoted.
set -uo pipefail
source "$(dirname "$0")/pg-common.sh"
data=$(pgdata_of "$ZONEWARD_TO")
[ -n "$data" ] || { echo "no ZONEWARD_PGDATA_$ZONEWARD_TO"; exit 1; }
if [ -f "$data/standby.signal" ]; then
    as_postgres "$PGBIN/pg_ctl" -D "$data" promote -w -t 30 || exit 1
fi
echo "promoted $ZONEWARD_TO (epoch $ZONEWARD_EPOCH)"
