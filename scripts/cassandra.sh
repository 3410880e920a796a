#!/usr/bin/env bash
# Starts and stops a real Apache Cassandra node on loopback, for the
# ScyllaDB store's tests: Cassandra speaks the same CQL protocol, with the
# same data model and lightweight transactions. Nothing is downloaded but
# `org.apache.cassandra:cassandra-all` and its dependencies from Maven
# Central, resolved once into Maven's own cache (~/.m2); the class path is
# kept in $CASSANDRA_CACHE for later runs.
#
#   scripts/cassandra.sh start DIR [ADDRESS [SEEDS]]   # prints the CQL address when it answers
#   scripts/cassandra.sh stop DIR
#
# DIR holds the node's data, its cassandra.yaml, its log and its pid.
# ADDRESS is the node's loopback address (default 127.0.0.1); SEEDS the
# comma-separated addresses of the cluster's seeds (default ADDRESS). The
# nodes of one cluster share CASSANDRA_STORAGE_PORT and CASSANDRA_CQL_PORT
# (each node has its own address); by default both are free ports.
#
# Environment: CASSANDRA_VERSION (default 5.0.6), CASSANDRA_HEAP (1G),
# CASSANDRA_CACHE (~/.cache/switchboard/cassandra-VERSION),
# CASSANDRA_STORAGE_PORT, CASSANDRA_CQL_PORT, CASSANDRA_WAIT_SECS (180).
set -euo pipefail

version=${CASSANDRA_VERSION:-5.0.6}
heap=${CASSANDRA_HEAP:-1G}
cache=${CASSANDRA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/switchboard/cassandra-$version}

say() { printf '==> %s\n' "$*" >&2; }
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Resolves cassandra-all with its dependencies (once) and answers the class path.
classpath() {
    if [ -s "$cache/classpath.txt" ]; then
        cat "$cache/classpath.txt"
        return
    fi
    command -v mvn >/dev/null || { echo "mvn is needed to resolve Cassandra from Maven Central" >&2; exit 1; }
    mkdir -p "$cache"
    cat >"$cache/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>switchboard.test</groupId>
  <artifactId>cassandra-runtime</artifactId>
  <version>1</version>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>$version</version>
    </dependency>
  </dependencies>
</project>
EOF
    local started
    started=$(now)
    say "resolving org.apache.cassandra:cassandra-all:$version and its dependencies through Maven"
    mvn -q -B -f "$cache/pom.xml" dependency:build-classpath -Dmdep.outputFile="$cache/classpath.txt.part" >&2
    mv "$cache/classpath.txt.part" "$cache/classpath.txt"
    say "resolved in $(took "$started")"
    cat "$cache/classpath.txt"
}

write_config() { # dir address seeds storage_port cql_port
    local dir=$1 address=$2 seeds=$3 storage_port=$4 cql_port=$5
    mkdir -p "$dir/data" "$dir/commitlog" "$dir/saved_caches" "$dir/hints" "$dir/cdc_raw" "$dir/logs"
    cat >"$dir/cassandra.yaml" <<EOF
cluster_name: switchboard-test
num_tokens: 16
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
# Paxos v2: fewer round trips per lightweight transaction and far less
# contention when many writers claim rows of one partition (a chat's).
paxos_variant: v2
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
data_file_directories:
  - $dir/data
commitlog_directory: $dir/commitlog
saved_caches_directory: $dir/saved_caches
hints_directory: $dir/hints
cdc_raw_directory: $dir/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "$seeds"
listen_address: $address
rpc_address: $address
storage_port: $storage_port
native_transport_port: $cql_port
start_native_transport: true
memtable_heap_space: 128MiB
memtable_offheap_space: 128MiB
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 4
concurrent_materialized_view_writes: 4
auto_snapshot: false
snapshot_on_duplicate_row_detection: false
incremental_backups: false
key_cache_size: 16MiB
counter_cache_size: 0MiB
EOF
    cat >"$dir/logback.xml" <<EOF
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>$dir/logs/system.log</file>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE" /></root>
</configuration>
EOF
}

start() {
    local dir=${1:?usage: cassandra.sh start DIR [ADDRESS [SEEDS]]}
    local address=${2:-127.0.0.1}
    local seeds=${3:-$address}
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        say "a node already runs in $dir"
        echo "$address:$(cat "$dir/cql_port")"
        return
    fi
    local cp started storage_port cql_port
    cp=$(classpath)
    storage_port=${CASSANDRA_STORAGE_PORT:-$(free_port)}
    cql_port=${CASSANDRA_CQL_PORT:-$(free_port)}
    write_config "$dir" "$address" "$seeds" "$storage_port" "$cql_port"
    echo "$cql_port" >"$dir/cql_port"
    started=$(now)
    # The JVM options Cassandra's own jvm17-server.options gives Java 17.
    local jvm=(
        -Xms"$heap" -Xmx"$heap" -Xss512k -XX:+UseG1GC -XX:+HeapDumpOnOutOfMemoryError
        -XX:HeapDumpPath="$dir/logs" -Djava.net.preferIPv4Stack=true
        -Djdk.attach.allowAttachSelf=true
        --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
        --add-exports java.base/jdk.internal.ref=ALL-UNNAMED
        --add-exports java.base/sun.nio.ch=ALL-UNNAMED
        --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
        --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
        --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
        --add-exports java.sql/java.sql=ALL-UNNAMED
        --add-exports java.base/java.lang.ref=ALL-UNNAMED
        --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
        --add-opens java.base/java.lang.module=ALL-UNNAMED
        --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
        --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
        --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
        --add-opens java.base/jdk.internal.math=ALL-UNNAMED
        --add-opens java.base/jdk.internal.module=ALL-UNNAMED
        --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
        --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
        --add-opens java.base/sun.nio.ch=ALL-UNNAMED
        --add-opens java.base/java.io=ALL-UNNAMED
        --add-opens java.base/java.nio=ALL-UNNAMED
        --add-opens java.base/java.util.concurrent=ALL-UNNAMED
        --add-opens java.base/java.util=ALL-UNNAMED
        --add-opens java.base/java.util.concurrent.atomic=ALL-UNNAMED
        --add-opens java.base/java.lang=ALL-UNNAMED
        --add-opens java.base/java.math=ALL-UNNAMED
        --add-opens java.base/java.lang.reflect=ALL-UNNAMED
        --add-opens java.base/java.net=ALL-UNNAMED
        -Dcassandra.config="file://$dir/cassandra.yaml"
        -Dcassandra.storagedir="$dir"
        -Dcassandra.logdir="$dir/logs"
        -Dlogback.configurationFile="$dir/logback.xml"
        -Dcassandra-foreground=yes
        -Dcassandra.skip_wait_for_gossip_to_settle=0
        -Dcassandra.superuser_setup_delay_ms=0
        # How long a joining node gossips before it bootstraps: long enough
        # to reach a busy seed on two shared cores, short for one node.
        -Dcassandra.ring_delay_ms=$([ "$seeds" = "$address" ] && echo 1000 || echo 10000)
    )
    say "starting Cassandra $version on $address:$cql_port (data in $dir)"
    # Its own session: a stop takes the JVM and nothing else.
    setsid java "${jvm[@]}" -cp "$cp" org.apache.cassandra.service.CassandraDaemon \
        >"$dir/logs/stdout.log" 2>&1 </dev/null &
    echo $! >"$dir/pid"
    local wait_secs=${CASSANDRA_WAIT_SECS:-180}
    for _ in $(seq 1 $((wait_secs * 4))); do
        if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
            echo "Cassandra exited while starting; the end of its logs:" >&2
            tail -n 30 "$dir/logs/stdout.log" "$dir/logs/system.log" >&2 2>/dev/null || true
            exit 1
        fi
        if (exec 3<>"/dev/tcp/$address/$cql_port") 2>/dev/null; then
            say "CQL answers on $address:$cql_port after $(took "$started")"
            echo "$address:$cql_port"
            return
        fi
        sleep 0.25
    done
    echo "Cassandra did not answer CQL within $wait_secs s; the end of its log:" >&2
    tail -n 30 "$dir/logs/system.log" >&2 2>/dev/null || true
    stop "$dir"
    exit 1
}

stop() {
    local dir=${1:?usage: cassandra.sh stop DIR}
    [ -f "$dir/pid" ] || return 0
    local pid
    pid=$(cat "$dir/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/pid"
}

case "${1:-}" in
    start) shift; start "$@" ;;
    stop) shift; stop "$@" ;;
    *) echo "usage: $0 start DIR [ADDRESS [SEEDS]] | stop DIR" >&2; exit 2 ;;
esac
