#!/usr/bin/env bats
# Habits a new user brings (issue #12): a Redis database index the server
# does not have, a failing backend under --stale-if-error without -s (the
# back-off), and bkt's --warm. Timing is bounded generously, and each
# "at once" is backed by a count of COMMAND's runs.

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

# --- the back-off of a failing stale-if-error refresh ----------------------------------------

@test "after a stale-if-error refresh fails, the next callers get the old bytes and status at once without running COMMAND" {
	cmd=$(counter_cmd sie 'if [ $n -eq 1 ]; then echo "good $n"; exit 0; fi; sleep 1; echo "bad $n"; exit 3')

	cf_to first -t 1s --stale-if-error 1m -k sie -- "$cmd"
	assert_status 0 first
	sleep 1.5
	stale_before=$(stat stale_served)

	# the first caller past the TTL refreshes, fails after 1 s, gets the old entry
	timed_cf_to lead -t 1s --stale-if-error 1m -k sie -- "$cmd"
	assert_status 0 lead
	assert_bytes lead.out 'good 1\n'
	assert_eq "$(cat lead.err)" 'cachefence: warning: refresh of key=sie failed (status 3), serving stale' "stderr"
	((elapsed >= 1000)) || { echo "the refresh took ${elapsed}ms: COMMAND did not run" >&2; false; }
	assert_eq "$(runs sie)" 2 "runs of COMMAND after the failed refresh"

	# the next four: the old entry at once, COMMAND left alone
	for i in 1 2 3 4; do
		timed_cf_to "next$i" -t 1s --stale-if-error 1m -k sie -- "$cmd"
		assert_status 0 "next$i"
		assert_bytes "next$i.out" 'good 1\n'
		assert_empty "next$i.err"
		assert_faster 500 "caller $i after the failed refresh"
	done
	assert_eq "$(runs sie)" 2 "runs of COMMAND after four more callers"
	assert_eq "$(($(stat stale_served) - stale_before))" 4 "stale_served"
}

@test "when the back-off has passed, one caller runs COMMAND again; a success replaces the entry" {
	# run 2 and 3 fail at once (a back-off of 1 s each), run 4 succeeds
	cmd=$(counter_cmd sie 'case $n in 1|4) echo "good $n"; exit 0 ;; esac; echo "bad $n"; exit 3')

	cf_to first -t 1s --stale-if-error 1m -k retry -- "$cmd"
	sleep 1.5
	cf_to a -t 1s --stale-if-error 1m -k retry -- "$cmd"
	assert_bytes a.out 'good 1\n'
	cf_to b -t 1s --stale-if-error 1m -k retry -- "$cmd"
	assert_bytes b.out 'good 1\n'
	assert_eq "$(runs sie)" 2 "runs of COMMAND inside the back-off"

	# past the back-off (1 s, more if the failed run was slow): one retry, failing again
	sleep 2.5
	cf_to c -t 1s --stale-if-error 1m -k retry -- "$cmd"
	assert_status 0 c
	assert_bytes c.out 'good 1\n'
	grep -q 'refresh of key=retry failed (status 3), serving stale' c.err
	cf_to d -t 1s --stale-if-error 1m -k retry -- "$cmd"
	assert_bytes d.out 'good 1\n'
	assert_eq "$(runs sie)" 3 "runs of COMMAND after the first back-off"

	# past the second back-off: the retry succeeds and its result is the entry
	sleep 2.5
	cf_to e -t 1s --stale-if-error 1m -k retry -- "$cmd"
	assert_status 0 e
	assert_bytes e.out 'good 4\n'
	assert_empty e.err
	cf_to f -t 1s --stale-if-error 1m -k retry -- "$cmd"
	assert_bytes f.out 'good 4\n'
	assert_eq "$(runs sie)" 4 "runs of COMMAND"
}

@test "a success ends the back-off: the new entry's first failed refresh runs COMMAND at once" {
	# run 2 fails after 0.5 s (a back-off of about 5 s), run 3 succeeds, run 4 fails
	cmd=$(counter_cmd sie 'case $n in 1|3) echo "good $n"; exit 0 ;; 2) sleep 0.5 ;; esac; echo "bad $n"; exit 3')

	cf_to first -t 1s --stale-if-error 1m -k clear -- "$cmd"
	sleep 1.5
	cf_to a -t 1s --stale-if-error 1m -k clear -- "$cmd"
	assert_bytes a.out 'good 1\n'
	cf_to b -t 1s --stale-if-error 1m -k clear -- "$cmd"
	assert_bytes b.out 'good 1\n'
	assert_eq "$(runs sie)" 2 "runs of COMMAND inside the back-off"

	# --refresh ignores the back-off; its success stores a new entry
	cf_to refresh -t 1s --stale-if-error 1m --refresh -k clear -- "$cmd"
	assert_status 0 refresh
	assert_bytes refresh.out 'good 3\n'

	# the new entry past its TTL, inside the old back-off: refreshed at once
	sleep 1.5
	cf_to c -t 1s --stale-if-error 1m -k clear -- "$cmd"
	assert_status 0 c
	assert_bytes c.out 'good 3\n'
	grep -q 'refresh of key=clear failed (status 3), serving stale' c.err
	assert_eq "$(runs sie)" 4 "runs of COMMAND"
}

# --- --warm ----------------------------------------------------------------------------------

@test "--warm on a miss returns at once with nothing printed and exit 0; the entry appears within the command's time" {
	cmd=$(counter_cmd slow 'sleep 2; echo "value $n"')

	timed_cf_to warm --warm -t 1m -k warm -- "$cmd"
	assert_status 0 warm
	assert_empty warm.out
	assert_empty warm.err
	assert_faster 1500 "--warm on a miss"

	for i in $(seq 100); do
		cf_to got get warm
		[[ $status == 0 ]] && break
		sleep 0.1
	done
	assert_status 0 got
	assert_bytes got.out 'value 1\n'
	assert_eq "$(runs slow)" 1 "runs of COMMAND"
}

@test "--warm on a fresh entry prints nothing, exits 0 and does not run COMMAND" {
	cmd=$(counter_cmd fresh 'echo "value $n"')

	cf_to first -t 1h -k fresh -- "$cmd"
	assert_bytes first.out 'value 1\n'
	cf_to warm --warm --beta 0 -t 1h -k fresh -- "$cmd"
	assert_status 0 warm
	assert_empty warm.out
	assert_empty warm.err
	sleep 1
	assert_eq "$(runs fresh)" 1 "runs of COMMAND"
	cf_to got get fresh
	assert_bytes got.out 'value 1\n'
}

@test "--warm while another caller runs COMMAND exits 0 at once without running it" {
	cmd=$(counter_cmd held "$(hold_until "$SCRATCH/go"); echo \"value \$n\"")

	cf_bg leader -t 1h -k held -- "$cmd"
	wait_for_file "$SCRATCH/held.runs" 30
	timed_cf_to warm --warm -t 1h -k held -- "$cmd"
	assert_status 0 warm
	assert_empty warm.out
	assert_empty warm.err
	assert_faster 1500 "--warm while the lock is held"
	touch "$SCRATCH/go"
	assert_eq "$(bg_status leader 30)" 0 "the leader's status"
	assert_bytes leader.out 'value 1\n'
	assert_eq "$(runs held)" 1 "runs of COMMAND"
}

@test "--warm --refresh refreshes even a fresh entry, in the background" {
	cmd=$(counter_cmd again 'sleep 1; echo "value $n"')

	cf_to first -t 1h -k again -- "$cmd"
	assert_bytes first.out 'value 1\n'
	timed_cf_to warm --warm --refresh -t 1h -k again -- "$cmd"
	assert_status 0 warm
	assert_empty warm.out
	assert_empty warm.err
	assert_faster 900 "--warm --refresh"

	for i in $(seq 100); do
		cf_to got get again
		[[ $(cat got.out) == 'value 2' ]] && break
		sleep 0.1
	done
	assert_bytes got.out 'value 2\n'
	assert_eq "$(runs again)" 2 "runs of COMMAND"
}

@test "--warm with the store out of reach warns and exits 0 without running COMMAND; with --fail-closed it is 125" {
	require_redis
	cmd=$(counter_cmd gone)
	port=$((REDIS_PORT == 65535 ? 65534 : REDIS_PORT + 1))
	port_is_free "$port" || skip "port $port is in use"

	cf_to warm -u "redis://127.0.0.1:$port" --warm -t 1m -- "$cmd"
	assert_status 0 warm
	assert_empty warm.out
	assert_one_line warm.err
	grep -q 'nothing warmed (--warm)' warm.err
	cf_to closed -u "redis://127.0.0.1:$port" --warm --fail-closed -t 1m -- "$cmd"
	assert_usage_error closed
	sleep 0.5
	assert_eq "$(runs gone)" 0 "runs of COMMAND"
}
