#!/usr/bin/env python3
"""integrity_soak.py: concurrent callers against one store, each checking
that what it got belongs to ONE run of ITS key (tests/integrity.bats).

    integrity_soak.py --bin CACHEFENCE --work DIR [--seconds S] [--workers N]
                      [--keys N] [--hot-workers N]

The store is the one CACHEFENCE_URL names. COMMAND is integrity_cmd.py,
whose every byte and exit status follow from (key, run id), so a caller can
tell exactly which run it was handed. For S seconds, N worker threads call:
run (random options: --refresh, -s, --stale-if-error, --cache-stderr,
--cache-failures, --tag, --beta 0, short TTLs), get, invalidate KEY,
invalidate --match and invalidate --tag; and --hot-workers more (3) on a
key of its own: one replaces its 2 MiB entry with --refresh again and again,
the others read it meanwhile. Each result is judged:

  torn     stdout or a stderr record that is not a whole output of any run
           (cut, extended, bytes changed), or stray bytes on stderr
  foreign  bytes of another key's run
  mixed    stdout, stderr and exit status not all of the same run
  status   an exit status no run gives: 124, 125, a signal, or get and
           invalidate answering other than 0 or 1
  hung     a call that ran for more than 60 s

One exception is not a mix: without --cache-stderr, a refresh inside the
entry's stale-if-error window that fails writes its own stderr live, and
then the stale entry is served with a "serving stale" warning; that failed
run's record is allowed next to the stale output (it is the caller's
diagnostic, not an entry).

When the time is up it waits for detached refreshes, then checks every key
once more (get, and inspect's size and exit status against get's run). It
prints one summary line and the first problems, and exits 1 if there was any.
"""
import json
import os
import random
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from integrity_cmd import render, status_of  # noqa: E402

CALL_BOUND = 60


class Soak:
    def __init__(self, args):
        self.bin = args["bin"]
        self.work = args["work"]
        self.seconds = float(args.get("seconds", 40))
        self.workers = int(args.get("workers", 6))
        nkeys = int(args.get("keys", 12))
        classes = ["tiny", "inline", "big", "fixed"]
        self.keys = ["k%02d-%s" % (i, classes[i % len(classes)]) for i in range(nkeys)]
        # a key of its own for a refresher and readers (0: none)
        self.hot = "hot-fixed"
        self.hot_workers = int(args.get("hot-workers", 3))
        self.rundir = os.path.join(self.work, "run")
        os.makedirs(self.rundir, exist_ok=True)
        self.runlog = os.path.join(self.work, "runs.log")
        self.cmd = os.path.join(os.path.dirname(os.path.abspath(__file__)), "integrity_cmd.py")
        self.lock = threading.Lock()
        self.counts = {k: 0 for k in ("calls", "run", "get", "invalidate", "fail_open",
                                      "stale_served", "torn", "foreign", "mixed", "status",
                                      "hung", "leftover")}
        self.problems = []

    # --- bookkeeping -------------------------------------------------------------

    def count(self, what, n=1):
        with self.lock:
            self.counts[what] += n

    def problem(self, kind, text):
        with self.lock:
            self.counts[kind] += 1
            if len(self.problems) < 30:
                self.problems.append("%s: %s" % (kind, text))

    def call(self, argv):
        """run cachefence ARGV in the run directory: (status, out, err)"""
        try:
            p = subprocess.run([self.bin] + argv, cwd=self.rundir, stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=CALL_BOUND)
        except subprocess.TimeoutExpired:
            return None, b"", b""
        st = p.returncode
        return (128 - st if st < 0 else st), p.stdout, p.stderr

    # --- judging -------------------------------------------------------------------

    @staticmethod
    def parse_stdout(out):
        """(key, rid) named by a stdout's header, or None when it has none"""
        nl = out.find(b"\n", 0, 200)
        if not out.startswith(b"CFI ") or nl < 0:
            return None
        parts = out[4:nl].split(b" ")
        if len(parts) != 3:
            return None
        try:
            return parts[0].decode(), parts[1].decode()
        except UnicodeDecodeError:
            return None

    def split_stderr(self, err):
        """(records as (key, rid, line), cachefence lines, stray lines)"""
        records, cf, stray = [], [], []
        lines = err.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        elif lines:
            stray.append(lines.pop())  # a last line cut short
        for line in lines:
            if line.startswith(b"cachefence: "):
                cf.append(line)
            elif line.startswith(b"CFE "):
                parts = line.split(b" ")
                try:
                    records.append((parts[1].decode(), parts[2].decode(), line + b"\n"))
                except (IndexError, UnicodeDecodeError):
                    stray.append(line)
            else:
                stray.append(line)
        return records, cf, stray

    def check_record(self, what, key, rkey, rid, line):
        """a stderr record: of KEY, and whole; False after noting a problem"""
        if rkey != key:
            self.problem("foreign", "%s: stderr of key %s's run %s" % (what, rkey, rid))
            return False
        if render(key, rid)[1] != line:
            self.problem("torn", "%s: stderr record of run %s is not whole (%d bytes)"
                         % (what, rid, len(line)))
            return False
        return True

    def check_stdout(self, what, key, out):
        """the run id of a whole stdout of KEY, "" for an empty one, None on a problem"""
        if not out:
            if not key.endswith("-tiny"):
                self.problem("torn", "%s: empty stdout for a key whose runs print 1 MiB or more"
                             % what)
                return None
            return ""
        named = self.parse_stdout(out)
        if named is None:
            self.problem("torn", "%s: stdout of %d bytes without a run header: %r"
                         % (what, len(out), out[:60]))
            return None
        okey, rid = named
        if okey != key:
            self.problem("foreign", "%s: stdout of key %s's run %s" % (what, okey, rid))
            return None
        want = render(key, rid)[0]
        if out != want:
            at = next((i for i, (a, b) in enumerate(zip(out, want)) if a != b), min(len(out), len(want)))
            self.problem("torn", "%s: stdout of run %s is %d bytes, the run printed %d (differs at %d)"
                         % (what, rid, len(out), len(want), at))
            return None
        return rid

    def judge_run(self, key, opts, st, out, err):
        what = "run %s %s" % (key, " ".join(opts))
        if st is None:
            self.problem("hung", what)
            return
        if st >= 124:
            self.problem("status", "%s: exit %d after %d bytes on stdout, stderr %r"
                         % (what, st, len(out), err[-300:]))
            return
        records, cf, stray = self.split_stderr(err)
        if stray:
            self.problem("torn", "%s: stray stderr %r" % (what, stray[0][:100]))
            return
        if any(b"uncached" in line for line in cf):
            self.count("fail_open")
        stale_served = any(b"stale" in line for line in cf)
        if stale_served:
            self.count("stale_served")
        rid = self.check_stdout(what, key, out)
        if rid is None:
            return
        for rkey, rrid, line in records:
            if not self.check_record(what, key, rkey, rrid, line):
                return
        # (the stale-if-error window stored with the entry counts, not the
        # caller's option)
        allowed_failed = stale_served and "--cache-stderr" not in opts
        if rid == "":
            self.judge_empty(what, key, st, records, allowed_failed, cf)
            return
        others = [r for r in records if r[1] != rid]
        if len([r for r in records if r[1] == rid]) > 1:
            self.problem("mixed", "%s: stderr of run %s twice" % (what, rid))
            return
        for rkey, rrid, line in others:
            if not (allowed_failed and status_of(rrid) != 0 and len(others) == 1):
                self.problem("mixed", "%s: stdout of run %s, stderr of run %s%s"
                             % (what, rid, rrid, "; said: " + repr(cf) if cf else ""))
                return
        if st != status_of(rid):
            self.problem("mixed", "%s: stdout of run %s (status %d) with exit %d"
                         % (what, rid, status_of(rid), st))

    @staticmethod
    def one_run_explains(key, st, records):
        """do RECORDS (of one run, or none) explain an empty stdout and exit ST?"""
        rids = {r[1] for r in records}
        if len(records) > 1 or len(rids) > 1:
            return False
        if not rids:
            return st in (0, 1, 2, 3)  # a run that printed nothing and was not kept
        rid = rids.pop()
        return render(key, rid)[0] == b"" and st == status_of(rid)

    def judge_empty(self, what, key, st, records, allowed_failed, cf):
        """An empty stdout names no run: the records must. Either they are
        of one run that printed nothing and exited st, or (a stale entry
        served after a failed refresh whose stderr went out live) one is the
        failed refresh's and the rest are the stale entry's run's."""
        if self.one_run_explains(key, st, records):
            return
        if allowed_failed:
            for i, failed in enumerate(records):
                rest = records[:i] + records[i + 1:]
                if status_of(failed[1]) != 0 and self.one_run_explains(key, st, rest):
                    return
        self.problem("mixed", "%s: empty stdout with exit %d, stderr of runs %s%s"
                     % (what, st, ", ".join(r[1] for r in records) or "(none)",
                        "; said: " + repr(cf) if cf else ""))

    def judge_get(self, key, st, out, err):
        what = "get %s" % key
        if st is None:
            self.problem("hung", what)
            return
        records, cf, stray = self.split_stderr(err)
        if records or stray:
            self.problem("torn", "%s: stderr %r" % (what, err[:100]))
        if st == 1:
            if out:
                self.problem("torn", "%s: exit 1 with %d bytes on stdout" % (what, len(out)))
        elif st == 0:
            return self.check_stdout(what, key, out)
        else:
            self.problem("status", "%s: exit %d, stderr %r" % (what, st, err[-300:]))
        return None

    # --- the callers ---------------------------------------------------------------------

    def run_options(self, rng, key):
        # the fixed keys live longer, so that their large hits race refreshes
        ttl = 10 if key.endswith("-fixed") else rng.randint(1, 3)
        opts = ["-t", "%ds" % ttl]
        if rng.random() < 0.4:
            opts += ["-s", "2s"]
        if rng.random() < 0.3:
            opts += ["--stale-if-error", "5s"]
        if rng.random() < 0.5:
            opts.append("--cache-stderr")
        if rng.random() < 0.5:
            opts.append("--cache-failures")
        if rng.random() < (0.3 if key.endswith(("-big", "-fixed")) else 0.12):
            opts.append("--refresh")
        if rng.random() < 0.3:
            opts += ["--tag", "t%d" % (self.keys.index(key) % 3)]
        if rng.random() < 0.5:
            opts += ["--beta", "0"]
        return opts

    def worker(self, seed, deadline):
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            # a third of the calls on the fixed keys: hits that race refreshes
            fixed = [k for k in self.keys if k.endswith("-fixed")]
            key = rng.choice(fixed if fixed and rng.random() < 0.33 else self.keys)
            r = rng.random()
            self.count("calls")
            if r < 0.72:
                opts = self.run_options(rng, key)
                st, out, err = self.call(["--redis-timeout", "5s", "run", "-k", key] + opts +
                                         ["--", sys.executable, self.cmd, key, self.runlog])
                self.count("run")
                self.judge_run(key, opts, st, out, err)
            elif r < 0.88:
                st, out, err = self.call(["get", key])
                self.count("get")
                self.judge_get(key, st, out, err)
            else:
                self.count("invalidate")
                if r < 0.95:
                    argv = ["invalidate", key]
                elif r < 0.98:
                    argv = ["invalidate", "--tag", "t%d" % rng.randint(0, 2)]
                else:
                    argv = ["invalidate", "--match", "k0*"]
                st, out, err = self.call(argv)
                if st is None:
                    self.problem("hung", " ".join(argv))
                elif st not in (0, 1):  # 1: nothing to invalidate
                    self.problem("status", "%s: exit %d, stderr %r" % (" ".join(argv), st, err[-300:]))

    # --- the end ---------------------------------------------------------------------------

    def procs_in_rundir(self):
        pids = []
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    if os.readlink("/proc/%s/cwd" % p) == self.rundir:
                        pids.append(int(p))
                except OSError:
                    pass
        return pids

    def settle(self):
        """wait (30 s at most) for detached refreshes; kill and count what is left"""
        end = time.monotonic() + 30
        while self.procs_in_rundir() and time.monotonic() < end:
            time.sleep(0.2)
        for pid in self.procs_in_rundir():
            self.problem("leftover", "pid %d still runs 30 s after the last call" % pid)
            try:
                os.kill(pid, 9)
            except OSError:
                pass

    def final_check(self):
        for key in self.keys + ([self.hot] if self.hot_workers else []):
            st, out, err = self.call(["get", key])
            rid = self.judge_get(key, st, out, err)
            if st != 0 or rid is None:
                continue
            st, js, err = self.call(["inspect", "--json", key])
            try:
                info = json.loads(js)
            except ValueError:
                self.problem("status", "inspect --json %s: exit %s, %r" % (key, st, js[:200]))
                continue
            if info.get("size") is None:
                continue  # expired between get and inspect
            if rid:
                want_st = status_of(rid)
                err_len = len(render(key, rid)[1])
                sizes = (len(out), len(out) + err_len)
                if info["exit_status"] != want_st or info["size"] not in sizes:
                    self.problem("mixed", "the entry of %s: get gives run %s (status %d, %d bytes), "
                                 "inspect says status %s, size %s"
                                 % (key, rid, want_st, len(out), info["exit_status"], info["size"]))

    def hot_worker(self, seed, deadline, refresher):
        """The hot key: one refresher replaces its entry again and again
        (stdout, stderr and status all stored), readers hit it meanwhile."""
        rng = random.Random(seed)
        key = self.hot
        opts = ["-t", "1h", "--cache-stderr", "--cache-failures"]
        while time.monotonic() < deadline:
            self.count("calls")
            if refresher or rng.random() < 0.7:
                o = opts + (["--refresh"] if refresher else [])
                st, out, err = self.call(["--redis-timeout", "5s", "run", "-k", key] + o +
                                         ["--", sys.executable, self.cmd, key, self.runlog])
                self.count("run")
                self.judge_run(key, o, st, out, err)
            else:
                st, out, err = self.call(["get", key])
                self.count("get")
                self.judge_get(key, st, out, err)

    def main(self):
        deadline = time.monotonic() + self.seconds
        threads = [threading.Thread(target=self.worker, args=(i, deadline))
                   for i in range(self.workers)]
        threads += [threading.Thread(target=self.hot_worker, args=(100 + i, deadline, i == 0))
                    for i in range(self.hot_workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.settle()
        self.final_check()
        runs = 0
        if os.path.exists(self.runlog):
            with open(self.runlog) as f:
                runs = sum(1 for _ in f)
        c = self.counts
        print("integrity: calls=%d (run %d, get %d, invalidate %d) COMMAND runs=%d fail-open=%d "
              "stale-served=%d | torn=%d foreign=%d mixed=%d status=%d hung=%d leftover=%d"
              % (c["calls"], c["run"], c["get"], c["invalidate"], runs, c["fail_open"],
                 c["stale_served"], c["torn"], c["foreign"], c["mixed"], c["status"],
                 c["hung"], c["leftover"]))
        for p in self.problems:
            print("  " + p)
        bad = sum(c[k] for k in ("torn", "foreign", "mixed", "status", "hung", "leftover"))
        return 1 if bad else 0


def parse(argv):
    args = {}
    while argv:
        opt = argv.pop(0)
        if not opt.startswith("--") or not argv:
            sys.exit("integrity_soak.py: bad arguments near " + opt)
        args[opt[2:]] = argv.pop(0)
    for need in ("bin", "work"):
        if need not in args:
            sys.exit("integrity_soak.py: --%s is required" % need)
    return args


if __name__ == "__main__":
    sys.exit(Soak(parse(sys.argv[1:])).main())
