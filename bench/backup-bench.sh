#!/usr/bin/env bash
# Backup throughput and memory on a generated SQLite database (1 GiB by default), side by side in one run:
#   zoneward backup run           (online backup API → gzip → AES-256-GCM chunks → SHA-256 → directory)
#   sqlite3 DB ".backup X" && gzip -c X | openssl enc -aes-256-ctr -pbkdf2 -pass file:KEY > Y
# then `zoneward backup restore` of the same backup. Needs a release build: swift build -c release.
#   bash bench/backup-bench.sh            SIZE_MIB=256 bash bench/backup-bench.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${ZONEWARD_RELEASE_BIN:-$ROOT/.build/release/zoneward}
[ -x "$BIN" ] || { echo "no release build at $BIN (swift build -c release)" >&2; exit 1; }
for tool in sqlite3 gzip openssl /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install sqlite3 time)" >&2; exit 1; }
done
SIZE_MIB=${SIZE_MIB:-1024}
WORK=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/var/tmp}/zoneward-backup-bench.XXXXXX")}
trap '[ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
DB="$WORK/bench.db"
echo "generating a ${SIZE_MIB} MiB SQLite database (mixed compressible and random rows)"
python3 - "$DB" "$SIZE_MIB" <<'PY'
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, kind TEXT, body BLOB)")
target = int(sys.argv[2]) << 20
row = 0
while os.path.getsize(sys.argv[1]) < target:
    db.executemany("INSERT INTO events (kind, body) VALUES (?, ?)",
                   [(f"kind-{i % 17}", (b"zoneward " * 40) + os.urandom(600)) for i in range(20000)])
    db.commit()
    row += 20000
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
print(f"{row} rows, {os.path.getsize(sys.argv[1]) >> 20} MiB")
PY
openssl rand -base64 32 >"$WORK/backup.key"
cat >"$WORK/zoneward.yaml" <<YAML
zones: [{name: z1, region: r1}]
backups:
  - name: bench
    source: {sqlite: $DB}
    schedule: "17 * * * *"
    targets: [{filesystem: $WORK/backups}]
    encryption: {keyFile: $WORK/backup.key}
    verify: never
YAML
measure() { # label command...
    local label=$1
    shift
    sync
    /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" >/dev/null
    read -r seconds kib <"$WORK/time.txt"
    printf "%-22s %8.2f s %8.1f MiB/s %8.1f MiB peak RSS\n" "$label" "$seconds" \
        "$(echo "$SIZE_MIB / $seconds" | bc -l)" "$(echo "$kib / 1024" | bc -l)"
    echo "$seconds" >"$WORK/$label.seconds"
}
echo
printf "%-22s %10s %14s %18s\n" target wall throughput "peak RSS"
measure zoneward-backup "$BIN" backup run --config "$WORK/zoneward.yaml" --db "$WORK/state.db"
measure sqlite3+gzip+openssl bash -c "sqlite3 '$DB' '.backup $WORK/copy.db' && gzip -c '$WORK/copy.db' | openssl enc -aes-256-ctr -pbkdf2 -pass file:'$WORK/backup.key' > '$WORK/copy.enc'"
ID=$("$BIN" backup list --format json --config "$WORK/zoneward.yaml" --db "$WORK/state.db" | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['id'])")
measure zoneward-restore "$BIN" backup restore "$ID" --to "$WORK/restored.db" --config "$WORK/zoneward.yaml" --db "$WORK/state.db"
echo
echo "zoneward/pipeline throughput ratio: $(echo "$(cat "$WORK/sqlite3+gzip+openssl.seconds") / $(cat "$WORK/zoneward-backup.seconds")" | bc -l | cut -c1-5)"
