#!/usr/bin/env bash
# Load and memory figures, all from one run on this machine:
#  1. wrk against /auth with a cached password — on SQLite and, when
#     scripts/test-servers.sh has started them, PostgreSQL and MariaDB —
#     and against a plain hyper hello-world, same settings; prints the
#     figures and the ratios.
#  2. Peak resident memory of devicepass while 32 cold argon2id checks
#     (32 different tokens, empty cache) arrive at once.
# Everything listens on 127.0.0.1 and is stopped at the end.
#
#   benches/load.sh                 # SQLite and the baseline
#   WITH_SERVERS=1 benches/load.sh  # also PostgreSQL and MariaDB
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
cargo build --release --quiet
cargo build --release --quiet --bench hello
BIN=$PWD/target/release/devicepass
HELLO=$(ls -t target/release/deps/hello-* | grep -v '\.d$' | head -1)
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
if [ "${WITH_SERVERS:-0}" = 1 ]; then
    # shellcheck source=scripts/test-servers.sh
    source scripts/test-servers.sh
fi
export DP_LOG_LEVEL=warn

json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
rps() { wrk -t2 -c"$CONNECTIONS" -d"$DURATION" "$@" | awk '/Requests\/sec/ {print $2}'; }
ratio() { python3 -c "print(f'{float($1)/float($2):.2f}')"; }

# load_on URL PORT: req/s of /auth with a cached password on that database.
load_on() {
    local url=$1 port=$2 created login password auth pid
    DP_DATABASE_URL=$url $BIN migrate >/dev/null
    DP_DATABASE_URL=$url $BIN user add --username load --email load@example.org >/dev/null
    created=$(DP_DATABASE_URL=$url $BIN token create --user load --json)
    login=$(echo "$created" | json_field login)
    password=$(echo "$created" | json_field password)
    auth="Authorization: Basic $(printf '%s:%s' "$login" "$password" | base64 -w0)"
    DP_DATABASE_URL=$url DP_LISTEN=127.0.0.1:$port $BIN serve & pid=$!
    pids+=("$pid")
    sleep 1
    curl -fsS -o /dev/null -H "$auth" "http://127.0.0.1:$port/auth"   # warm the cache
    rps -H "$auth" "http://127.0.0.1:$port/auth"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

HELLO_ADDR=127.0.0.1:9001 $HELLO & pids+=($!)
sleep 1
hello=$(rps http://127.0.0.1:9001/)
sqlite=$(load_on "sqlite:///$work/load.db" 9002)
echo "hyper hello-world:           $hello req/s"
echo "/auth cached, SQLite:        $sqlite req/s (ratio to hello-world $(ratio "$sqlite" "$hello"))"
if [ "${WITH_SERVERS:-0}" = 1 ]; then
    psql -q "$DEVICEPASS_TEST_POSTGRES_URL" -c "CREATE DATABASE dp_load"
    pg_url="${DEVICEPASS_TEST_POSTGRES_URL%/*}/dp_load"
    pg=$(load_on "$pg_url" 9004)
    echo "/auth cached, PostgreSQL:    $pg req/s (ratio to SQLite $(ratio "$pg" "$sqlite"))"
    my_port=$(python3 -c "import urllib.parse,sys; print(urllib.parse.urlparse(sys.argv[1]).port)" "$DEVICEPASS_TEST_MYSQL_URL")
    mariadb --no-defaults -h127.0.0.1 -P"$my_port" -udp -pdp -e "CREATE DATABASE dp_load CHARACTER SET utf8mb4"
    my_url="${DEVICEPASS_TEST_MYSQL_URL%/*}/dp_load"
    my=$(load_on "$my_url" 9005)
    echo "/auth cached, MariaDB:       $my req/s (ratio to SQLite $(ratio "$my" "$sqlite"))"
fi

# Memory: 32 tokens, 32 concurrent first checks.
export DP_DATABASE_URL="sqlite:///$work/memory.db"
$BIN user add --username mem --email mem@example.org >/dev/null
creds=()
for i in $(seq 1 32); do
    c=$($BIN token create --user mem --name "m$i" --json)
    creds+=("$(echo "$c" | json_field login):$(echo "$c" | json_field password)")
done
DP_LISTEN=127.0.0.1:9003 $BIN serve & dp_pid=$!
pids+=("$dp_pid")
sleep 1
idle=$(awk '/VmHWM/ {print $2}' "/proc/$dp_pid/status")
codes=$(for c in "${creds[@]}"; do
    curl -s -o /dev/null -w '%{http_code}\n' -u "$c" http://127.0.0.1:9003/auth &
done; wait)
echo "32 concurrent cold checks answered: $(echo "$codes" | sort | uniq -c | tr -s ' \n' ' ')"
peak=$(awk '/VmHWM/ {print $2}' "/proc/$dp_pid/status")
echo "peak RSS: ${idle} KiB idle, ${peak} KiB after 32 concurrent cold argon2id checks"
