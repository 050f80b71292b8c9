#!/usr/bin/env bash
# The bank example under load from outside (issue 30's measure): wrk, on
# loopback, against `bank serve` on a fresh SQLite file; 20 accounts,
# deposits and transfers half each, for each client count. Prints one
# line per run: the binary, clients, requests/s, p50, p99 and the share
# of 409s (and of any other non-2xx).
#
#   bench/load/bank.sh [-d SECONDS] [-c "20 200"] BANK_BINARY...
#
# Build the binary with `cargo build --release --example bank`; give two
# (before and after a change) to compare them in one run. Needs wrk
# (Debian's package) and curl.
set -euo pipefail
duration=10
clients="20 200"
while getopts "d:c:" opt; do
    case $opt in
        d) duration=$OPTARG ;;
        c) clients=$OPTARG ;;
        *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-d SECONDS] [-c CLIENTS] BANK_BINARY..." >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
port=39$((RANDOM % 90 + 10))

run_one() { # binary clients
    local bank=$1 c=$2 dir pid base i id ids=()
    dir=$(mktemp -d)
    (cd "$dir" && exec "$bank" serve "127.0.0.1:$port" >"$dir/log" 2>&1) &
    pid=$!
    base="http://127.0.0.1:$port"
    for i in $(seq 100); do
        curl -fs "$base/balances" >/dev/null 2>&1 && break
        sleep 0.1
    done
    for i in $(seq 20); do
        id=$(curl -fs -X POST "$base/accounts" -H 'content-type: application/json' \
            -d "{\"owner\": \"owner$i\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
        curl -fs -X POST "$base/accounts/$id/deposit" -H 'content-type: application/json' \
            -d '{"amount": 1000000000}' >/dev/null
        ids+=("\"$id\"")
    done
    { echo "ACCOUNTS = {$(IFS=,; echo "${ids[*]}")}"; cat "$here/bank.lua"; } >"$dir/bank.lua"
    wrk -t2 -c"$c" -d"${duration}s" --timeout 10s -s "$dir/bank.lua" "$base" >"$dir/wrk" 2>&1 || true
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    grep '^RESULT' "$dir/wrk" | sed 's/^RESULT //' | python3 -c '
import json, sys
r = json.load(sys.stdin)
n = r["requests"]
s = {int(k): v for k, v in r["statuses"].items()}
conflicts = s.get(409, 0)
other = sum(v for k, v in s.items() if k >= 300 and k != 409)
rate, p50, p99 = n / r["seconds"], r["p50_ms"], r["p99_ms"]
print(f"{sys.argv[1]:<40} {sys.argv[2]:>7} {rate:>10.0f} {p50:>8.1f} {p99:>8.1f} {100 * conflicts / max(n, 1):>7.2f}% {100 * other / max(n, 1):>7.2f}%")
' "$bank" "$c"
    rm -rf "$dir"
}

printf '%-40s %7s %10s %8s %8s %8s %8s\n' binary clients "req/s" "p50 ms" "p99 ms" "409s" "other"
for c in $clients; do
    for bank in "$@"; do
        run_one "$bank" "$c"
    done
done
