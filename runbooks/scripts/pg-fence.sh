#!/usr/bin/env bash
# Fence driver: make sure the old primary ($ZONEWARD_FROM) accepts no more writes. Idempotent: a primary
# that is already down counts as fenced. A real deployment would also cut its network or revoke its
# credentials; the proxy's epoch already keeps Zoneward's traffic away from it.
set -uo pipefail
source "$(dirname "$0")/pg-common.sh"
data=$(pgdata_of "$ZONEWARD_FROM")
[ -n "$data" ] || { echo "no ZONEWARD_PGDATA_$ZONEWARD_FROM"; exit 1; }
if as_postgres "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_postgres "$PGBIN/pg_ctl" -D "$data" stop -m fast -w -t 10 || exit 1
fi
echo "fenced $ZONEWARD_FROM (epoch $ZONEWARD_EPOCH)"
