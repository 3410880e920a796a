#!/usr/bin/env bash
# Cross-node figures: a private redis-server, two `switchboard gateway`
# nodes and a `switchboard sidecar` (release build, one shared SQLite data
# dir, durable writes), then the load-tests fan-out with every sender on
# node 1 and every receiver on node 2, so each delivery crosses Redis:
#   1. max: 4 groups of 50, window 16 (closed loop);
#   2. half: the same groups at half the measured maximum (open loop), for
#      the latency percentiles of a cluster that is not saturated.
# Summaries and charts land in target/bench-cluster/<step>/, the nodes'
# logs in target/bench-cluster/.
#
#   bash bench/cluster/run.sh [seconds] [groups]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-10}
groups=${2:-4}

cargo build --release --quiet --bin switchboard && cargo build --release --quiet -p load-tests
# The nodes' logs outlive the run, beside the summaries.
logs=target/bench-cluster
source bench/nodes.sh
base=$(( 20000 + RANDOM % 10000 ))
start gateway 1 "$base"
start gateway 2 $(( base + 1 ))
start sidecar 3 $(( base + 2 ))

run() {
    local step=$1; shift
    ./target/release/load-tests --url "http://127.0.0.1:$(( base + 2 ))" \
        --gateway "http://127.0.0.1:$base" --gateway "http://127.0.0.1:$(( base + 1 ))" \
        --out "target/bench-cluster/$step" fanout --groups "$groups" --duration-secs "$seconds" "$@"
}
echo "== max: $groups groups of 50, senders on node 1, receivers on node 2, window 16, ${seconds}s"
run max --window 16 >/dev/null
max=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["measured"]["acked_per_s"])' target/bench-cluster/max/summary.json)
half=$(python3 -c "print(max(1, int(float('$max') / 2 / $groups)))")
echo "== half: ${half} messages/s per sender (half of ${max} acked/s), ${seconds}s"
run half --rate "$half" >/dev/null
for step in max half; do
    python3 - "target/bench-cluster/$step/summary.json" "$step" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["measured"]
l = m["latency_ms"]
print(f"{sys.argv[2]}: {m['acked_per_s']:.0f} messages/s acked, {m['deliveries_per_s']:.0f} cross-node deliveries/s, "
      f"latency p50 {l['p50']:.2f} ms, p99 {l['p99']:.2f} ms, errors {m['errors']}")
PY
done
