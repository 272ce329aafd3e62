#!/usr/bin/env bash
# Backups end to end, the commands of runbooks/restore-from-backup.md: a SQLite database under concurrent
# writes backed up to a directory and to S3 (moto's server on loopback), listed, verified, restored;
# kill -9 mid-run leaves no entry and its partial object is cleaned by the next run; a corrupted object
# fails verification naming the chunk; a wrong key is refused with nothing written; S3 unreachable fails
# clearly and leaves the catalog unchanged; retention prunes. With the state database file deleted, its
# backup is listed and restored from the targets alone (S3 alone too); the controller's state is shipped
# to S3 and a directory, pruned to keep, and restored from S3 alone; a tampered copy is refused.
source "$(dirname "$0")/lib/common.sh"

if ! python3 -c "import moto.server, flask" 2>/dev/null; then
    echo "installing moto[server] from PyPI"
    pip install -q 'moto[server]' >/dev/null 2>&1
fi
BASE=${ZONEWARD_IT_PORT_BASE_BACKUP:-23500}
S3_PORT=$((BASE + 1))
moto_server -H 127.0.0.1 -p "$S3_PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
for i in $(seq 1 100); do curl -s "http://127.0.0.1:$S3_PORT/" >/dev/null && break; sleep 0.1; done
python3 - "$S3_PORT" <<'PY'
import boto3, sys
boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-west-2",
             aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(
    Bucket="zoneward-dr", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
PY

# An application database, written to while backups run.
python3 - "$WORK/app.db" <<'PY'
import sqlite3, sys, os
db = sqlite3.connect(sys.argv[1]); db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, payload BLOB)")
db.executemany("INSERT INTO events (payload) VALUES (?)", [(os.urandom(200),) for _ in range(50000)])
db.commit()
PY
openssl rand -base64 32 >"$WORK/backup.key"
chmod 600 "$WORK/backup.key"
mkdir -p "$WORK/files/sub" "$WORK/big"
head -c $((70 * 1024 * 1024)) /dev/urandom >"$WORK/big/blob"
for i in 1 2 3; do head -c 100000 /dev/urandom >"$WORK/files/f$i"; done
echo hello >"$WORK/files/sub/note.txt"
# A PostgreSQL database for the pg_dump source (started here on loopback, stopped by pid).
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
PG_PORT=$((BASE + 32))
as_postgres() { if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }
chmod 755 "$WORK"
mkdir -p "$WORK/pg" && chown postgres "$WORK/pg" && chmod 700 "$WORK/pg"
as_postgres "$PGBIN/initdb" -D "$WORK/pg/data" -A trust -U postgres >/dev/null
printf "port = $PG_PORT\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '$WORK/pg'\n" >>"$WORK/pg/data/postgresql.conf"
as_postgres "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w start >/dev/null
PG_PID=$(head -1 "$WORK/pg/data/postmaster.pid")
trap 'kill -QUIT "$PG_PID" 2>/dev/null; cleanup' EXIT
psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE TABLE orders AS SELECT g AS n FROM generate_series(1, 1000) g"
write_config() { # endpoint port
    cat >"$WORK/zoneward.yaml" <<YAML
zones: [{name: z1, region: r1}]
backups:
  - name: app
    source: {sqlite: $WORK/app.db}
    schedule: "17 * * * *"
    targets:
      - {filesystem: $WORK/backups}
      - {s3: {endpoint: "http://127.0.0.1:$1", bucket: zoneward-dr, region: us-west-2, prefix: zoneward}}
    encryption: {keyFile: $WORK/backup.key}
    retention: {keepLast: 2}
  - name: files
    source: {directory: $WORK/files}
    schedule: "0 3 * * *"
    targets: [{filesystem: $WORK/backups}]
    encryption: {keyFile: $WORK/backup.key}
  - name: big
    source: {directory: $WORK/big}
    schedule: "0 3 * * *"
    targets: [{s3: {endpoint: "http://127.0.0.1:$1", bucket: zoneward-dr, region: us-west-2, prefix: zoneward, partSizeMiB: 5}}]
    encryption: {keyFile: $WORK/backup.key}
    verify: always
  - name: pg
    source: {postgres: {host: 127.0.0.1, port: $PG_PORT, user: postgres, database: postgres}}
    schedule: "0 3 * * *"
    targets: [{filesystem: $WORK/backups}]
    encryption: {keyFile: $WORK/backup.key}
  - name: app-gzip
    source: {sqlite: $WORK/app.db}
    schedule: "17 * * * *"
    targets:
      - {filesystem: $WORK/backups}
      - {s3: {endpoint: "http://127.0.0.1:$1", bucket: zoneward-dr, region: us-west-2, prefix: zoneward}}
    encryption: {keyFile: $WORK/backup.key}
    compression: {codec: gzip, level: 6}
YAML
}
write_config "$S3_PORT"
export ZONEWARD_DB="$WORK/state.db"
# Staging directories (plaintext in flight) go under $TMPDIR: a folder of our own, to look into.
export TMPDIR="$WORK/tmp"
mkdir -p "$TMPDIR"
CONFIG=(--config "$WORK/zoneward.yaml")

python3 - "$WORK/app.db" "$WORK/stop-writer" <<'PY' &
import sqlite3, sys, os, time
db = sqlite3.connect(sys.argv[1], timeout=10)
start = time.time()
while not os.path.exists(sys.argv[2]) and time.time() - start < 60:
    db.execute("INSERT INTO events (payload) VALUES (?)", (os.urandom(200),)); db.commit()
PY
WRITER=$!

echo "backup: run, list, verify, restore"
run_zw 0 "backup run (concurrent writes going on)" backup run --job app "${CONFIG[@]}"
echo "  $OUT"
run_zw 0 "backup list --format json" backup list --format json "${CONFIG[@]}"
ID=$(echo "$OUT" | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['id'])")
echo "$OUT" >"$WORK/list.json"
check "the backup is completed with two copies, one in S3" python3 - "$WORK/list.json" <<'PY'
import json, sys
backup = json.load(open(sys.argv[1]))[0]
assert backup["state"] in ("completed", "verified"), backup
objects = json.loads(backup["objects"])
assert len(objects) == 2 and objects[1].startswith("s3://zoneward-dr/zoneward/app/"), objects
PY
run_zw 0 "backup verify --latest" backup verify --latest "${CONFIG[@]}"
check "verification checks integrity and row counts" contains "$OUT" "verified"
header_byte() { python3 -c "import sys; print(open(sys.argv[1], 'rb').read(26)[int(sys.argv[2])])" "$1" "$2"; }
check "the object is format 2 with zstd, the default (header: version 2, codec 2)" \
    [ "$(header_byte "$WORK/backups/app/$ID.zwb" 4)-$(header_byte "$WORK/backups/app/$ID.zwb" 25)" = 2-2 ]
check "its manifest says zstd level 1" grep -q '"compression" : "zstd level 1"' "$WORK/backups/app/$ID.json"
rm "$WORK/backups/app/$ID.zwb"
run_zw 0 "verify again from the S3 copy only" backup verify "$ID" "${CONFIG[@]}"
run_zw 0 "restore to a new file" backup restore "$ID" --to "$WORK/restored.db" "${CONFIG[@]}"
check "the restored database passes integrity_check" bash -c "python3 -c \"import sqlite3; assert sqlite3.connect('$WORK/restored.db').execute('PRAGMA integrity_check').fetchone()[0]=='ok'\""
run_zw 0 "a verified backup restores with --full-check too (integrity_check and row counts again)" \
    backup restore "$ID" --to "$WORK/restored-full.db" --full-check "${CONFIG[@]}"
run_zw 1 "restore never overwrites without --force" backup restore "$ID" --to "$WORK/restored.db" "${CONFIG[@]}"
check "the refusal says so" contains "$ERR" "pass --force"
touch "$WORK/restored.db-wal"
run_zw 0 "restore --force replaces it and removes stale -wal" backup restore "$ID" --to "$WORK/restored.db" --force "${CONFIG[@]}"
check "no stale -wal is left" [ ! -e "$WORK/restored.db-wal" ]

echo "backup: both compressions, and an object written before zstd"
run_zw 0 "a gzip backup (compression: {codec: gzip, level: 6}) to a directory and S3" backup run --job app-gzip "${CONFIG[@]}"
GZ_ID=$("$ZW" backup list --job app-gzip --format json "${CONFIG[@]}" | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['id'])")
check "its header says gzip (codec 1)" [ "$(header_byte "$WORK/backups/app-gzip/$GZ_ID.zwb" 25)" = 1 ]
check "its manifest says gzip level 6" grep -q '"compression" : "gzip level 6"' "$WORK/backups/app-gzip/$GZ_ID.json"
rm "$WORK/backups/app-gzip/$GZ_ID.zwb"
run_zw 0 "the gzip backup verifies from its S3 copy" backup verify "$GZ_ID" "${CONFIG[@]}"
run_zw 0 "and restores" backup restore "$GZ_ID" --to "$WORK/restored-gzip.db" "${CONFIG[@]}"
check "the gzip restore passes integrity_check" bash -c "python3 -c \"import sqlite3; assert sqlite3.connect('$WORK/restored-gzip.db').execute('PRAGMA integrity_check').fetchone()[0]=='ok'\""
sed -i "s#compression: {codec: gzip, level: 6}#compression: {codec: gzip, level: 12}#" "$WORK/zoneward.yaml"
run_zw 2 "a bad compression level is refused" backup list "${CONFIG[@]}"
check "naming the field and the range" contains "$ERR" "backups[4].compression.level: must be ≤ 9, got 12"
write_config "$S3_PORT"
# The fixture object `zoneward backup run` wrote before zstd (format 1, one gzip stream; see its README).
LEGACY="$ROOT/Tests/ZonewardBackupTests/Fixtures/legacy-gzip"
mkdir -p "$WORK/legacy-target"
cp -r "$LEGACY/legacy" "$WORK/legacy-target/"
cp "$LEGACY/backup.key" "$WORK/legacy.key"
chmod 600 "$WORK/legacy.key"
cat >"$WORK/legacy.yaml" <<YAML
zones: [{name: z1, region: r1}]
backups:
  - name: legacy
    source: {sqlite: $WORK/legacy-source.db}
    schedule: "17 * * * *"
    targets: [{filesystem: $WORK/legacy-target}]
    encryption: {keyFile: $WORK/legacy.key}
YAML
LEGACY_ID=$(basename "$(ls "$WORK"/legacy-target/legacy/*.zwb)" .zwb)
run_zw 0 "the pre-zstd object is listed from its target" backup list --from-target --job legacy --config "$WORK/legacy.yaml" --db "$WORK/legacy-state.db"
check "as $LEGACY_ID" contains "$OUT" "$LEGACY_ID"
run_zw 0 "and restores (integrity_check, row counts)" backup restore "$LEGACY_ID" --from-target --to "$WORK/legacy.db" --config "$WORK/legacy.yaml" --db "$WORK/legacy-state.db"
check "byte for byte what the old zoneward restored" \
    [ "$(sha256sum "$WORK/legacy.db" | cut -c1-64)" = "$(cut -c1-64 "$LEGACY/plaintext.sha256")" ]

echo "backup: directory and PostgreSQL sources"
run_zw 0 "a directory backup" backup run --job files "${CONFIG[@]}"
FILES_ID=$("$ZW" backup list --job files --format json "${CONFIG[@]}" | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['id'])")
run_zw 0 "the directory backup verifies (archive entries match the manifest)" backup verify "$FILES_ID" "${CONFIG[@]}"
run_zw 0 "it restores into a directory" backup restore "$FILES_ID" --to "$WORK/files-restored" "${CONFIG[@]}"
check "the directory holds the same files" diff -r "$WORK/files" "$WORK/files-restored"
run_zw 1 "a directory that is not empty is not written into without --force" \
    backup restore "$FILES_ID" --to "$WORK/files-restored" "${CONFIG[@]}"
check "the error says so" contains "$ERR" "is not empty"
run_zw 0 "with --archive it restores as a tar archive" backup restore "$FILES_ID" --archive --to "$WORK/files.tar" "${CONFIG[@]}"
check "the archive holds the files" bash -c "tar -xOf '$WORK/files.tar' ./sub/note.txt | grep -qx hello"
# A directory holding a link that points out of it: extracting could write outside --to through it.
ln -s /etc "$WORK/files/escape"
run_zw 0 "a directory with a link pointing outside backs up" backup run --job files "${CONFIG[@]}"
LINK_ID=$("$ZW" backup list --job files --format json "${CONFIG[@]}" | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['id'])")
run_zw 1 "its restore into a directory is refused" backup restore "$LINK_ID" --to "$WORK/files-link" "${CONFIG[@]}"
check "the error names the link and nothing was extracted" bash -c \
    "[[ \"\$1\" == *'symbolic link target \"/etc\"'* ]] && [ ! -e '$WORK/files-link/f1' ]" _ "$ERR"
run_zw 0 "the same backup restores with --archive" backup restore "$LINK_ID" --archive --to "$WORK/files-link.tar" "${CONFIG[@]}"
rm "$WORK/files/escape"
run_zw 0 "a pg_dump backup" backup run --job pg "${CONFIG[@]}"
PG_ID=$("$ZW" backup list --job pg --format json "${CONFIG[@]}" | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['id'])")
run_zw 0 "the pg_dump backup verifies (table of contents matches)" backup verify "$PG_ID" "${CONFIG[@]}"
run_zw 0 "and restores as a dump" backup restore "$PG_ID" --to "$WORK/pg.dump" "${CONFIG[@]}"
check "pg_restore reads the dump and finds the table" bash -c "pg_restore -l '$WORK/pg.dump' | grep -q 'TABLE public orders'"
sed "s#directory: $WORK/files#directory: $WORK/nope#" "$WORK/zoneward.yaml" >"$WORK/missing.yaml"
run_zw 1 "a missing source is a clear error" backup run --job files --config "$WORK/missing.yaml"
check "the error names the source" contains "$ERR" "$WORK/nope does not exist"

run_zw 0 "a 70 MiB object streams to S3 in 5 MiB parts (partSizeMiB: 5) and verifies from S3" backup run --job big "${CONFIG[@]}"
check "the run verified the S3-only backup" contains "$OUT" "verified"
BIG_ID=$("$ZW" backup list --job big --format json "${CONFIG[@]}" | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['id'])")
s3py() { # python code using `s3` (boto3 on moto at $S3_PORT unless S3PY_PORT says otherwise), then its arguments
    local code=$1
    shift
    python3 -c "
import boto3, sys
s3 = boto3.client('s3', endpoint_url='http://127.0.0.1:${S3PY_PORT:-$S3_PORT}', region_name='us-west-2',
                  aws_access_key_id='testing', aws_secret_access_key='testing')
$code" "$@"
}
check "the object was completed from 15 parts (its ETag ends -15: a little over 70 MiB in 5 MiB parts)" \
    s3py "assert s3.head_object(Bucket='zoneward-dr', Key=sys.argv[1])['ETag'].strip('\"').endswith('-15'), 'not 15 parts'" \
    "zoneward/big/$BIG_ID.zwb"
/usr/bin/time -f %M -o "$WORK/rss" "$ZW" backup verify "$BIG_ID" "${CONFIG[@]}" >/dev/null 2>&1
RSS_KIB=$(tail -1 "$WORK/rss")
check "verifying the 70 MiB S3-only backup streams it into the decoder (peak RSS ${RSS_KIB} KiB < 100 MiB)" [ "$RSS_KIB" -lt 102400 ]
check "and keeps no copy of the object on disk (no download file in the staging folder)" bash -c "! ls -d '$TMPDIR'/zoneward-staging-* 2>/dev/null"
run_zw 0 "the S3-only backup restores into a directory" backup restore "$BIG_ID" --to "$WORK/big-restored" "${CONFIG[@]}"
check "byte for byte" cmp "$WORK/big/blob" "$WORK/big-restored/blob"
check "no multipart upload is left open" s3py "assert not s3.list_multipart_uploads(Bucket='zoneward-dr').get('Uploads'), 'open'"
# Memory and time on S3 with a database larger than 256 MiB (random rows, so it does not compress): the
# parts stream from spool files and the object back as one GET, so RSS stays flat whatever the size.
python3 - "$WORK/huge.db" <<'PY'
import sqlite3, sys, os
db = sqlite3.connect(sys.argv[1])
db.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, payload BLOB)")
for _ in range(28):
    db.executemany("INSERT INTO blobs (payload) VALUES (?)", [(os.urandom(10000),) for _ in range(1000)])
db.commit()
PY
huge_config() { # key file
    cat <<YAML
zones: [{name: z1, region: r1}]
backups:
  - name: huge
    source: {sqlite: $WORK/huge.db}
    schedule: "17 * * * *"
    targets: [{s3: {endpoint: "http://127.0.0.1:$S3_PORT", bucket: zoneward-dr, region: us-west-2, prefix: zoneward}}]
    encryption: {keyFile: $1}
    verify: never
YAML
}
huge_config "$WORK/backup.key" >"$WORK/huge.yaml"
HUGE_MIB=$(($(stat -c %s "$WORK/huge.db") >> 20))
/usr/bin/time -f %M -o "$WORK/rss" "$ZW" backup run --job huge --config "$WORK/huge.yaml" >"$WORK/out" 2>&1
HUGE_CODE=$?
RSS_KIB=$(tail -1 "$WORK/rss")
check "a backup of a $HUGE_MIB MiB database (≥ 256) to S3 in 16 MiB parts succeeds (exit $HUGE_CODE)" \
    test "$HUGE_MIB" -ge 256 -a "$HUGE_CODE" = 0
# 97-105 MiB measured (debug build; 138 MiB before parts were spooled): the encoding pipeline's blocks fill up
# while S3 is slower than it, and malloc's per-thread arenas keep what they held; 115 MiB leaves that room.
check "and peaks at ${RSS_KIB} KiB RSS (≤ 115 MiB; debug build)" [ "$RSS_KIB" -le 117760 ]
HUGE_ID=$("$ZW" backup list --job huge --format json --config "$WORK/huge.yaml" | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['id'])")
/usr/bin/time -f %M -o "$WORK/rss" "$ZW" backup verify "$HUGE_ID" --config "$WORK/huge.yaml" >"$WORK/out" 2>&1
RSS_KIB=$(tail -1 "$WORK/rss")
check "its verify from S3 (one streamed GET) succeeds" grep -q verified "$WORK/out"
check "and peaks at ${RSS_KIB} KiB RSS (≤ 100 MiB; debug build)" [ "$RSS_KIB" -le 102400 ]
openssl rand -base64 32 >"$WORK/other.key"
chmod 600 "$WORK/other.key"
huge_config "$WORK/other.key" >"$WORK/huge-wrong.yaml"
START_NS=$(date +%s%N)
run_zw 1 "a restore from S3 with the wrong key fails" \
    backup restore "$HUGE_ID" --to "$WORK/huge-wrong.db" --config "$WORK/huge-wrong.yaml"
ELAPSED_MS=$((($(date +%s%N) - START_NS) / 1000000))
check "naming the key" contains "$ERR" "was encrypted with key"
check "promptly: the download in flight is cancelled (${ELAPSED_MS} ms < 5 s)" [ "$ELAPSED_MS" -lt 5000 ]
check "and nothing was written" [ ! -e "$WORK/huge-wrong.db" ]
rm -f "$WORK/huge.db"
# A second S3 that refuses parts under 10 MiB when the upload completes (EntityTooSmall): the parts were
# sent, the completion fails, and the run must abort the upload.
STRICT_PORT=$((BASE + 2))
S3_UPLOAD_PART_MIN_SIZE=$((10 << 20)) moto_server -H 127.0.0.1 -p "$STRICT_PORT" >"$WORK/moto-strict.log" 2>&1 &
PIDS+=($!)
for i in $(seq 1 100); do curl -s "http://127.0.0.1:$STRICT_PORT/" >/dev/null && break; sleep 0.1; done
S3PY_PORT=$STRICT_PORT s3py "s3.create_bucket(Bucket='zoneward-dr', CreateBucketConfiguration={'LocationConstraint': 'us-west-2'})"
sed "s#http://127.0.0.1:$S3_PORT\", bucket: zoneward-dr, region: us-west-2, prefix: zoneward, partSizeMiB: 5#http://127.0.0.1:$STRICT_PORT\", bucket: zoneward-dr, region: us-west-2, prefix: zoneward, partSizeMiB: 5#" \
    "$WORK/zoneward.yaml" >"$WORK/strict.yaml"
run_zw 1 "a multipart upload that S3 refuses to complete fails the run" backup run --job big --config "$WORK/strict.yaml"
check "the error names the refusal" contains "$ERR" "EntityTooSmall"
nothing_open() { s3py "assert not s3.list_multipart_uploads(Bucket='zoneward-dr').get('Uploads'), 'open uploads'"; }
nothing_stored() { s3py "assert not s3.list_objects_v2(Bucket='zoneward-dr').get('Contents'), 'objects left'"; }
S3PY_PORT=$STRICT_PORT
check "the failed upload was aborted: none is open" nothing_open
check "and no object is left" nothing_stored
unset S3PY_PORT
# SIGTERM while parts are uploading: the signal handler aborts the upload before the process exits.
"$ZW" backup run --job big "${CONFIG[@]}" >/dev/null 2>&1 &
RUN=$!
s3py "
import time
for _ in range(600):
    if s3.list_multipart_uploads(Bucket='zoneward-dr').get('Uploads'): break
    time.sleep(0.05)
"
kill -TERM "$RUN"
wait "$RUN"
TERM_CODE=$?
check "SIGTERM mid-upload exits 143 (got $TERM_CODE)" [ "$TERM_CODE" = 143 ]
check "and aborted the multipart upload on its way out" nothing_open
check "and left no object without its manifest" s3py "
keys = {o['Key'] for o in s3.list_objects_v2(Bucket='zoneward-dr').get('Contents', [])}
bare = [k for k in keys if k.endswith('.zwb') and k[:-4] + '.json' not in keys]
assert not bare, bare"

echo "backup: child processes and keys"
# A server that accepts connections and never answers: pg_dump would wait forever.
python3 -c "
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $((BASE + 33)))); s.listen(8); held = []
while True: held.append(s.accept()); time.sleep(0.1)
" &
PIDS+=($!)
for i in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$((BASE + 33))") 2>/dev/null && break; sleep 0.1; done
sed -e "s#port: $PG_PORT, user#port: $((BASE + 33)), user#" -e 's#^  - name: pg$#  - name: pg\n    timeout: 2s#' \
    "$WORK/zoneward.yaml" >"$WORK/hang.yaml"
run_zw 1 "a pg_dump that hangs is stopped at the job's timeout" backup run --job pg --config "$WORK/hang.yaml"
check "the error names pg_dump and the timeout" contains "$ERR" "pg_dump did not finish within 2s and was stopped"
check "no staging directory is left" bash -c "! ls -d '$TMPDIR'/zoneward-staging-* 2>/dev/null"
chmod 644 "$WORK/backup.key"
run_zw 2 "a key file others can read is refused" backup run --job files "${CONFIG[@]}"
check "the error names the file and its mode" contains "$ERR" "the key file $WORK/backup.key has mode 644"
chmod 600 "$WORK/backup.key"

echo "backup: faults"
"$ZW" backup run --job app "${CONFIG[@]}" >/dev/null 2>&1 &
RUN=$!
for i in $(seq 1 500); do [ -e "$(ls -d "$TMPDIR"/zoneward-staging-backup-*/snapshot 2>/dev/null | head -1)" ] && break; sleep 0.01; done
kill -9 "$RUN" 2>/dev/null
wait "$RUN" 2>/dev/null
check "the killed run left its private staging directory (mode 700)" bash -c \
    "stat -c %a '$TMPDIR'/zoneward-staging-backup-* | grep -qx 700"
COUNT_COMPLETED=$(sqlite3_count() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT COUNT(*) FROM backup WHERE job='app' AND state IN ('completed','verified')\").fetchone()[0])" "$ZONEWARD_DB"; }; sqlite3_count)
check "kill -9 mid-run leaves no completed entry (completed: $COUNT_COMPLETED)" [ "$COUNT_COMPLETED" = 1 ]
python3 - "$ZONEWARD_DB" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE backup SET heartbeatAt = datetime('now', '-5 minutes') WHERE state = 'running'"); db.commit()
PY
run_zw 0 "the next run succeeds (the dead run is orphaned, its partial object removed)" backup run --job app "${CONFIG[@]}"
check "no partial object is left" bash -c "! ls $WORK/backups/app/*.partial 2>/dev/null"
check "the killed run's staging directory was removed at the next start" bash -c "! ls -d '$TMPDIR'/zoneward-staging-* 2>/dev/null"
"$ZW" backup run --job big "${CONFIG[@]}" >/dev/null 2>&1 &
RUN=$!
for i in $(seq 1 500); do [ -e "$(ls -d "$TMPDIR"/zoneward-staging-backup-*/snapshot 2>/dev/null | head -1)" ] && break; sleep 0.01; done
kill -TERM "$RUN"
wait "$RUN"
TERM_CODE=$?
check "SIGTERM mid-run exits 143 (got $TERM_CODE)" [ "$TERM_CODE" = 143 ]
check "and removes the staging directory on the way out" bash -c "! ls -d '$TMPDIR'/zoneward-staging-* 2>/dev/null"
check "the dead runs (this one, and the one stopped mid-upload) are marked failed (orphaned)" python3 -c "
import sqlite3,sys; r=sqlite3.connect(sys.argv[1]).execute(\"SELECT COUNT(*) FROM backup WHERE state='failed' AND error LIKE 'orphaned%'\").fetchone()[0]; sys.exit(0 if r in (0,1,2) else 1)" "$ZONEWARD_DB"
LATEST=$("$ZW" backup list --job app --format json "${CONFIG[@]}" | python3 -c "import json,sys; print([b for b in json.load(sys.stdin) if b['state']=='completed'][0]['id'])")
python3 - "$WORK/backups/app/$LATEST.zwb" <<'PY'
import sys
path = sys.argv[1]; data = bytearray(open(path, "rb").read()); data[len(data) // 2] ^= 0x01; open(path, "wb").write(data)
PY
run_zw 1 "a flipped byte fails verification" backup verify "$LATEST" "${CONFIG[@]}"
check "the error names the chunk" contains "$ERR" "chunk"
openssl rand -base64 32 >"$WORK/backup.key"
chmod 600 "$WORK/backup.key"
run_zw 1 "a wrong key is refused" backup restore "$ID" --to "$WORK/wrong.db" "${CONFIG[@]}"
check "the error says which key" contains "$ERR" "was encrypted with key"
check "nothing was written with the wrong key" [ ! -e "$WORK/wrong.db" ]
BEFORE=$("$ZW" backup list --format json "${CONFIG[@]}" | python3 -c "import json,sys; print(len(json.load(sys.stdin)))")
write_config $((BASE + 99))
run_zw 1 "S3 unreachable: retries, then a clear failure" backup run --job app "${CONFIG[@]}"
# A single PUT, or the POST that starts a multipart upload (objects above 16 MiB).
check "the failure names S3" bash -c '[[ "$1" == *"S3 PUT"* || "$1" == *"S3 POST"* ]]' _ "$ERR"
COMPLETED_AFTER=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT COUNT(*) FROM backup WHERE job='app' AND state IN ('completed','verified')\").fetchone()[0])" "$ZONEWARD_DB")
check "no completed entry was added" [ "$COMPLETED_AFTER" = 2 ]
write_config "$S3_PORT"
touch "$WORK/stop-writer"
wait "$WRITER"

run_zw 0 "backup status: the last verified backups are fresh" backup status "${CONFIG[@]}"
check "status says fresh" contains "$OUT" "app: fresh"

echo "backup: retention"
run_zw 0 "prune --dry-run lists what would go and why" backup prune --dry-run --job app "${CONFIG[@]}"
echo "$OUT" | sed 's/^/    /'
check "the newest verified backup is kept" contains "$OUT" "newest verified"

echo "backup: the targets alone (the state database file lost)"
state_config() { # file, then the targets' YAML lines
    local file=$1
    shift
    {
        printf 'zones: [{name: z1, region: r1}]\ncontroller:\n  ha:\n    kubernetes: {}\n    state: {job: state, keep: 3}\n'
        printf 'backups:\n  - name: state\n    source: {sqlite: %s}\n    schedule: "17 * * * *"\n' "$ZONEWARD_DB"
        printf '    encryption: {keyFile: %s}\n    targets:\n' "$WORK/backup.key"
        printf '      - %s\n' "$@"
    } >"$file"
}
S3_TARGET="{s3: {endpoint: \"http://127.0.0.1:$S3_PORT\", bucket: zoneward-dr, region: us-west-2, prefix: zoneward}}"
state_config "$WORK/state.yaml" "{filesystem: $WORK/backups}" "$S3_TARGET"
state_config "$WORK/state-s3.yaml" "$S3_TARGET"
STATE=(--config "$WORK/state.yaml")
STATE_S3=(--config "$WORK/state-s3.yaml")
count_backups() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM backup').fetchone()[0])" "$1"; }
run_zw 0 "a backup of the state database itself (a directory and S3)" backup run --job state "${STATE[@]}"
STATE_ID=$(echo "$OUT" | head -1 | cut -d: -f1)
CATALOG_BEFORE=$(count_backups "$ZONEWARD_DB")
rm -f "$ZONEWARD_DB" "$ZONEWARD_DB-wal" "$ZONEWARD_DB-shm"
run_zw 0 "with the database file gone, backup list reads the manifests on the targets" \
    backup list --job state --format json "${STATE[@]}"
check "it finds the backup ($STATE_ID)" contains "$OUT" "\"id\" : \"$STATE_ID\""
check "and says it listed the targets" contains "$ERR" "does not exist: listing the targets"
check "listing did not create the database file" [ ! -e "$ZONEWARD_DB" ]
run_zw 0 "backup restore --latest --job state from the targets alone" \
    backup restore --latest --job state --to "$ZONEWARD_DB" "${STATE[@]}"
check "the restored catalog holds the backups it had ($CATALOG_BEFORE)" \
    [ "$(count_backups "$ZONEWARD_DB")" = "$CATALOG_BEFORE" ]
run_zw 0 "backup list --from-target lists the targets even with a catalog" \
    backup list --from-target --job state "${STATE[@]}"
check "with the object's locations (directory and S3)" \
    contains "$OUT" "s3://zoneward-dr/zoneward/state/$STATE_ID.zwb"
run_zw 0 "restore by id from S3 alone (ListObjectsV2, no directory target)" \
    backup restore "$STATE_ID" --from-target --to "$WORK/state-from-s3.db" "${STATE_S3[@]}"
check "the copy from S3 passes integrity_check and has the catalog" \
    [ "$(count_backups "$WORK/state-from-s3.db")" = "$CATALOG_BEFORE" ]
run_zw 1 "an id on no target is a clear failure" backup restore state-nope --to "$WORK/nope.db" "${STATE[@]}"
check "the error says where it looked" contains "$ERR" "no such backup in the catalog or on the targets"
check "and nothing was written" [ ! -e "$WORK/nope.db" ]

echo "backup: shipped controller state (S3 on moto and a directory)"
for i in 1 2 3 4; do
    run_zw 0 "ship-state #$i (term 1)" backup ship-state --term 1 --db "$ZONEWARD_DB" "${STATE[@]}"
    echo "    $OUT"
done
run_zw 0 "ship-state in term 2 (a new leader)" backup ship-state --term 2 --db "$ZONEWARD_DB" "${STATE[@]}"
echo "    $OUT"
NEWEST=t00000000000000000002-s000000000000.zwb
run_zw 0 "backup list --state, from S3 alone" backup list --state --format json "${STATE_S3[@]}"
check "S3 keeps 3 copies (keep: 3), newest first, term 2 before term 1" python3 -c "
import json, sys
names = [c['name'] for c in json.loads(sys.argv[1])]
assert names == ['$NEWEST', 't00000000000000000001-s000000000003.zwb', 't00000000000000000001-s000000000002.zwb'], names
" "$OUT"
check "the directory keeps 3 copies with their manifests" \
    [ "$(ls "$WORK/backups/state/state" | grep -c '\.zwb$')-$(ls "$WORK/backups/state/state" | grep -c '\.json$')" = 3-3 ]
run_zw 0 "backup restore --state from S3 alone" backup restore --state --to "$WORK/state-shipped.db" "${STATE_S3[@]}"
check "it restored the newest copy" contains "$OUT" "$NEWEST"
check "the restored state equals the live database, table by table" python3 -c "
import sqlite3, sys
def rows(path):
    db = sqlite3.connect(path)
    tables = [r[0] for r in db.execute(\"SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name\")]
    return {t: db.execute(f'SELECT * FROM \"{t}\" ORDER BY 1').fetchall() for t in tables}
assert rows(sys.argv[1]) == rows(sys.argv[2])
" "$ZONEWARD_DB" "$WORK/state-shipped.db"
python3 - "$S3_PORT" "zoneward/state/state/$NEWEST" <<'PY'
import boto3, sys
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-west-2",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
data = bytearray(s3.get_object(Bucket="zoneward-dr", Key=sys.argv[2])["Body"].read())
data[len(data) // 2] ^= 0x01
s3.put_object(Bucket="zoneward-dr", Key=sys.argv[2], Body=bytes(data))
PY
run_zw 1 "a tampered copy on S3 is refused" backup restore --state --to "$WORK/state-tampered.db" "${STATE_S3[@]}"
check "the error says so and that nothing changed" contains "$ERR" "could not be restored from any target"
check "nothing was written" [ ! -e "$WORK/state-tampered.db" ]
run_zw 0 "with the directory target too, the good copy there is used" \
    backup restore --state --to "$WORK/state-tampered.db" "${STATE[@]}"
check "no staging directory is left" bash -c "! ls -d '$TMPDIR'/zoneward-staging-* 2>/dev/null"
for i in 1 2; do
    run_zw 0 "a ship to S3 alone (moto), for its time" backup ship-state --term 3 --db "$ZONEWARD_DB" "${STATE_S3[@]}"
    echo "    $OUT ($(stat -c %s "$ZONEWARD_DB") bytes of SQLite)"
done
finish
