#!/usr/bin/env bash
# Backup and restore, Zoneward against the best shell pipelines, side by side in one run on the same
# SQLite database, for two data shapes (SHAPES="random text"):
#   random  rows of mostly random bytes (a database of blobs, hashes, ciphertext: barely compressible)
#   text    rows of JSON-like text (an application's documents and logs: compressible)
# For each shape:
#   zoneward backup run  (zstd)   vs  sqlite3 .backup X && zstd -1 -T0 -c X | openssl enc -aes-256-cbc -pbkdf2
#   zoneward backup run  (gzip)   vs  sqlite3 .backup X && pigz -1 -c X     | openssl enc -aes-256-cbc -pbkdf2
#   zoneward backup restore (zstd)  vs  openssl enc -d … | zstd -d -T0 > Y
#   zoneward backup restore (gzip)  vs  openssl enc -d … | pigz -d > Y
# printing wall time, throughput (of the database's size), output size and peak RSS (GNU time's maximum
# resident set: for a pipeline, its largest process). Zoneward does more than the pipelines: it hashes the
# object (SHA-256) and checks the size written before it counts, counts rows for the
# manifest, and a restore of a backup not yet verified runs PRAGMA integrity_check and compares row
# counts; the `+check` line adds that integrity_check to the pipeline's restore, for a like-for-like figure.
# The `-verified` lines restore the same backups once `zoneward backup verify` passed them (not timed): the
# restore then checks the SHA-256 only (the content checks already passed on those bytes), like for like
# with the bare pipelines.
# Needs a release build, sqlite3, zstd, pigz, openssl, GNU time; not run in CI.
#   swift build -c release
#   bash bench/backup-bench.sh                        SIZE_MIB=128 SHAPES=text bash bench/backup-bench.sh
#   ZONEWARD_RELEASE_BIN=/var/tmp/build/release/zoneward bash bench/backup-bench.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${ZONEWARD_RELEASE_BIN:-$ROOT/.build/release/zoneward}
[ -x "$BIN" ] || { echo "no release build at $BIN (swift build -c release)" >&2; exit 1; }
for tool in sqlite3 zstd pigz openssl python3 bc /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install sqlite3 zstd pigz time bc)" >&2; exit 1; }
done
SIZE_MIB=${SIZE_MIB:-512}
SHAPES=${SHAPES:-random text}
WORK=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/var/tmp}/zoneward-backup-bench.XXXXXX")}
trap '[ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
openssl rand -base64 32 >"$WORK/backup.key"
chmod 600 "$WORK/backup.key"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) (other builds may share it)"

generate() { # shape path
    python3 - "$1" "$2" "$SIZE_MIB" <<'PY'
import json, os, random, sqlite3, sys
shape, path, target = sys.argv[1], sys.argv[2], int(sys.argv[3]) << 20
db = sqlite3.connect(path)
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, kind TEXT, body BLOB)")
rng = random.Random(12)
words = ["zone", "proxy", "failover", "drain", "region", "backup", "lease", "epoch", "upstream", "health",
         "latency", "request", "ok", "error", "timeout", "us-west-2a", "eu-central-1b", "GET", "POST", "/api/v1"]
def text_row(i):
    return json.dumps({"id": i, "ts": 1732900000 + i, "level": rng.choice(["info", "warn", "error"]),
                       "msg": " ".join(rng.choice(words) for _ in range(rng.randint(8, 40))),
                       "zone": rng.choice(words[15:17]), "latency_ms": round(rng.random() * 250, 3),
                       "trace": "%032x" % rng.getrandbits(128), "tags": rng.sample(words, 4)})
row = 0
while os.path.getsize(path) < target:
    if shape == "random":
        rows = [(f"kind-{i % 17}", os.urandom(900) + b"zoneward " * 8) for i in range(row, row + 20000)]
    else:
        rows = [(f"kind-{i % 17}", text_row(i).encode()) for i in range(row, row + 20000)]
    db.executemany("INSERT INTO events (kind, body) VALUES (?, ?)", rows)
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    row += 20000
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
print(f"{shape}: {row} rows, {os.path.getsize(path) >> 20} MiB")
PY
}

measure() { # label output-file(a glob, read after the run) command...: one line of figures
    local label=$1 output=$2
    shift 2
    sync
    if ! /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" >"$WORK/stdout" 2>"$WORK/stderr"; then
        echo "$label failed:" >&2
        cat "$WORK/stderr" >&2
        return 1
    fi
    local seconds kib bytes
    read -r seconds kib < <(tail -1 "$WORK/time.txt")
    # shellcheck disable=SC2086 # the output is a glob
    bytes=$(stat -c %s $output | head -1)
    printf "  %-34s %7.2f s %8.1f MiB/s %9.1f MiB %7.1f MiB\n" "$label" "$seconds" \
        "$(echo "$DB_MIB / $seconds" | bc -l)" "$(echo "$bytes / 1048576" | bc -l)" "$(echo "$kib / 1024" | bc -l)"
    echo "$seconds" >"$WORK/$SHAPE-$label.seconds"
}

ratio() { # label-a label-b: how many times longer a took than b
    printf "  %-60s %5.2f\n" "$1 / $2 (wall time)" \
        "$(echo "$(cat "$WORK/$SHAPE-$1.seconds") / $(cat "$WORK/$SHAPE-$2.seconds")" | bc -l)"
}

for SHAPE in $SHAPES; do
    DB="$WORK/$SHAPE.db"
    rm -rf "$WORK/backups" "$WORK/state.db" "$WORK"/copy* "$WORK"/restored*
    echo
    generate "$SHAPE" "$DB"
    DB_MIB=$(($(stat -c %s "$DB") >> 20))
    cat >"$WORK/zoneward.yaml" <<YAML
zones: [{name: z1, region: r1}]
backups:
  - name: zstd
    source: {sqlite: $DB}
    schedule: "17 * * * *"
    targets: [{filesystem: $WORK/backups}]
    encryption: {keyFile: $WORK/backup.key}
    compression: zstd
    verify: never
  - name: gzip
    source: {sqlite: $DB}
    schedule: "17 * * * *"
    targets: [{filesystem: $WORK/backups}]
    encryption: {keyFile: $WORK/backup.key}
    compression: gzip
    verify: never
YAML
    ZW=("$BIN")
    OPTS=(--config "$WORK/zoneward.yaml" --db "$WORK/state.db")
    ENC=(openssl enc -aes-256-cbc -pbkdf2 -pass "file:$WORK/backup.key")
    echo "  $(printf "%-34s %9s %14s %13s %11s" "" wall throughput output "peak RSS")"
    measure zoneward-zstd "$WORK/backups/zstd/*.zwb" "${ZW[@]}" backup run --job zstd "${OPTS[@]}"
    ZSTD_OBJECT=$(ls "$WORK"/backups/zstd/*.zwb)
    measure sqlite3+zstd-1-T0+openssl "$WORK/copy.zst.enc" bash -c \
        "sqlite3 '$DB' '.backup $WORK/copy.db' && zstd -q -1 -T0 -c '$WORK/copy.db' | ${ENC[*]} >'$WORK/copy.zst.enc'"
    measure zoneward-gzip "$WORK/backups/gzip/*.zwb" "${ZW[@]}" backup run --job gzip "${OPTS[@]}"
    GZIP_OBJECT=$(ls "$WORK"/backups/gzip/*.zwb)
    measure sqlite3+pigz-1+openssl "$WORK/copy.gz.enc" bash -c \
        "sqlite3 '$DB' '.backup $WORK/copy2.db' && pigz -1 -c '$WORK/copy2.db' | ${ENC[*]} >'$WORK/copy.gz.enc'"
    ZSTD_ID=$(basename "$ZSTD_OBJECT" .zwb)
    GZIP_ID=$(basename "$GZIP_OBJECT" .zwb)
    measure zoneward-restore-zstd "$WORK/restored-zstd.db" \
        "${ZW[@]}" backup restore "$ZSTD_ID" --to "$WORK/restored-zstd.db" "${OPTS[@]}"
    measure openssl+zstd-d "$WORK/restored-zstd-pipe.db" bash -c \
        "${ENC[*]} -d -in '$WORK/copy.zst.enc' | zstd -q -d -T0 >'$WORK/restored-zstd-pipe.db'"
    measure openssl+zstd-d+check "$WORK/restored-zstd-pipe.db" bash -c \
        "${ENC[*]} -d -in '$WORK/copy.zst.enc' | zstd -q -d -T0 >'$WORK/restored-zstd-pipe.db' && sqlite3 '$WORK/restored-zstd-pipe.db' 'PRAGMA integrity_check; SELECT COUNT(*) FROM events' >/dev/null"
    measure zoneward-restore-gzip "$WORK/restored-gzip.db" \
        "${ZW[@]}" backup restore "$GZIP_ID" --to "$WORK/restored-gzip.db" "${OPTS[@]}"
    measure openssl+pigz-d "$WORK/restored-gzip-pipe.db" bash -c \
        "${ENC[*]} -d -in '$WORK/copy.gz.enc' | pigz -d >'$WORK/restored-gzip-pipe.db'"
    measure openssl+pigz-d+check "$WORK/restored-gzip-pipe.db" bash -c \
        "${ENC[*]} -d -in '$WORK/copy.gz.enc' | pigz -d >'$WORK/restored-gzip-pipe.db' && sqlite3 '$WORK/restored-gzip-pipe.db' 'PRAGMA integrity_check; SELECT COUNT(*) FROM events' >/dev/null"
    "${ZW[@]}" backup verify "$ZSTD_ID" "${OPTS[@]}" >/dev/null
    "${ZW[@]}" backup verify "$GZIP_ID" "${OPTS[@]}" >/dev/null
    measure zoneward-restore-zstd-verified "$WORK/restored-zstd.db" \
        "${ZW[@]}" backup restore "$ZSTD_ID" --force --to "$WORK/restored-zstd.db" "${OPTS[@]}"
    measure zoneward-restore-gzip-verified "$WORK/restored-gzip.db" \
        "${ZW[@]}" backup restore "$GZIP_ID" --force --to "$WORK/restored-gzip.db" "${OPTS[@]}"
    cmp -s "$WORK/restored-zstd.db" "$WORK/restored-gzip.db" || echo "  warning: the two restores differ" >&2
    echo "  ratios ($SHAPE):"
    ratio zoneward-zstd sqlite3+zstd-1-T0+openssl
    ratio zoneward-gzip sqlite3+pigz-1+openssl
    ratio zoneward-restore-zstd openssl+zstd-d
    ratio zoneward-restore-zstd openssl+zstd-d+check
    ratio zoneward-restore-gzip openssl+pigz-d
    ratio zoneward-restore-gzip openssl+pigz-d+check
    ratio zoneward-restore-zstd-verified openssl+zstd-d
    ratio zoneward-restore-gzip-verified openssl+pigz-d
done
echo
echo "machine after: load $(cut -d' ' -f1-3 /proc/loadavg)"
