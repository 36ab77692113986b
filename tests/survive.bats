#!/usr/bin/env bats
# Leaders and waiters that survive (SPEC 9.5, 4.1): a Redis restart under a
# leader and its waiters is a reconnect, not a stampede of fail-open runs; a
# leader whose connection is gone (SIGKILL) is taken over at once, not after
# its lease; a leader that is alive but silent (SIGSTOP, a network cut) is
# taken over by its lease, and fencing keeps the newer result.
#
# Redis only, plain and TLS. Tests that restart the server start it again on
# the same port (redis_down, redis_up), so the callers' URL stays valid.
# Timing is bounded generously: 2 cores shared with other suites.

load lib/common

setup_file() {
	store_start
	echo "$BASHPID" >"$BATS_FILE_TMPDIR/owner"
}

teardown_file() {
	[[ -s $BATS_FILE_TMPDIR/redis.pid ]] && REDIS_PID=$(<"$BATS_FILE_TMPDIR/redis.pid")
	store_stop
}

setup() {
	require_redis
	[[ -s $BATS_FILE_TMPDIR/redis.pid ]] && REDIS_PID=$(<"$BATS_FILE_TMPDIR/redis.pid")
	common_setup
}

teardown() {
	[[ -s relay.pid ]] && kill "$(cat relay.pid)" 2>/dev/null
	common_teardown
	store_is_redis || return 0
	[[ -n ${REDIS_PID:-} ]] && kill -CONT "$REDIS_PID" 2>/dev/null
	if [[ $(rcli PING 2>/dev/null) != PONG ]]; then
		redis_down
		redis_up
	fi
}

# --- helpers ----------------------------------------------------------------------------

# now, in milliseconds
now_ms() {
	echo $(($(date +%s%N) / 1000000))
}

# start tests/lib/relay.py in front of the suite's server, following
# relay.mode (echo stop >relay.mode cuts every connection, open ones too);
# sets RELAY_URL
relay_start() {
	(
		python3 "$BATS_TEST_DIRNAME/lib/relay.py" --to "$REDIS_PORT" --port-file relay.port \
			--mode-file "$SCRATCH/relay.mode" --follow --lifetime 300 "$@" \
			</dev/null >relay.log 2>&1 3>&- &
		echo $! >relay.pid
	)
	wait_for_file relay.port 10 || { echo "the relay did not start:" >&2; cat relay.log >&2; return 1; }
	RELAY_URL=$REDIS_SCHEME://127.0.0.1:$(cat relay.port)
}

# --- a restart ----------------------------------------------------------------------------

@test "Redis restarted (no persistence, 0.3 s down) while a leader's COMMAND runs with 50 waiters: every caller gets the whole output and the status, and COMMAND runs at most twice" {
	# the first run holds until the restart is over: with a fixed 3 s, a
	# loaded CI machine started some waiters after it had stored, and
	# they hit instead of waiting (the count of waits stayed below 50)
	cmd=$(counter_cmd job "touch \"started.\$n\"; if [ \$n -eq 1 ]; then $(hold_until "$SCRATCH/go"); fi; sleep 1; printf 'line one\\nline two of run %s\\n' \"\$n\"; exit 7")
	# 51 processes connecting at once (TLS handshakes, sanitizer builds)
	# on 2 loaded cores can take more than the default 1 s, which would make
	# fail-open runs that have nothing to do with the restart
	opts=(--redis-timeout 5s -t 1m --cache-failures -k restart)

	cf_bg leader "${opts[@]}" -- "$cmd"
	wait_for_file started.1 30
	gate_close
	for i in $(seq 50); do
		cf_bg "w$i" "${opts[@]}" -- "$cmd"
	done
	gate_open
	wait_for_stat waits 50 30
	# one second into COMMAND (the waiters took part of it to start)
	sleep 0.5
	redis_down
	sleep 0.3
	redis_up
	touch go

	for name in leader $(seq -f 'w%g' 50); do
		assert_eq "$(bg_status "$name" 60)" 7 "status of $name"
		grep -Eq '^line two of run [12]$' "$name.out" && [[ $(head -1 "$name.out") == 'line one' &&
			$(wc -l <"$name.out") == 2 ]] ||
			{ echo "$name printed:" >&2; cat "$name.out" "$name.err" >&2; false; }
	done
	n=$(runs job)
	echo "# COMMAND ran $n times" >&3
	((n <= 2)) || { echo "COMMAND ran $n times" >&2; cat w*.err | sort | uniq -c >&2; false; }
}

@test "Redis restarted between two renewals of a leader's long COMMAND (lease 1 s, COMMAND 4 s): its result is stored and COMMAND does not run again" {
	cmd=$(counter_cmd long 'touch "started.$n"; sleep 4; echo "long run $n"')

	cf_bg leader --lock-lease 1s -t 1m -k long -- "$cmd"
	wait_for_file started.1 30
	sleep 1.2
	redis_down
	sleep 0.3
	redis_up
	assert_eq "$(bg_status leader 60)" 0 "status of the leader"
	assert_bytes leader.out 'long run 1\n'

	cf_to after --lock-lease 1s -t 1m -k long -- "$cmd"
	assert_status 0 after
	assert_bytes after.out 'long run 1\n'
	assert_eq "$(runs long)" 1 "runs of COMMAND"
}

# --- a call that starts during the outage --------------------------------------------------

@test "a call that starts while Redis is down waits for it up to --redis-timeout: the server back 0.5 s later, it leads and stores, and no caller runs uncached" {
	cmd=$(counter_cmd during 'echo "during run $n"')

	redis_down
	cf_bg first --redis-timeout 3s -t 1m -k during -- "$cmd"
	cf_bg second --redis-timeout 3s -t 1m -k during -- "$cmd"
	sleep 0.5
	redis_up
	assert_eq "$(bg_status first 30)" 0 "status of the first caller"
	assert_eq "$(bg_status second 30)" 0 "status of the second caller"
	assert_bytes first.out 'during run 1\n'
	assert_bytes second.out 'during run 1\n'
	! grep -H 'uncached' first.err second.err >&2
	assert_eq "$(runs during)" 1 "runs of COMMAND"
	assert_eq "$(rcli EXISTS 'cachefence:{during}')" 1 "the entry is stored"
}

@test "a call that starts while Redis is down and stays down runs COMMAND uncached after about --redis-timeout, with a warning" {
	cmd=$(counter_cmd gone 'echo "gone run $n"')

	redis_down
	start=$(now_ms)
	cf_to gone --redis-timeout 1s -t 1m -k gone -- "$cmd"
	took=$(($(now_ms) - start))
	assert_status 0 gone
	assert_bytes gone.out 'gone run 1\n'
	grep -q 'store unavailable: .*Connection refused; running COMMAND uncached' gone.err ||
		{ cat gone.err >&2; return 1; }
	# it tried for --redis-timeout, and not much longer
	((took >= 900 && took < 10000)) || { echo "took ${took} ms" >&2; return 1; }
}

@test "a URL that names a host that is down first and the server second reaches the server: the entry is stored and hit" {
	cmd=$(counter_cmd seeds 'echo "seeds run $n"')
	dead=$(free_port)
	url=$REDIS_SCHEME://127.0.0.1:$dead,127.0.0.1:$REDIS_PORT

	cf_to first -u "$url" -t 1m -k seeds -- "$cmd"
	assert_status 0 first
	cf_to second -u "$url" -t 1m -k seeds -- "$cmd"
	assert_status 0 second
	assert_bytes second.out 'seeds run 1\n'
	assert_empty first.err
	assert_eq "$(runs seeds)" 1 "runs of COMMAND"
	assert_eq "$(rcli EXISTS 'cachefence:{seeds}')" 1 "the entry is stored"
}

# --- a leader gone ------------------------------------------------------------------------

@test "a leader SIGKILLed at least 0.5 s into its COMMAND with 20 waiters and the default lease: the takeover starts within 1.5 s of the kill, and every waiter gets the result" {
	# the first run holds until it is killed: with a fixed 3 s, waiters
	# that a loaded machine (ASan, suites in parallel) started later found
	# its result stored, and the count of waits stayed below 20
	cmd=$(counter_cmd killed "now=\$(date +%s%N); echo \$((now / 1000000)) >\"started.\$n\"; if [ \$n -eq 1 ]; then $(hold_until "$SCRATCH/never"); fi; sleep 3; echo \"result of run \$n\"")

	cf_bg leader -t 1m -k killed -- "$cmd"
	wait_for_file started.1 30
	for i in $(seq 20); do
		cf_bg "w$i" -t 1m -k killed -- "$cmd"
	done
	wait_for_stat waits 20 30
	start=$(cat started.1)
	now=$(now_ms)
	((now - start < 500)) && sleep "0.$(printf '%03d' $((500 - (now - start))))"
	kill -KILL "$(bg_pid leader)"
	killed=$(now_ms)

	wait_for_file started.2 10 || { echo "no takeover within 10 s" >&2; false; }
	took=$(($(cat started.2) - killed))
	echo "# takeover started ${took} ms after the kill" >&3
	((took <= 1500)) || { echo "the takeover started ${took} ms after the kill" >&2; false; }
	for i in $(seq 20); do
		assert_eq "$(bg_status "w$i" 60)" 0 "status of waiter $i"
		assert_bytes "w$i.out" 'result of run 2\n'
	done
	assert_eq "$(stat_value lock_takeovers_holder_gone)" 1 "takeovers of a holder gone"
	assert_eq "$(stat_value lock_takeovers)" 0 "takeovers by lease"
}

@test "a leader SIGSTOPped past its lease (alive, its connection open): a waiter takes over by the lease, and fencing keeps the newer result" {
	cmd=$(counter_cmd stopped 'if [ $n -eq 1 ]; then touch started; sleep 2; fi; echo "result of run $n"')

	cf_bg old --lock-lease 1s -t 1m -k stopped -- "$cmd"
	wait_for_file started 30
	kill -STOP "$(bg_pid old)"
	cf_to new --lock-lease 1s -t 1m -k stopped -- "$cmd"
	assert_status 0 new
	assert_bytes new.out 'result of run 2\n'
	sleep 2
	kill -CONT "$(bg_pid old)"
	assert_eq "$(bg_status old 60)" 0 "status of the stopped leader"
	assert_bytes old.out 'result of run 1\n'

	cf_to after -t 1m -k stopped -- "$cmd"
	assert_bytes after.out 'result of run 2\n'
	assert_eq "$(runs stopped)" 2 "runs of COMMAND"
	assert_eq "$(stat_value lock_takeovers)" 1 "takeovers by lease"
	assert_eq "$(stat_value lock_takeovers_holder_gone)" 0 "takeovers of a holder gone"
	assert_eq "$(stat_value stores_skipped_lost_lock)" 1 "stores fenced out"
}

@test "the network cut between a leader and Redis while COMMAND runs: no duplicate stored result, and the leader ends within its bound" {
	relay_start --upstream
	cmd=$(counter_cmd cut 'if [ $n -eq 1 ]; then touch started; sleep 3; fi; echo "result of run $n"')
	opts=(--lock-lease 2s --redis-timeout 1s -t 1m -k cut)

	cf_bg leader --url "$RELAY_URL" "${opts[@]}" -- "$cmd"
	wait_for_file started 30
	start=$(now_ms)
	echo stop >relay.mode
	cf_to waiter "${opts[@]}" -- "$cmd"
	assert_status 0 waiter
	assert_bytes waiter.out 'result of run 2\n'
	assert_eq "$(bg_status leader 60)" 0 "status of the leader"
	ended=$(($(now_ms) - start))
	assert_bytes leader.out 'result of run 1\n'
	# 3 s of COMMAND, then its store: 3 x --redis-timeout at most, and slack
	((ended <= 3000 + 3000 + 4000)) || { echo "the leader ended ${ended} ms after the cut" >&2; false; }

	rm relay.mode
	cf_to after "${opts[@]}" -- "$cmd"
	assert_bytes after.out 'result of run 2\n'
	assert_eq "$(runs cut)" 2 "runs of COMMAND"
	[[ -z $(rcli --scan --pattern 'cachefence:*:stage:*') ]] || { echo "a stage key is left" >&2; false; }
}

@test "the network cut between a leader and Redis for less than its lease: the leader reconnects, keeps its lock and stores, and COMMAND runs once for it and its waiter" {
	relay_start --upstream
	cmd=$(counter_cmd brief 'if [ $n -eq 1 ]; then touch started; sleep 3; fi; echo "result of run $n"')
	opts=(--lock-lease 4s --redis-timeout 500ms -t 1m -k brief)

	cf_bg leader --url "$RELAY_URL" "${opts[@]}" -- "$cmd"
	wait_for_file started 30
	echo stop >relay.mode
	cf_bg waiter "${opts[@]}" -- "$cmd"
	sleep 1.5
	echo pass >relay.mode
	assert_eq "$(bg_status leader 60)" 0 "status of the leader"
	assert_bytes leader.out 'result of run 1\n'
	assert_eq "$(bg_status waiter 60)" 0 "status of the waiter"
	assert_bytes waiter.out 'result of run 1\n'

	cf_to after "${opts[@]}" -- "$cmd"
	assert_bytes after.out 'result of run 1\n'
	assert_eq "$(runs brief)" 1 "runs of COMMAND"
}
