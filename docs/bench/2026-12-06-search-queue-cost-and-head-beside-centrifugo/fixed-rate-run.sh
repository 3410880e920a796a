#!/bin/bash
# fixed.sh BIN NAME RATE : one fixed-rate chat run; prints server cpu µs per delivery
BIN=$1; NAME=$2; RATE=${3:-8}
D=/tmp/ld/data-$NAME; rm -rf $D /tmp/ld/out-$NAME; mkdir -p $D
$BIN serve --listen 127.0.0.1:18080 --log-format json --data-dir $D --rate-api-per-hour 100000000 --ws-commands-per-second 1000000 > /dev/null 2> $D/server.log &
PID=$!
for i in $(seq 100); do curl -sf http://127.0.0.1:18080/health >/dev/null && break; sleep 0.1; done
/work/main/target/release/load-tests chat --pairs 1000 --rate $RATE --duration-secs 30 --url http://127.0.0.1:18080 --server-pid $PID --out /tmp/ld/out-$NAME > /tmp/ld/log-$NAME 2>&1
for t in /proc/$PID/task/*; do n=$(cat $t/comm); if [ "$n" = sqlite-writer ] || [ "$n" = sqlite-checkpoi ] || [ "$n" = search-index ]; then echo "$n $(awk '{print $14+$15}' $t/stat)"; fi; done > /tmp/ld/threads-$NAME
kill $PID; wait $PID 2>/dev/null
python3 -c "import sqlite3;print('messages',sqlite3.connect('$D/switchboard.db').execute('select count(*) from messages').fetchone()[0])" >> /tmp/ld/threads-$NAME
