#!/usr/bin/env python3
"""pipe_reader.py: run a program with its stdout on a pipe this script
reads, badly: late, slowly, with the pipe non-blocking or already full.

    pipe_reader.py [OPTIONS] -- PROGRAM [ARG]...

  --out FILE       where the bytes read go (required)
  --err FILE       the program's stderr (default: this script's stderr)
  --nonblock       set O_NONBLOCK on the pipe's write end (the program's
                   stdout shares that open file description, so its writes
                   can fail with EAGAIN)
  --prefill        fill the pipe to the brim before the program starts; those
                   bytes ("P" each) are read and checked first, not written
                   to --out
  --delay S        read nothing for S seconds after the start (default 0.5)
  --slow S         then read 4 KiB every 5 ms for S seconds (default 1)
  --kill-after S   kill the program (SIGKILL) if it has not ended, or the pipe
                   is still open, S seconds after the start (default 120)

Exits with the program's status (128+N for signal N), or 137 after a kill,
or 3 when the prefilled bytes did not come back intact.
"""
import fcntl
import os
import select
import signal
import subprocess
import sys
import time


def main():
    args = sys.argv[1:]
    out = err = None
    nonblock = prefill = False
    delay, slow, kill_after = 0.5, 1.0, 120.0
    while args and args[0] != "--":
        opt = args.pop(0)
        if opt == "--nonblock":
            nonblock = True
        elif opt == "--prefill":
            prefill = True
        elif opt in ("--out", "--err", "--delay", "--slow", "--kill-after"):
            val = args.pop(0)
            if opt == "--out":
                out = val
            elif opt == "--err":
                err = val
            elif opt == "--delay":
                delay = float(val)
            elif opt == "--slow":
                slow = float(val)
            else:
                kill_after = float(val)
        else:
            sys.exit("pipe_reader.py: unknown option " + opt)
    argv = args[1:]
    if not out or not argv:
        sys.exit("pipe_reader.py: --out FILE -- PROGRAM [ARG]... needed")

    r, w = os.pipe()
    flags = fcntl.fcntl(w, fcntl.F_GETFL)
    filled = 0
    if prefill:
        fcntl.fcntl(w, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        while True:
            try:
                filled += os.write(w, b"P" * 4096)
            except BlockingIOError:
                break
    fcntl.fcntl(w, fcntl.F_SETFL, (flags | os.O_NONBLOCK) if nonblock else flags)

    start = time.monotonic()
    errf = open(err, "wb") if err else None
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=w, stderr=errf)
    os.close(w)
    deadline = start + kill_after

    def read_some(n, timeout):
        ready, _, _ = select.select([r], [], [], max(0.0, timeout))
        if not ready:
            return None
        return os.read(r, n)

    killed = False
    with open(out, "wb") as f:
        time.sleep(delay)
        got_prefill = b""
        eof = False
        while len(got_prefill) < filled:
            chunk = read_some(filled - len(got_prefill), deadline - time.monotonic())
            if not chunk:
                eof = True
                break
            got_prefill += chunk
        slow_until = time.monotonic() + slow
        while not eof:
            now = time.monotonic()
            if now >= deadline:
                killed = True
                break
            slow_phase = now < slow_until
            chunk = read_some(4096 if slow_phase else 1 << 20, deadline - now)
            if chunk is None:
                continue
            if not chunk:
                break
            f.write(chunk)
            if slow_phase:
                time.sleep(0.005)
    os.close(r)
    if killed:
        child.kill()
    try:
        status = child.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        killed = True
    if killed:
        sys.stderr.write("pipe_reader.py: %s still ran after %gs: killed\n" % (argv[0], kill_after))
        sys.exit(137)
    if prefill and got_prefill != b"P" * filled:
        sys.stderr.write("pipe_reader.py: the %d prefilled bytes came back as %d other bytes\n"
                         % (filled, len(got_prefill)))
        sys.exit(3)
    sys.exit(128 - status if status < 0 else status)


main()
