import struct, sys, time, os
p=sys.argv[1]; end=time.time()+float(sys.argv[2]); out=open(sys.argv[3],'w')
while time.time()<end:
    try:
        with open(p+'-shm','rb') as f: b=f.read(136)
        mx=struct.unpack_from('<I',b,16)[0]; nb=struct.unpack_from('<I',b,96)[0]
        marks=struct.unpack_from('<5I',b,100); att=struct.unpack_from('<I',b,128)[0]
        wal=os.path.getsize(p+'-wal')//4120
        out.write(f"{time.time():.2f} mx={mx} backfill={nb} attempted={att} marks={marks} walframes={wal}\n")
    except Exception as e: out.write(f"err {e}\n")
    time.sleep(0.05)
