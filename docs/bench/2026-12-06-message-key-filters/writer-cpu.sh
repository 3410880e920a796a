#!/bin/bash
# The server's CPU per message by thread over 10 s of chat's maximum
# (1,000 pairs, one send in flight each), from /proc/PID/task/*/stat
# sampled every second.
# Usage: writer-cpu.sh SWITCHBOARD_BIN PORT   (run from the workspace root,
# after `cargo build --release -p load-tests --bin load-tests`)
BIN=$1; PORT=$2
LOAD=${LOAD_TESTS:-target/release/load-tests}
D=/tmp/writer-cpu-$PORT; rm -rf $D; mkdir $D
$BIN serve --listen 127.0.0.1:$PORT --data-dir $D --rate-api-per-hour 100000000 --ws-commands-per-second 1000000 > $D/log 2>&1 &
PID=$!
sleep 1.5
threads() {
  for t in /proc/$PID/task/*; do
    n=$(cat $t/comm 2>/dev/null) && s=($(sed 's/.*) //' $t/stat 2>/dev/null)) && echo "$n $((${s[11]}+${s[12]}))"
  done | awk '{a[$1]+=$2} END {for (k in a) printf "%s=%s ", k, a[k]; print ""}'
}
( while true; do echo "$(date +%s.%N) $(threads)"; sleep 1; done ) > $D/samples &
SAMPLER=$!
$LOAD --url http://127.0.0.1:$PORT --server-pid $PID chat --pairs 1000 --window 1 --duration-secs 14 --warmup-secs 1 2>/dev/null > $D/out.json
END=$(date +%s.%N)
kill $SAMPLER; kill $PID; wait $PID 2>/dev/null
# The window: from 12 s before the generator ended to 2 s before (user
# registration, before the load, is left out).
python3 - $D $END <<'PY'
import json, sys
d, end = sys.argv[1], float(sys.argv[2])
measured = json.load(open(d + '/out.json'))['measured']
rows = []
for line in open(d + '/samples'):
    parts = line.split()
    if len(parts) >= 2:
        rows.append((float(parts[0]), dict(x.split('=') for x in parts[1:])))
a = min(rows, key=lambda r: abs(r[0] - (end - 12)))
b = min(rows, key=lambda r: abs(r[0] - (end - 2)))
rate = measured['delivered'] / 14
messages = rate * (b[0] - a[0])
per = {k: (int(b[1][k]) - int(a[1].get(k, 0))) * 10000 / messages for k in b[1]}  # 10 ms ticks -> µs
print(f"rate {rate:.0f}/s  total {sum(per.values()):.1f} us/msg  "
      + "  ".join(f"{k} {v:.1f}" for k, v in sorted(per.items(), key=lambda x: -x[1]) if v > 0.05))
PY
