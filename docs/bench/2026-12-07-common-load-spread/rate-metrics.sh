#!/usr/bin/env bash
# usage: rate-metrics.sh BIN RATE PORT -> p99 of the run, and the engine's commit / ack histograms over it
BIN=$1; RATE=$2; PORT=$3
D=$(mktemp -d)
$BIN serve --listen 127.0.0.1:$PORT --data-dir $D --rate-api-per-hour 100000000 --ws-commands-per-second 1000000 > $D/log 2>&1 &
PID=$!
sleep 1.5
target/release/load-tests --url http://127.0.0.1:$PORT --server-pid $PID fanout --groups 4 --group-size 50 --rate $RATE --duration-secs 20 --out $D/out > $D/lt.log 2>&1 &
LT=$!
sleep 12
sleep 15
curl -s http://127.0.0.1:$PORT/metrics > $D/m2
wait $LT
kill $PID; wait $PID 2>/dev/null
python3 - "$D" <<'PY'
import json,sys,re
d=sys.argv[1]
s=json.load(open(d+'/out/summary.json'))
m=s['measured']
print('p50 %.2f p99 %.2f lost %s'%(m['latency_ms']['p50'],m['latency_ms']['p99'],m['accounting']['lost']))
for name in ('switchboard_store_commit_seconds','switchboard_ws_ack_seconds','switchboard_ws_delivery_seconds','switchboard_ws_fanout_seconds'):
    q={}
    for line in open(d+'/m2'):
        mm=re.match(name+r'\{quantile="([^"]+)"\} (\S+)',line)
        if mm: q[mm.group(1)]=float(mm.group(2))*1000
    print(name, ' '.join('q%s=%.2fms'%(k,q[k]) for k in ('0.5','0.9','0.99','1') if k in q))
PY
rm -rf $D
