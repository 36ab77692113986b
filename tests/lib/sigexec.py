#!/usr/bin/env python3
"""sigexec.py [--default SIG]... [--ignore SIG]... [--block SIG]... -- COMMAND [ARG]...

Exec COMMAND with SIGINT, SIGPIPE and SIGXFSZ at their defaults (python
changes them at start), then with each --default SIG at its default, each
--ignore SIG ignored and each --block SIG blocked, the way nohup(1), a shell's background job or a
service manager hands a process its signals. SIG is a name without SIG
(HUP, PIPE, USR1, CHLD)."""
import os
import signal
import sys

args = sys.argv[1:]
for s in (signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ):
    signal.signal(s, signal.SIG_DFL)
block = set()
while args and args[0] != "--":
    opt, sig = args[0], getattr(signal, "SIG" + args[1])
    args = args[2:]
    if opt == "--default":
        signal.signal(sig, signal.SIG_DFL)
    elif opt == "--ignore":
        signal.signal(sig, signal.SIG_IGN)
    elif opt == "--block":
        block.add(sig)
    else:
        sys.exit("sigexec.py: unknown option " + opt)
args.pop(0)
signal.pthread_sigmask(signal.SIG_BLOCK, block)
os.execvp(args[0], args)
