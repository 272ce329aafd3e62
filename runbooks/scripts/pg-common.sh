# Shared by the PostgreSQL drivers: the data directory of a region comes from ZONEWARD_PGDATA_<region>
# (dashes in the region name become underscores), and pg_ctl runs as the postgres user when we are root.
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
pgdata_of() {
    local variable="ZONEWARD_PGDATA_${1//-/_}"
    echo "${!variable:-}"
}
as_postgres() {
    # From /: the clone (the working directory) may be private to root, as a mktemp directory is.
    if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}
