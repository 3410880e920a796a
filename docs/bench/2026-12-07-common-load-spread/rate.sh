#!/usr/bin/env bash
# usage: rate.sh BIN RATE PORT -> prints p50/p99 of a fresh server at a fixed rate per sender
BIN=$1; RATE=$2; PORT=$3
D=$(mktemp -d)
$BIN serve --listen 127.0.0.1:$PORT --data-dir $D --rate-api-per-hour 100000000 --ws-commands-per-second 1000000 > $D/log 2>&1 &
PID=$!
sleep 1.5
target/release/load-tests --url http://127.0.0.1:$PORT --server-pid $PID fanout --groups 4 --group-size 50 --rate $RATE --duration-secs 20 --out $D/out > $D/lt.log 2>&1
kill $PID; wait $PID 2>/dev/null
python3 - "$D/out/summary.json" <<'PY'
import json,sys
s=json.load(open(sys.argv[1]))
def find(o,path=""):
    if isinstance(o,dict):
        for k,v in o.items():
            if any(t in k for t in ("p50","p99","lost","delivered_per","deliveries_per")) and not isinstance(v,(dict,list)):
                print(path+k, v)
            find(v,path+k+".")
find(s)
PY
rm -rf $D
