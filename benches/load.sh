#!/usr/bin/env bash
# Load and memory figures, all from one run on this machine:
#  1. wrk against /auth with a cached password, and against a plain hyper
#     hello-world, same settings; prints both and the ratio.
#  2. Peak resident memory of devicepass while 32 cold argon2id checks
#     (32 different tokens, empty cache) arrive at once.
# Everything listens on 127.0.0.1 and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null; }

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
cargo build --release --quiet
cargo build --release --quiet --bench hello
BIN=target/release/devicepass
HELLO=$(ls -t target/release/deps/hello-* | grep -v '\.d$' | head -1)
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

export DP_DATABASE_URL="sqlite:///$work/load.db" DP_LOG_LEVEL=warn
$BIN user add --username load --email load@example.org >/dev/null
created=$($BIN token create --user load --json)
login=$(echo "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["login"])')
password=$(echo "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["password"])')
auth="Authorization: Basic $(printf '%s:%s' "$login" "$password" | base64 -w0)"

DP_LISTEN=127.0.0.1:9002 $BIN serve & pids+=($!)
HELLO_ADDR=127.0.0.1:9001 $HELLO & pids+=($!)
sleep 1
curl -fsS -o /dev/null -H "$auth" http://127.0.0.1:9002/auth   # warm the cache

rps() { wrk -t2 -c"$CONNECTIONS" -d"$DURATION" "$@" | awk '/Requests\/sec/ {print $2}'; }
dp=$(rps -H "$auth" http://127.0.0.1:9002/auth)
hello=$(rps http://127.0.0.1:9001/)
echo "devicepass /auth (cached): $dp req/s"
echo "hyper hello-world:         $hello req/s"
python3 -c "print(f'ratio /auth : hello = {float($dp)/float($hello):.2f}')"
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true

# Memory: 32 tokens, 32 concurrent first checks.
declare -a creds
for i in $(seq 1 32); do
    c=$($BIN token create --user load --name "m$i" --json)
    creds+=("$(echo "$c" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["login"]+":"+d["password"])')")
done
DP_LISTEN=127.0.0.1:9003 $BIN serve & dp_pid=$!; pids+=($dp_pid)
sleep 1
before=$(awk '/VmHWM/ {print $2}' /proc/$dp_pid/status)
for c in "${creds[@]}"; do
    curl -s -o /dev/null -w '%{http_code}\n' -u "$c" http://127.0.0.1:9003/auth &
done | sort | uniq -c
wait $(jobs -p | grep -v "$dp_pid") 2>/dev/null || true
peak=$(awk '/VmHWM/ {print $2}' /proc/$dp_pid/status)
echo "peak RSS: ${before} KiB idle -> ${peak} KiB after 32 concurrent cold argon2id checks"
