#!/usr/bin/env bash
# Lag source: seconds the standby of $ZONEWARD_REGION is behind. 0 when it has replayed everything it
# received (or is not a standby); else the age of the last replayed transaction.
set -uo pipefail
port_variable="ZONEWARD_PGPORT_${ZONEWARD_REGION//-/_}"
port=${!port_variable:?no ZONEWARD_PGPORT_$ZONEWARD_REGION}
psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atq -v ON_ERROR_STOP=1 -c "
    SELECT CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END"
