#!/usr/bin/env bash
# The ScyllaDB store on a three-node CQL cluster (tests/ws/cql_cluster.rs):
# three Apache Cassandra nodes on 127.0.0.1-3 (scripts/cassandra.sh), two
# gateway nodes and a sidecar on --store scylla over a private Redis, one
# CQL node killed with SIGKILL mid-stream and brought back. It needs what
# scripts/test.sh sets up (redis-server, Java 17, Maven) and about 4 GiB;
# `cargo test` alone reports it as ignored.
set -euo pipefail
cd "$(dirname "$0")/.."
printf '==> %s\n' "the ScyllaDB store on a three-node CQL cluster"
cargo test --locked -p switchboard --test ws cql_cluster -- --ignored --nocapture
