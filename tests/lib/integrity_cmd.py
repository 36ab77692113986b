#!/usr/bin/env python3
"""integrity_cmd.py: the COMMAND of the integrity soak (tests/integrity.bats).

    integrity_cmd.py KEY RUNLOG

Each run draws a fresh run id and prints an output that only this run of
this key prints: on stdout a header line "CFI KEY RID SIZE" and random bytes
(NULs, invalid UTF-8, no final newline) up to SIZE bytes in all, or nothing
at all; on stderr one line "CFE KEY RID SIZE STATUS ELEN" and ELEN letters.
Sizes and bytes follow from (KEY, RID) alone, so a reader can rebuild the
whole output of the run an id names and compare every byte; the exit status
follows from RID alone. The run id is appended to RUNLOG.

A key's last word picks its sizes: "tiny" (0, or 80 to 400 bytes), "inline"
(1 MiB +- 4 KiB, around the Redis store's inline limit, which counts stdout
and stderr together), "big" (1 MiB + 4 KiB to 3 MiB) or "fixed" (2 MiB and
200 letters on stderr every time: runs that differ in their bytes only, so
that no size check can tell two of them apart).
"""
import os
import random
import string
import sys
import time

INLINE = 1 << 20
LETTERS = string.ascii_letters + string.digits


def status_of(rid):
    """the exit status of run RID: 0 every other time, else 1, 2 or 3"""
    h = int(rid[:8], 16)
    return 0 if h % 2 else 1 + (h >> 1) % 3


def render(key, rid):
    """(stdout, stderr, status) of run RID of KEY"""
    rng = random.Random("%s/%s" % (key, rid))
    cls = key.rsplit("-", 1)[-1]
    if cls == "tiny":
        size = 0 if rng.random() < 0.3 else rng.randint(80, 400)
    elif cls == "inline":
        size = INLINE + rng.randint(-4096, 4096)
    elif cls == "fixed":
        size = 2 * INLINE
    else:
        size = rng.randint(INLINE + 4096, 3 << 20)
    status = status_of(rid)
    out = b""
    if size:
        header = ("CFI %s %s %d\n" % (key, rid, size)).encode()
        out = header + rng.randbytes(size - len(header))
    elen = 200 if cls == "fixed" else rng.randint(0, 3000)
    err = ("CFE %s %s %d %d %d %s\n" % (key, rid, size, status, elen,
                                        "".join(rng.choices(LETTERS, k=elen)))).encode()
    return out, err, status


def write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def main():
    key, runlog = sys.argv[1], sys.argv[2]
    rid = os.urandom(8).hex()
    fd = os.open(runlog, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, (rid + "\n").encode())
    os.close(fd)
    out, err, status = render(key, rid)
    # in two parts with a pause: readers and refreshes overlap the run
    half = len(out) // 2
    pause = random.random() * 0.3
    try:
        write_all(1, out[:half])
        time.sleep(pause / 2)
        write_all(2, err)
        time.sleep(pause / 2)
        write_all(1, out[half:])
    except BrokenPipeError:
        pass
    sys.exit(status)


if __name__ == "__main__":
    main()
