#!/usr/bin/env bash
# Gateway figures with the load-tests crate against the release binary on
# loopback (durable persistence on):
#   1. server RSS per idle WebSocket connection at N connections;
#   2. messages per second and send-to-receipt latency in a 2-user chat.
#
#   bash bench/ws/run.sh [connections] [chat-rate-per-user] [chat-seconds] [pairs]
set -euo pipefail
cd "$(dirname "$0")/../.."
connections=${1:-10000}
rate=${2:-1000}
seconds=${3:-10}
pairs=${4:-1}

cargo build --release --quiet --bin switchboard && cargo build --release --quiet -p load-tests
data=$(mktemp -d)
port=$(( 20000 + RANDOM % 30000 ))
./target/release/switchboard serve --listen "127.0.0.1:$port" --data-dir "$data" --log-format json \
    --rate-api-per-hour 100000000 --ws-commands-per-second 100000 2>"$data/server.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done

echo "== connect: $connections idle connections"
./target/release/load-tests --url "http://127.0.0.1:$port" --server-pid "$server" connect --connections "$connections" --hold-secs 5
echo "== chat: $pairs pair(s), $rate messages/s per user, ${seconds}s"
./target/release/load-tests --url "http://127.0.0.1:$port" --server-pid "$server" chat --pairs "$pairs" --rate "$rate" --duration-secs "$seconds"
