#!/usr/bin/env bash
# `annals import` of N events (default 1,000,000) into SQLite and
# PostgreSQL: the bulk path (COPY on PostgreSQL, one transaction per batch
# on SQLite) against the save path (`--save-path`: each batch through the
# application's save, as imports did before), in one run, each into fresh
# tables. Prints a Markdown table of wall time and events per second.
#
#   cargo build --release -p annals-cli
#   bench/import.sh [N]
#
# PostgreSQL from POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER,
# POSTGRES_DBNAME (and POSTGRES_PASSWORD); left out when POSTGRES_DBNAME
# is unset. ANNALS: the binary (default target/release/annals).
set -euo pipefail

N=${1:-1000000}
here=$(cd "$(dirname "$0")/.." && pwd)
ANNALS=${ANNALS:-${CARGO_TARGET_DIR:-$here/target}/release/annals}
[ -x "$ANNALS" ] || { echo "no $ANNALS: cargo build --release -p annals-cli" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export_file=$work/export.jsonl

# The export: N events, 100 a stream, each state a JSON object of about
# 120 bytes, as stored (base64), from one store's identity.
python3 - "$N" "$export_file" <<'PY'
import base64, json, sys, uuid
n, path = int(sys.argv[1]), sys.argv[2]
per = 100
with open(path, "w") as out:
    out.write(json.dumps({"kind": "header", "format": "annals-export", "version": 1,
                          "application": "Bench", "store": "0000000000be7c40"}) + "\n")
    stream = None
    for i in range(n):
        if i % per == 0:
            stream = str(uuid.UUID(int=i // per + 1))
        version = i % per + 1
        state = json.dumps({"timestamp": "2026-12-05T18:00:00.%06d+00:00" % (i % 1000000),
                            "originator_topic": "bench:Dog", "trick": "trick %d" % version},
                           separators=(",", ":")).encode()
        out.write(json.dumps({"kind": "event", "notification_id": i + 1,
                              "originator_id": stream, "originator_version": version,
                              "topic": "bench:Dog.TrickAdded",
                              "state": {"stored": base64.b64encode(state).decode()}},
                             separators=(",", ":")) + "\n")
    out.write(json.dumps({"kind": "end", "events": n, "snapshots": 0, "tracking": 0}) + "\n")
PY

# Runs `annals import` and prints "seconds events/s cpu-seconds" (the
# import's user and system time: on a loaded machine, what it would need).
timed() {
    local start end cpu
    start=$(date +%s.%N)
    cpu=$( { /usr/bin/time -f "%U %S" "$ANNALS" -q "$@" import -i "$export_file" "${extra[@]}" >/dev/null; } 2>&1 | tail -1)
    end=$(date +%s.%N)
    python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); u,k=map(float,sys.argv[3:5]); print('%.2f %.0f %.2f' % (s, $N/s, u+k))" "$start" "$end" $cpu
}

echo "| store | path | events | seconds | events/s | CPU seconds (the import's) |"
echo "|---|---|---:|---:|---:|---:|"
for path in bulk save; do
    extra=()
    [ "$path" = save ] && extra=(--save-path --batch 1000)
    db=$work/$path.db
    read -r secs rate cpu < <(timed --app Bench --sqlite "$db")
    echo "| SQLite | $path | $N | $secs | $rate | $cpu |"
    rm -f "$db" "$db-wal" "$db-shm"
done
if [ -n "${POSTGRES_DBNAME:-}" ]; then
    psql_() { PGPASSWORD=${POSTGRES_PASSWORD:-} psql -q -h "${POSTGRES_HOST:-127.0.0.1}" -p "${POSTGRES_PORT:-5432}" -U "${POSTGRES_USER:-postgres}" -d "$POSTGRES_DBNAME" -c "$1"; }
    for path in bulk save; do
        extra=()
        [ "$path" = save ] && extra=(--save-path --batch 1000)
        psql_ "DROP TABLE IF EXISTS benchimport_events, benchimport_snapshots, benchimport_tracking, benchimport_outcomes" 2>/dev/null
        read -r secs rate cpu < <(timed --app BenchImport --postgres "$POSTGRES_DBNAME")
        echo "| PostgreSQL | $path | $N | $secs | $rate | $cpu |"
    done
    psql_ "DROP TABLE IF EXISTS benchimport_events, benchimport_snapshots, benchimport_tracking, benchimport_outcomes" 2>/dev/null
fi
