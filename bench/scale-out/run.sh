#!/usr/bin/env bash
# Scale-out on one machine: a private redis-server, a `switchboard sidecar`
# and five `switchboard gateway` nodes (release build, one shared SQLite
# data dir, durable writes), then:
#   1. connect: one load-tests generator per gateway (a process may hold at
#      most 20,000 descriptors here), each opening --connections (19,500 by
#      default) idle connections, all five at once, from 20 loopback source
#      addresses (the generators bind a source port per connection, and one
#      address has about 28k: five generators on 4 addresses filled them to
#      87% and the kernel's port search slowed connects to ~150/s per node);
#      held together, counted with `ss` while held. Reports each node's RSS
#      per connection and each generator's connect rate.
#   2. fan-out across the nodes: 4 groups of 50 whose members are spread
#      over all five gateways (window 16, closed loop), so most deliveries
#      cross Redis.
# Summaries land in target/bench-scale-out/, the nodes' logs beside them.
#
#   bash bench/scale-out/run.sh [connections-per-node] [fan-out seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
per_node=${1:-19500}
seconds=${2:-10}
nodes=5
out=target/bench-scale-out

cargo build --release --quiet --bin switchboard && cargo build --release --quiet -p load-tests
rm -rf "$out" && mkdir -p "$out"
logs=$out
source bench/nodes.sh
# Below the ephemeral range (32768-60999), so that no client socket of
# the generators can have a gateway's port as its own and be counted.
base=$(( 20000 + RANDOM % 10000 ))
start sidecar 0 "$base"
sidecar="http://127.0.0.1:$base"
gateways=()
gateway_pids=()
for node in $(seq 1 "$nodes"); do
    start gateway "$node" $(( base + node ))
    gateways+=("http://127.0.0.1:$(( base + node ))")
    gateway_pids+=("$node_pid")
done

echo "== connect: $nodes generators, $per_node idle connections each, one per gateway, all at once"
# Long enough that the slowest generator is still connecting while the
# fastest holds: the count below takes the most established at once.
hold=90
generators=()
for node in $(seq 1 "$nodes"); do
    i=$(( node - 1 ))
    ./target/release/load-tests --url "$sidecar" --gateway "${gateways[$i]}" --server-pid "${gateway_pids[$i]}" \
        --source-addrs 20 --out "$out/connect-$node" \
        connect --connections "$per_node" --users 200 --hold-secs "$hold" >/dev/null 2>"$out/connect-$node.err" &
    generators+=($!)
done
# The most connections established on the gateways at once, sampled
# every 2 s until the first generator lets go (the slowest has connected
# by then: each holds for $hold s after its last connect).
held=0
while kill -0 "${generators[@]}" 2>/dev/null; do
    sleep 2
    now=0
    for node in $(seq 1 "$nodes"); do
        count=$(ss -Htn state established "( sport = :$(( base + node )) )" | wc -l)
        now=$(( now + count ))
    done
    [ "$now" -gt "$held" ] && held=$now
done
echo "   established on the gateways at once (most seen): $held"
for pid in "${generators[@]}"; do wait "$pid"; done

python3 - "$out" "$nodes" "$held" <<'PY'
import json, sys
out, nodes, held = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows, total = [], 0
for node in range(1, nodes + 1):
    s = json.load(open(f"{out}/connect-{node}/summary.json"))
    per = s["server_rss_per_connection_bytes"]
    rate = s["opened"] / s["connect_seconds"] if s["connect_seconds"] else 0
    total += s["opened"]
    rows.append({"node": node, "opened": s["opened"], "failed": s["failed"], "disconnects": s["disconnects"],
                 "connect_seconds": round(s["connect_seconds"], 2), "connects_per_s": round(rate),
                 "rss_before_mib": round(s["server_rss_before_bytes"] / 2**20, 1),
                 "rss_held_mib": round(s["server_rss_held_bytes"] / 2**20, 1),
                 "rss_per_connection_bytes": per})
    print(f"   node {node}: {s['opened']} open, {s['failed']} failed, {s['disconnects']} dropped, "
          f"{rate:.0f} connects/s, RSS {rows[-1]['rss_before_mib']} -> {rows[-1]['rss_held_mib']} MiB, "
          f"{per / 1024:.1f} KiB per connection")
print(f"   total: {total} connections opened, {held} established at once")
json.dump({"nodes": rows, "opened": total, "established_at_once": held}, open(f"{out}/connect.json", "w"), indent=2)
PY

echo "== fan-out across $nodes gateways: 4 groups of 50 spread over every node, window 16, ${seconds}s"
gateway_args=()
for gateway in "${gateways[@]}"; do gateway_args+=(--gateway "$gateway"); done
./target/release/load-tests --url "$sidecar" "${gateway_args[@]}" --out "$out/fanout" \
    fanout --groups 4 --window 16 --duration-secs "$seconds" >/dev/null
python3 - "$out/fanout/summary.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["measured"]
l, a = m["latency_ms"], m["accounting"]
print(f"   {m['acked_per_s']:.0f} messages/s acked, {m['deliveries_per_s']:.0f} deliveries/s, "
      f"p50 {l['p50']:.2f} ms, p99 {l['p99']:.2f} ms, lost {a['lost']}, duplicated {a['duplicated']}, "
      f"errors {m['errors']}, disconnects {m['disconnects']}")
PY
