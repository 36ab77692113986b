#!/usr/bin/env bats
# The Redis store under hostile conditions (issue #11): secrets in URLs that
# do not take them, names that try to collide, a refresh racing a large read,
# slow and trickling links (tests/lib/relay.py), and servers or ACL users that
# refuse part of what a run needs. Each ends in a clean run, a clean miss or
# one line that names the cause: never bytes of two runs, never a hang past
# --redis-timeout, never a message that sends the operator the wrong way.

load lib/common

setup_file() { store_start; }
teardown_file() { store_stop; }
setup() {
	require_redis
	common_setup
}
teardown() { common_teardown; }

# --- secrets in error lines ------------------------------------------------------------

@test "an error line about a unix: URL hides a password given as user info or as a query parameter" {
	for url in 'unix://:hunter2@/tmp/r.sock' 'unix://me:hunter2@/tmp/r.sock' \
		'unix:///tmp/r.sock?password=hunter2' 'unix:///tmp/r.sock?db=1&password=hunter2'; do
		cf_to url -u "$url" ping
		assert_usage_error url
		if grep -q hunter2 url.err; then
			echo "the password shows in: $(cat url.err)" >&2
			false
		fi
		grep -qF '***' url.err || { echo "no mask in: $(cat url.err)" >&2; false; }
		CACHEFENCE_URL=$url cf_to env -t 1m -- echo ran
		assert_usage_error env
		! grep -q hunter2 env.err || { echo "the password shows in: $(cat env.err)" >&2; false; }
	done
}
