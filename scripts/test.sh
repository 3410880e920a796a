#!/usr/bin/env bash
# Runs Switchboard's whole test suite on a machine where nothing was prepared.
#
# Tests that need Redis use REDIS_URL when it is set; otherwise this script
# starts a private redis-server on a free port (installing it with apt-get
# if it is missing) and stops it afterwards. The ScyllaDB store's
# conformance suite runs against SCYLLA_URI when it is set; otherwise this
# script starts a private Apache Cassandra node (scripts/cassandra.sh, from
# Maven Central) and stops it afterwards. Node and npm are installed if
# missing: the bench's Socket.IO peer test and the browser test need them.
# Then: cargo test --workspace, schemathesis against the served OpenAPI
# document (scripts/api-fuzz.sh, from PyPI), the CQL conformance suite,
# clippy with warnings as errors, and the browser test.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }

start_private_redis() {
    if ! command -v redis-server >/dev/null 2>&1; then
        say "redis-server not found; installing it"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
    fi
    redis_dir=$(mktemp -d)
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        local port=$(( 20000 + RANDOM % 30000 ))
        if redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
            --daemonize yes --dir "$redis_dir" --pidfile "$redis_dir/redis.pid" \
            --logfile "$redis_dir/redis.log" >/dev/null 2>&1; then
            for _ in $(seq 1 50); do
                if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = "PONG" ]; then
                    export REDIS_URL="redis://127.0.0.1:$port"
                    say "private redis-server on $REDIS_URL"
                    return 0
                fi
                sleep 0.1
            done
            stop_private_redis
            redis_dir=$(mktemp -d)
        fi
    done
    echo "could not start a private redis-server" >&2
    return 1
}

stop_private_redis() {
    if [ -n "${redis_dir:-}" ] && [ -f "$redis_dir/redis.pid" ]; then
        local pid
        pid=$(cat "$redis_dir/redis.pid")
        kill "$pid" 2>/dev/null || true
        # Redis writes its last log lines while it exits: wait for it (5 s
        # at most) before removing its folder, or the removal races them.
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    if [ -n "${redis_dir:-}" ]; then
        rm -rf "$redis_dir" || true
    fi
    redis_dir=""
}

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    say "node/npm not found; installing them"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq nodejs npm >/dev/null
fi

cassandra_dir=""
stop_private_cassandra() {
    if [ -n "$cassandra_dir" ]; then
        bash scripts/cassandra.sh stop "$cassandra_dir" || true
        rm -rf "$cassandra_dir" || true
        cassandra_dir=""
    fi
}

cleanup() {
    stop_private_cassandra
    stop_private_redis
}
trap cleanup EXIT

if [ -z "${REDIS_URL:-}" ]; then
    start_private_redis
fi

say "cargo test --workspace"
cargo test --workspace --locked

say "API fuzzing: schemathesis against the served OpenAPI document"
cargo build --locked -p switchboard
bash scripts/api-fuzz.sh target/debug/switchboard

# Started after the workspace's tests, so that it takes no CPU from them.
if [ -z "${SCYLLA_URI:-}" ]; then
    cassandra_dir=$(mktemp -d)
    say "starting a private Cassandra node for the CQL store's conformance suite"
    SCYLLA_URI=$(bash scripts/cassandra.sh start "$cassandra_dir")
    export SCYLLA_URI
fi
say "the ScyllaDB store's conformance suite on the CQL node at $SCYLLA_URI"
cargo test --locked -p storage --test conformance_scylla -- --ignored
stop_private_cassandra

say "cargo clippy --workspace --all-targets (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

bash scripts/browser-test.sh
