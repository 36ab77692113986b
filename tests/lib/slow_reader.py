#!/usr/bin/env python3
"""slow_reader.py [--nonblock] [--stall SECONDS] [--rate BYTES_PER_SECOND] OUT -- COMMAND...

Run COMMAND with its stdout a pipe that this script reads slowly, the way
a pager or a congested consumer does, and copy what it reads to OUT.
--nonblock sets O_NONBLOCK on the pipe's write end before COMMAND starts
(a descriptor a caller may hand over: the flag is shared, so COMMAND sees
EAGAIN whenever the pipe is full). --stall waits before the first read;
--rate bounds the reading speed after it. Prints nothing; exits with
COMMAND's status (128+S when killed by S)."""
import fcntl
import os
import subprocess
import sys
import time

args = sys.argv[1:]
nonblock, stall, rate = False, 0.0, 0
while args and args[0] != "--" and args[0].startswith("--"):
    opt = args.pop(0)
    if opt == "--nonblock":
        nonblock = True
    elif opt == "--stall":
        stall = float(args.pop(0))
    elif opt == "--rate":
        rate = int(args.pop(0))
    else:
        sys.exit("slow_reader.py: unknown option " + opt)
out_path = args.pop(0)
assert args.pop(0) == "--"

r, w = os.pipe()
if nonblock:
    fcntl.fcntl(w, fcntl.F_SETFL, fcntl.fcntl(w, fcntl.F_GETFL) | os.O_NONBLOCK)
proc = subprocess.Popen(args, stdout=w, close_fds=True)
os.close(w)
time.sleep(stall)
start = time.monotonic()
got = 0
with open(out_path, "wb") as out:
    while True:
        piece = os.read(r, 4096 if rate else 65536)
        if not piece:
            break
        out.write(piece)
        got += len(piece)
        if rate:
            ahead = got / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
status = proc.wait()
sys.exit(128 - status if status < 0 else status)
