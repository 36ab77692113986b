#!/usr/bin/env bats
# The integrity soak, on both stores: for about 40 s, concurrent callers
# with random options (--refresh, -s, --stale-if-error, --cache-stderr,
# --cache-failures, --tag, --beta 0, TTLs of 1 to 3 s) run, get and
# invalidate (one key, --match, --tag) a dozen keys whose outputs range from
# 0 bytes to 3 MiB around the Redis store's 1 MiB inline limit, with NUL
# bytes and no final newline; and on a key of its own, one caller replaces a
# 2 MiB entry with --refresh again and again while others read it.
#
# COMMAND (tests/lib/integrity_cmd.py) prints an output that names its key
# and run id and follows from them byte for byte, and exits with a status
# that follows from the run id; so every caller checks that its stdout, its
# stderr and its exit status are all of ONE run of ITS key, whole
# (tests/lib/integrity_soak.py). The summary line counts torn, foreign and
# mixed outputs, impossible exit statuses, hung calls and processes left
# running; the test fails on any.
#
# INTEGRITY_SECONDS sets the length of the traffic (default 40).

load lib/common

PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

setup_file() { store_start; }
teardown_file() { store_stop; }
setup() { common_setup; }
teardown() { common_teardown; }

@test "integrity soak: every caller's stdout, stderr and exit status belong to one whole run of its own key, while refreshes and invalidations race" {
	status=0
	"$PY" "$BATS_TEST_DIRNAME/lib/integrity_soak.py" --bin "$CACHEFENCE_BIN" --work "$SCRATCH/soak" \
		--seconds "${INTEGRITY_SECONDS:-40}" --workers 5 --keys 12 --hot-workers 3 >soak.out 2>&1 || status=$?
	# the summary line in the TAP output, failed or not
	head -1 soak.out | sed 's/^/# /' >&3
	cat soak.out
	assert_status 0
}

@test "the soak's judge: an empty stale stdout next to a failed refresh's record is no mix, with or without its own record; a failed run's empty stdout with exit 0 is" {
	# Both runs printed nothing on stdout: the failed refresh's stderr went
	# out live, the stale entry (status 3) was served, its run unnamed. The
	# judge once pinned the empty stdout on the failed run and cried "mixed".
	"$PY" - "$BATS_TEST_DIRNAME/lib" <<-'PY'
		import os, sys
		sys.path.insert(0, sys.argv[1])
		from integrity_cmd import render, status_of
		from integrity_soak import Soak
		key = "k00-tiny"
		def empty_run(status):
		    while True:
		        rid = os.urandom(8).hex()
		        if status_of(rid) == status and render(key, rid)[0] == b"":
		            return rid
		s = Soak({"bin": "unused", "work": os.environ["BATS_TEST_TMPDIR"] + "/judge"})
		failed = empty_run(2)
		warning = b"cachefence: warning: refresh of key=k00-tiny failed (status 2), serving stale\n"
		s.judge_run(key, ["-t", "2s"], 3, b"", render(key, failed)[1] + warning)
		assert s.counts["mixed"] == 0, s.problems
		# the same with the stale entry's stderr kept (--cache-stderr when it
		# was stored): its record, and the exit status, are its run's
		stale = empty_run(0)
		s.judge_run(key, ["-t", "2s"], 0, b"", render(key, failed)[1] + warning + render(key, stale)[1])
		assert s.counts["mixed"] == 0, s.problems
		s.judge_run(key, ["-t", "2s"], 2, b"", render(key, failed)[1] + warning + render(key, stale)[1])
		assert s.counts["mixed"] == 1, s.problems
		s.counts["mixed"] = 0
		s.judge_run(key, ["-t", "2s"], 0, b"", render(key, empty_run(2))[1])
		assert s.counts["mixed"] == 1, s.problems
	PY
}
