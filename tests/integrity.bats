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
