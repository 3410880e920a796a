# Sourced by the multi-node bench scripts (bench/cluster, bench/scale-out):
# a private redis-server and `switchboard` nodes (release build, one shared
# SQLite data dir, durable writes, the per-user limits lifted) on loopback.
# The caller sets `logs`, the folder the nodes' logs are copied to when the
# script exits; everything started here is stopped then.
data=$(mktemp -d)
# Apart from the nodes' ports (20000-29999 in the scripts) and below the
# ephemeral range, so no generator socket takes it.
redis_port=$(( 30000 + RANDOM % 2000 ))
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$data" >/dev/null &
pids=($!)
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    mkdir -p "$logs" && cp "$data"/*.log "$logs"/ 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.1; done

# start ROLE NODE-ID PORT: a `switchboard ROLE` node, once its /health
# answers; its pid is left in `node_pid`.
start() {
    ./target/release/switchboard "$1" --listen "127.0.0.1:$3" --node-id "$2" \
        --redis-url "redis://127.0.0.1:$redis_port" --data-dir "$data" --jwt-secret "bench secret of at least thirty-two bytes" \
        --rate-api-per-hour 100000000 --ws-commands-per-second 100000 2>"$data/$1-$2.log" &
    pids+=($!)
    node_pid=$!
    until curl -fs "http://127.0.0.1:$3/health" >/dev/null; do sleep 0.1; done
}
