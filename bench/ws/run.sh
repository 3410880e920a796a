#!/usr/bin/env bash
# Gateway figures with the load-tests crate against the release binary on
# loopback (durable persistence on):
#   1. server RSS per idle WebSocket connection at N connections;
#   2. messages per second and send-to-receipt latency in a 2-user chat;
#   3. churn: 500 connects per second, each held 1 s;
#   4. fan-out: 4 groups of 50, at the most each sender can get acked.
# Each step's summary.json and chart.svg land in target/bench-ws/<step>/.
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

run() { ./target/release/load-tests --url "http://127.0.0.1:$port" --server-pid "$server" --out "target/bench-ws/$1" "$@"; }
sources=$(( connections / 20000 + 1 ))
echo "== connect: $connections idle connections from $sources source address(es)"
run connect --source-addrs "$sources" --connections "$connections" --hold-secs 5
echo "== chat: $pairs pair(s), $rate messages/s per user, ${seconds}s"
run chat --pairs "$pairs" --rate "$rate" --duration-secs "$seconds"
echo "== churn: 500 connects/s held 1 s, ${seconds}s"
run churn --rate 500 --hold-ms 1000 --duration-secs "$seconds"
echo "== fanout: 4 groups of 50, window 16, ${seconds}s"
run fanout --groups 4 --window 16 --duration-secs "$seconds"
