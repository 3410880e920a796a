#!/bin/bash
# ovl.sh BIN NAME : overload chat run (24k msg/s offered) sampling the WAL index
BIN=$1; N=$2
SHM_PY=$(dirname "$(readlink -f "$0")")/../../wal-under-overload/shm.py
rm -rf data-$N out-$N shm-$N.txt && mkdir data-$N
$BIN serve --listen 127.0.0.1:18080 --log-format json --data-dir data-$N --rate-api-per-hour 100000000 --ws-commands-per-second 1000000 >/dev/null 2>data-$N/log &
PID=$!
sleep 1
python3 "$SHM_PY" data-$N/switchboard.db 62 shm-$N.txt &
SHM=$!
/work/main/target/release/load-tests chat --pairs 1000 --rate 12 --duration-secs 30 --url http://127.0.0.1:18080 --server-pid $PID --out out-$N > log-$N 2>&1
wait $SHM
kill $PID; wait $PID 2>/dev/null
