#!/usr/bin/env bash
# Rejoin driver (for `zoneward drill switchover --rejoin-command`): make the old primary ($ZONEWARD_FROM) a
# streaming standby of the new one ($ZONEWARD_TO) again, so the switchover can go back. Re-seeds it with
# pg_basebackup (a real deployment might use pg_rewind); its own port is kept. Destroys the old primary's data
# directory: run it only after the switchover to $ZONEWARD_TO is done.
set -uo pipefail
source "$(dirname "$0")/pg-common.sh"
data=$(pgdata_of "$ZONEWARD_FROM")
[ -n "$data" ] || { echo "no ZONEWARD_PGDATA_$ZONEWARD_FROM"; exit 1; }
from_port_variable="ZONEWARD_PGPORT_${ZONEWARD_FROM//-/_}"
to_port_variable="ZONEWARD_PGPORT_${ZONEWARD_TO//-/_}"
from_port=${!from_port_variable:?no ZONEWARD_PGPORT_$ZONEWARD_FROM}
to_port=${!to_port_variable:?no ZONEWARD_PGPORT_$ZONEWARD_TO}
if as_postgres "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_postgres "$PGBIN/pg_ctl" -D "$data" stop -m fast -w -t 10 || exit 1
fi
as_postgres find "$data" -mindepth 1 -delete || exit 1
as_postgres "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$to_port" -U postgres -D "$data" -R -X stream || exit 1
echo "port = $from_port" | as_postgres tee -a "$data/postgresql.conf" >/dev/null
as_postgres "$PGBIN/pg_ctl" -D "$data" -l "$data/rejoin.log" -w start >/dev/null || exit 1
echo "rejoined $ZONEWARD_FROM as a standby of $ZONEWARD_TO"
