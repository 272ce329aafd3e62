#!/usr/bin/env bash
# Probe (for `zoneward drill switchover --probe-command`): one writable transaction through HOST PORT (the
# service's proxy listener). Exit 0 when it succeeds and, if $ZONEWARD_REGION is set, the server that answered
# is that region's (its port is ZONEWARD_PGPORT_<region>); else 1.
set -uo pipefail
host=${1:?usage: pg-probe.sh HOST PORT}
port=${2:?usage: pg-probe.sh HOST PORT}
# txid_current() fails on a standby: only a writable primary answers.
served=$(PGCONNECT_TIMEOUT=1 psql -h "$host" -p "$port" -U postgres -d postgres -Atq -v ON_ERROR_STOP=1 \
    -c "SELECT inet_server_port() FROM (SELECT txid_current()) AS t" 2>/dev/null) || exit 1
[ -z "${ZONEWARD_REGION:-}" ] && exit 0
want_variable="ZONEWARD_PGPORT_${ZONEWARD_REGION//-/_}"
[ "$served" = "${!want_variable:-}" ]
