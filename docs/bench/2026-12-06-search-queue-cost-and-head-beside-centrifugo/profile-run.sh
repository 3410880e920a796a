#!/bin/bash
# profile-run.sh BIN NAME RATE : fixed-rate chat run with perf on the server
BIN=$1; NAME=$2; RATE=${3:-8}
D=/tmp/ld/data-$NAME; rm -rf $D /tmp/ld/out-$NAME /tmp/ld/log-$NAME; mkdir -p $D
$BIN serve --listen 127.0.0.1:18080 --log-format json --data-dir $D --rate-api-per-hour 100000000 --ws-commands-per-second 1000000 > /dev/null 2> $D/server.log &
PID=$!
for i in $(seq 100); do curl -sf http://127.0.0.1:18080/health >/dev/null && break; sleep 0.1; done
( until grep -qE "chat +5s" /tmp/ld/log-$NAME 2>/dev/null; do sleep 0.2; done; perf record -F 999 -g -p $PID -o /tmp/ld/perf-$NAME.data -- sleep 15 > /dev/null 2>&1 ) & PERF=$!
/work/main/target/release/load-tests chat --pairs 1000 --rate $RATE --duration-secs 30 --url http://127.0.0.1:18080 --server-pid $PID --out /tmp/ld/out-$NAME > /tmp/ld/log-$NAME 2>&1
wait $PERF
kill $PID; wait $PID 2>/dev/null
