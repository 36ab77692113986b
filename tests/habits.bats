#!/usr/bin/env bats
# Habits a new user brings (issue #12): a Redis database index the server
# does not have.

load lib/common

setup_file() { store_start; }
teardown_file() { store_stop; }
setup() { common_setup; }
teardown() {
	[[ -n ${REDIS_PORT:-} ]] && rcli ACL DELUSER cfnoconfig >/dev/null 2>&1
	common_teardown
}

# the host's clock in milliseconds
now_ms() {
	date +%s%3N
}

# a stats counter of the store, from stats --json
stat() {
	cf stats --json | jq -r --arg n "$1" '.[$n]'
}

# cf_to NAME ARGS..., and the time it took in ms in $elapsed
timed_cf_to() {
	local start
	start=$(now_ms)
	cf_to "$@"
	elapsed=$(($(now_ms) - start))
}

# fail unless the last timed_cf_to took less than MS milliseconds, saying WHAT
assert_faster() {
	((elapsed < $1)) && return 0
	echo "$2 took ${elapsed}ms, expected under $1ms" >&2
	return 1
}

# --- a database the server does not have ------------------------------------------------

@test "a Redis database the server does not have is exit 125 and one line naming the range, for run, get, ping and list" {
	require_redis
	cmd=$(counter_cmd db)
	url=redis://127.0.0.1:$REDIS_PORT/99
	want="cachefence: $url: database 99 does not exist on this server (it has 16: see 'databases' in redis.conf); use /0 to /15"

	cf_to run -u "$url" -t 1m -- "$cmd"
	assert_usage_error run
	assert_eq "$(cat run.err)" "$want" "the line of run"
	cf_to closed -u "$url" -t 1m --fail-closed -- "$cmd"
	assert_usage_error closed
	assert_eq "$(cat closed.err)" "$want" "the line of run --fail-closed"
	assert_eq "$(runs db)" 0 "runs of COMMAND"

	for sub in "get k" ping list; do
		# shellcheck disable=SC2086 # the subcommand and its operand are words
		cf_to sub -u "$url" $sub
		assert_usage_error sub
		assert_eq "$(cat sub.err)" "$want" "the line of $sub"
	done

	# a database it has works as before
	cf_to ok -u "redis://127.0.0.1:$REDIS_PORT/15" -t 1m -k db15 -- "$cmd"
	assert_status 0 ok
	assert_bytes ok.out 'db ran\n'
	assert_eq "$(rcli -n 15 EXISTS 'cachefence:{db15}')" 1 "the entry in database 15"
}

@test "a missing database on a unix socket is named in the URL's own ?db= spelling" {
	require_redis
	[[ -n $REDIS_SOCK ]] || skip "the socket path would be too long"
	cmd=$(counter_cmd db)

	cf_to run -u "unix://$REDIS_SOCK?db=42" -t 1m -- "$cmd"
	assert_usage_error run
	assert_eq "$(cat run.err)" "cachefence: unix://$REDIS_SOCK?db=42: database 42 does not exist on this server (it has 16: see 'databases' in redis.conf); use ?db=0 to ?db=15" "the line"
	assert_eq "$(runs db)" 0 "runs of COMMAND"
}

@test "a missing database with a user who may not run CONFIG is still one line and 125, with the default range" {
	require_redis
	[[ $(rcli ACL SETUSER cfnoconfig reset on '>pw' '~*' allchannels +@all -config) == OK ]]
	cmd=$(counter_cmd db)
	url=redis://cfnoconfig:pw@127.0.0.1:$REDIS_PORT/99

	cf_to run -u "$url" -t 1m -- "$cmd"
	assert_usage_error run
	assert_eq "$(cat run.err)" "cachefence: redis://cfnoconfig:***@127.0.0.1:$REDIS_PORT/99: database 99 does not exist on this server (see 'databases' in its redis.conf: 16 by default, /0 to /15)" "the line"
	assert_eq "$(runs db)" 0 "runs of COMMAND"
}
