#!/usr/bin/env python3
"""hostile_launch.py: start a program in a hostile but exactly known state.

    hostile_launch.py [OPTIONS] -- PROGRAM [ARG]...

The child starts from a clean slate (every signal at SIG_DFL, nothing
blocked: python itself ignores SIGPIPE and SIGXFSZ, and a shell may have
ignored SIGINT), then gets what the options ask for, in this order:

  --ignore SIGS      signals set to SIG_IGN (comma list: ALRM,CHLD,...)
  --block SIGS       the signal mask, exactly these
  --user NAME        drop to this user (its group, no supplementary groups)
  --rlimit RES=N     set RLIMIT_RES (NOFILE, NPROC, FSIZE, AS, ...) soft and
                     hard to N (repeatable; after --user, so NPROC counts the
                     new user's processes and exec is not refused)
  --close FDS        close these descriptors (comma list of 0, 1, 2); every
                     descriptor above 2 is closed in any case

then execs PROGRAM (searched in PATH before the fork). The launcher waits for it, at most
--kill-after SECONDS (default 60): past that the child is killed with
SIGKILL and the launcher exits 137 after one line on its own stderr.
Otherwise the launcher exits with the child's status (128+N for signal N).
--time-file FILE receives the child's wall-clock run time in seconds.
--pid-file FILE receives the child's pid as soon as it is forked.
"""
import os
import pwd
import resource
import shutil
import signal
import sys
import time


def signums(spec):
    out = []
    for name in filter(None, spec.split(",")):
        name = name.upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        out.append(getattr(signal, name))
    return out


def usage(msg):
    sys.stderr.write("hostile_launch.py: %s\n" % msg)
    sys.exit(2)


def main():
    args = sys.argv[1:]
    ignore, block, close, rlimits = [], [], [], []
    user = None
    kill_after = 60.0
    time_file = pid_file = None
    while args and args[0] != "--":
        opt = args.pop(0)
        if not args:
            usage("%s needs a value" % opt)
        val = args.pop(0)
        if opt == "--ignore":
            ignore += signums(val)
        elif opt == "--block":
            block += signums(val)
        elif opt == "--close":
            close += [int(x) for x in val.split(",") if x != ""]
        elif opt == "--rlimit":
            res, _, n = val.partition("=")
            rlimits.append((getattr(resource, "RLIMIT_" + res.upper()), int(n)))
        elif opt == "--user":
            user = pwd.getpwnam(val)
        elif opt == "--kill-after":
            kill_after = float(val)
        elif opt == "--time-file":
            time_file = val
        elif opt == "--pid-file":
            pid_file = val
        else:
            usage("unknown option " + opt)
    if not args or len(args) < 2:
        usage("no program")
    argv = args[1:]
    # resolved now: after a low RLIMIT_AS, searching PATH could fail to allocate
    path = shutil.which(argv[0]) if "/" not in argv[0] else argv[0]
    if path is None:
        usage("%s: command not found" % argv[0])

    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            for s in range(1, signal.NSIG):
                if s in (signal.SIGKILL, signal.SIGSTOP):
                    continue
                try:
                    signal.signal(s, signal.SIG_DFL)
                except (OSError, ValueError):
                    pass  # the real-time signals the C library keeps
            for s in ignore:
                signal.signal(s, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_SETMASK, block)
            if user is not None:
                os.setgroups([])
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)
            for res, n in rlimits:
                resource.setrlimit(res, (n, n))
            os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0] + 1)
            for fd in close:
                os.close(fd)
            os.execv(path, argv)
        except BaseException as e:  # noqa: BLE001: report anything, never return
            try:
                os.write(2, ("hostile_launch.py: %s: %s\n" % (argv[0], e)).encode())
            except OSError:
                pass
            os._exit(126)
    if pid_file:
        with open(pid_file, "w") as f:
            f.write("%d\n" % pid)
    deadline = start + kill_after
    while True:
        got, wstatus = os.waitpid(pid, os.WNOHANG)
        if got == pid:
            break
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            sys.stderr.write("hostile_launch.py: %s still ran after %gs: killed\n"
                             % (argv[0], kill_after))
            sys.exit(137)
        time.sleep(0.01)
    if time_file:
        with open(time_file, "w") as f:
            f.write("%.3f\n" % (time.monotonic() - start))
    if os.WIFSIGNALED(wstatus):
        sys.exit(128 + os.WTERMSIG(wstatus))
    sys.exit(os.WEXITSTATUS(wstatus))


main()
