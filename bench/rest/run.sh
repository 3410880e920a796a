#!/usr/bin/env bash
# REST throughput of the two hottest endpoints, POST and GET of
# /api/chats/{id}/messages, against the release binary on loopback with
# durable persistence (SQLite, synchronous=FULL), measured with wrk.
#
#   bash bench/rest/run.sh [seconds] [connections]
#
# Needs wrk (apt-get install wrk) and curl. Stops the server at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-15}
connections=${2:-64}
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }

cargo build --release --quiet
data=$(mktemp -d)
port=$(( 20000 + RANDOM % 30000 ))
./target/release/switchboard serve --listen "127.0.0.1:$port" --data-dir "$data" \
    --rate-api-per-hour 100000000 --log-format json 2>"$data/server.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do curl -fs "$base/health" >/dev/null && break; sleep 0.1; done

json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
register() {
    curl -fs "$base/api/auth/register" -H 'content-type: application/json' \
        -d "{\"phone\":\"$1\",\"username\":\"$2\",\"password\":\"password123\"}"
}
alice=$(register 13800000001 alice)
token=$(echo "$alice" | json_field "['data']['access_token']")
bob_id=$(register 13800000002 bob | json_field "['data']['user']['id']")
chat=$(curl -fs "$base/api/chats" -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d "{\"type\":\"group\",\"name\":\"bench\",\"members\":[$bob_id]}" | json_field "['data']['id']")

export TOKEN=$token
echo "== POST /api/chats/$chat/messages, $connections connections, ${seconds}s (each a durable, sequenced append + publish)"
wrk -t2 -c"$connections" -d"${seconds}s" --latency -s bench/rest/post.lua "$base/api/chats/$chat/messages"
echo "== GET /api/chats/$chat/messages?limit=50, $connections connections, ${seconds}s"
wrk -t2 -c"$connections" -d"${seconds}s" --latency -s bench/rest/get.lua "$base/api/chats/$chat/messages?limit=50"
stored=$(curl -fs "$base/api/chats/$chat" -H "authorization: Bearer $token" | json_field "['data']['last_seq']")
echo "== messages stored: $stored (seq contiguous from 1)"
echo "== server RSS: $(awk '/VmRSS/ {print $2, $3}' /proc/$server/status)"
