import sys,statistics,json
for n in sys.argv[1:]:
    L=[l.split() for l in open(f'/tmp/ld/shm-{n}.txt') if l.startswith('17')][:1200]
    mx=[int(l[1].split('=')[1]) for l in L]; wal=[int(l[-1].split('=')[1]) for l in L]
    drops=sum(1 for i in range(1,len(mx)) if mx[i]<mx[i-1])
    m=json.load(open(f'/tmp/ld/out-{n}/summary.json'))['measured']
    print(n,'samples',len(L),'max frames',max(mx),'p50',statistics.median(mx),'p99',sorted(mx)[int(len(mx)*.99)],'file',max(wal),'restarts',drops,'deliv/s',round(m['deliveries_per_s']),'lat p50/p99',m['latency_ms']['p50'],m['latency_ms']['p99'],'lost',m['accounting']['lost'],'dup',m['accounting']['duplicated'],'cpu',m['server_cpu_s'])
