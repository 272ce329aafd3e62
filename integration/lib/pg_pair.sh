# A real PostgreSQL pair on loopback, shared by the PostgreSQL scenarios: region ra runs a primary, region rb a
# synchronous streaming standby. Source it after common.sh; set PORT_A and PORT_B first. Sets PGBIN, A and B
# (the data directories), exports ZONEWARD_PGDATA_* and ZONEWARD_PGPORT_* for the runbook drivers, and stops
# both clusters (by pid) on exit.
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$PGBIN" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null 2>&1
    PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
fi
[ -x "$PGBIN/initdb" ] || { echo "PostgreSQL is not available"; exit 1; }
id postgres >/dev/null 2>&1 || { echo "no postgres user"; exit 1; }
as_postgres() { if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }
chmod 755 "$WORK"
A="$WORK/pg-a"
B="$WORK/pg-b"
mkdir -p "$WORK/sock" "$A" "$B" && chown postgres "$WORK/sock" "$A" "$B" && chmod 700 "$A" "$B"
export PGCONNECT_TIMEOUT=2
export ZONEWARD_PGDATA_ra="$A" ZONEWARD_PGDATA_rb="$B" ZONEWARD_PGPORT_ra=$PORT_A ZONEWARD_PGPORT_rb=$PORT_B
pg_pid() { head -1 "$1/postmaster.pid" 2>/dev/null; }
stop_pg() { # stop a cluster we started, by pid
    local pid
    pid=$(pg_pid "$1")
    [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null
}
trap 'stop_pg "$A"; stop_pg "$B"; cleanup' EXIT

# pg_pair_start: the primary in A (with an orders table), then B as its synchronous standby.
pg_pair_start() {
    as_postgres "$PGBIN/initdb" -D "$A" -A trust -U postgres >/dev/null
    cat >>"$A/postgresql.conf" <<CONF
port = $PORT_A
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK/sock'
wal_level = replica
max_wal_senders = 5
hot_standby = on
synchronous_commit = on
CONF
    as_postgres "$PGBIN/pg_ctl" -D "$A" -l "$WORK/sock/pg-a.log" -w start >/dev/null
    psql -h 127.0.0.1 -p "$PORT_A" -U postgres -qc \
        "CREATE TABLE orders (n integer PRIMARY KEY, at timestamptz DEFAULT now())"
    as_postgres "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PORT_A" -U postgres -D "$B" -R -X stream
    echo "port = $PORT_B" >>"$B/postgresql.conf"
    as_postgres "$PGBIN/pg_ctl" -D "$B" -l "$WORK/sock/pg-b.log" -w start >/dev/null
    # Synchronous once the standby is there: an acknowledged commit is on both.
    psql -h 127.0.0.1 -p "$PORT_A" -U postgres -qc "ALTER SYSTEM SET synchronous_standby_names = '*'" \
        -c "SELECT pg_reload_conf()" >/dev/null
    check "the standby streams from the primary" bash -c \
        "psql -h 127.0.0.1 -p $PORT_A -U postgres -Atc 'SELECT count(*) FROM pg_stat_replication' | grep -qx 1"
}
