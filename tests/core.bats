#!/usr/bin/env bats
# The run path through the real binary against a real store: hits and misses,
# single flight under load, lease, fencing, streaming, exit statuses, fail-open.
# Timing is only ever bounded generously: a slow machine must not fail a test.

load lib/common

setup_file() { store_start; }
teardown_file() { store_stop; }
setup() { common_setup; }
teardown() { common_teardown; }

# the store server's clock, in milliseconds
server_ms() {
	local t
	mapfile -t t < <(rcli TIME)
	echo $((t[0] * 1000 + t[1] / 1000))
}

# show how often each stderr line of FILES... occurred (for a failure report)
stderr_digest() {
	echo "stderr lines of the callers, by count:" >&2
	cat "$@" | sort | uniq -c | sort -rn | head -20 >&2
	echo "the store's counters:" >&2
	cf stats >&2 || true
}

# --- miss, hit, bytes ---------------------------------------------------------

@test "a second call is a hit: COMMAND does not run again and the same bytes come back" {
	cmd=$(counter_cmd hello 'printf "hello\n  world\n"')

	cf_to first -t 1m -k greet -- "$cmd"
	assert_status 0 first
	assert_bytes first.out 'hello\n  world\n'
	assert_empty first.err

	cf_to second -t 1m -k greet -- "$cmd"
	assert_status 0 second
	assert_bytes second.out 'hello\n  world\n'
	assert_empty second.err

	assert_eq "$(runs hello)" 1 "runs of COMMAND"
}

@test "1 MiB of random bytes with a NUL, a 0xFF byte and no final newline round-trips byte for byte" {
	head -c 1048576 /dev/urandom >data
	printf 'tail\000middle\377' >>data
	cmd=$(counter_cmd blob "cat '$SCRATCH/data'")

	cf_to live -t 1m -k blob -- "$cmd"
	assert_status 0 live
	cmp live.out data

	cf_to replay -t 1m -k blob -- "$cmd"
	assert_status 0 replay
	cmp replay.out data

	cf_to stored get blob
	assert_status 0 stored
	cmp stored.out data

	assert_eq "$(runs blob)" 1 "runs of COMMAND"
}

@test "the default key is derived from COMMAND's argv with the words kept apart" {
	cmd=$(counter_cmd args 'printf "[%s]" "$@"; echo')

	cf_to ab1 -t 1m -- "$cmd" a b
	cf_to ab2 -t 1m -- "$cmd" a b
	assert_bytes ab1.out '[a][b]\n'
	assert_bytes ab2.out '[a][b]\n'
	assert_eq "$(runs args)" 1 "runs after the same argv twice"

	cf_to space -t 1m -- "$cmd" "a b"
	assert_bytes space.out '[a b]\n'
	cf_to joined -t 1m -- "$cmd" ab
	assert_bytes joined.out '[ab]\n'
	assert_eq "$(runs args)" 3 "runs after three different argvs"
}

@test "the entry is a Redis hash at NS:{KEY} with the documented fields and the lock is gone after the run" {
	require_redis
	cmd=$(counter_cmd layout 'printf "stored bytes"')

	cf_to run -n myns -t 1m -k "my key" -- "$cmd"
	assert_status 0 run

	assert_eq "$(rcli TYPE 'myns:{my key}')" hash "type of the entry"
	assert_eq "$(rcli HGET 'myns:{my key}' v)" 1 "field v"
	assert_eq "$(rcli HGET 'myns:{my key}' out)" "stored bytes" "field out"
	assert_eq "$(rcli HGET 'myns:{my key}' st)" 0 "field st"
	assert_eq "$(rcli HGET 'myns:{my key}' ttl)" 60000 "field ttl"
	[[ $(rcli HGET 'myns:{my key}' ct) =~ ^[0-9]+$ ]]
	[[ $(rcli HGET 'myns:{my key}' dt) =~ ^[0-9]+$ ]]
	pttl=$(rcli PTTL 'myns:{my key}')
	((pttl > 0)) || { echo "entry has no expiry (PTTL $pttl)" >&2; false; }
	assert_eq "$(rcli EXISTS 'myns:{my key}:lock')" 0 "lock keys left"
	assert_eq "$(rcli --scan --pattern 'cachefence:*')" "" "keys outside the namespace"
}

# --- single flight ----------------------------------------------------------------

@test "200 concurrent callers of a cold key run a 1 s COMMAND once and all print the same bytes and status" {
	cmd=$(counter_cmd slow 'sleep 1; echo "computed by $$ at $(date +%s%N)"')

	# 200 processes released at once, with other suites running beside
	# them, starve a 2-core machine: TLS handshakes (a CI run, three suites
	# in parallel) took over 10 s, and the leader's renewals over the 10 s
	# lease, so those callers ran fail-open and a second leader took the
	# lapsed lock, as documented. This test is about single flight: give
	# the connects and the lease room enough for any load.
	gate_close
	for i in $(seq 200); do
		cf_bg "c$i" --redis-timeout 1m --lock-lease 2m -t 5m -k cold -- "$cmd"
	done
	sleep 1
	gate_open

	for i in $(seq 200); do
		assert_eq "$(bg_status "c$i" 120)" 0 "status of caller $i"
	done
	assert_eq "$(runs slow)" 1 "runs of COMMAND" || { stderr_digest c*.err; false; }
	[[ -s c1.out ]]
	for i in $(seq 200); do
		cmp c1.out "c$i.out"
		assert_empty "c$i.err"
	done
}

@test "a failing COMMAND (exit 7) with 20 concurrent callers runs once and all 20 exit 7 with its output" {
	cmd=$(counter_cmd fail 'sleep 1; echo "failed in $$"; exit 7')

	gate_close
	for i in $(seq 20); do
		cf_bg "c$i" --redis-timeout 10s -t 1m -k failing -- "$cmd"
	done
	sleep 1
	gate_open

	for i in $(seq 20); do
		assert_eq "$(bg_status "c$i" 60)" 7 "status of caller $i"
	done
	assert_eq "$(runs fail)" 1 "runs of COMMAND" || { stderr_digest c*.err; false; }
	grep -q '^failed in ' c1.out
	for i in $(seq 20); do
		cmp c1.out "c$i.out"
	done
}

# --- the wake-up that carries a small result -----------------------------------

# the lookups in MONITOR output FILE: EVALSHA naming the key's :done: round
# (finish's call names it too, with its :stage:)
lookups_in() {
	local n
	n=$(grep '"EVALSHA"' "$1" | grep -v ':stage:' | grep -c ':done:' || true)
	echo $((n))
}

# how many NAME commands clients sent (not scripts) in MONITOR output FILE
client_commands() {
	local n
	n=$(grep -v ' lua\] ' "$2" | grep -c "\"$1\"" || true)
	echo $((n))
}

# Hold a leader of key K running BODY (after it is released) with 5 waiters
# (ARGS... before -- for all), the server watched with MONITOR; once every
# waiter has subscribed and looked twice (before and after it subscribed),
# release the leader and wait for all; then print how many lookups the
# server saw after the leader's PUBLISH.
lookups_after_wake() {
	local k=$1 body=$2
	shift 2
	rcli MONITOR >"monitor-$k" &
	local mon=$!
	sleep 0.5
	lead=$(counter_cmd "lead-$k" "$(hold_until "$SCRATCH/release-$k"); $body")
	cf_bg "leader-$k" "$@" -t 1m -k "$k" -- "$lead"
	wait_for_file "lead-$k.runs" 30 || return 1
	for i in 1 2 3 4 5; do
		cf_bg "w$i-$k" "$@" -t 1m -k "$k" -- "$lead"
	done
	for _ in $(seq 600); do
		[[ $(grep -c '"SUBSCRIBE"' "monitor-$k") -ge 5 && $(lookups_in "monitor-$k") -ge 11 ]] &&
			break
		sleep 0.1
	done
	touch "$SCRATCH/release-$k"
	for n in "leader-$k" w{1,2,3,4,5}"-$k"; do
		bg_status "$n" 60 >"$n.st" || return 1
	done
	sleep 0.3
	kill "$mon"
	wait "$mon" || true
	grep -q '"PUBLISH"' "monitor-$k" || { echo "no PUBLISH in the MONITOR output" >&2; return 1; }
	sed -n '/"PUBLISH"/,$p' "monitor-$k" >"after-$k"
	lookups_in "after-$k"
}

# N, from lookups_after_wake, says the waiters wrote the leader's result
# from its wake-up: none looked it up after. Each waiter also looks once a
# second while it waits, and on a busy machine one such look may fall right
# after the PUBLISH (it is then served by that lookup): one is allowed,
# against the five lookups of waiters that fetch what they were woken for.
assert_served_by_wake() {
	assert_le "$1" 1 "lookups after the leader's wake-up"
}

@test "waiters woken by a small result (NUL bytes, no final newline, a failure's status) write it from the wake-up, without looking it up" {
	require_redis
	require_standalone # MONITOR of the one server
	n=$(lookups_after_wake small "printf 'small\\0result'; printf 'err\\0' >&2; exit 3" \
		--cache-failures --cache-stderr)
	assert_served_by_wake "$n"
	# the result went with the finish script: no HSET of a stage by a client
	assert_eq "$(client_commands HSET monitor-small)" 0 "HSETs sent by clients"
	for who in leader-small w{1,2,3,4,5}-small; do
		assert_eq "$(cat "$who.st")" 3 "status of $who"
		assert_bytes "$who.out" 'small\0result'
		assert_bytes "$who.err" 'err\0'
	done
	assert_eq "$(runs lead-small)" 1 "runs of COMMAND"
	# the waiters served from the wake-up count as hits, as their lookups would
	assert_eq "$(cf stats --json | jq -r .hits)" 5 "hits"
}

@test "waiters of a failure that is not stored get its output and status from the wake-up too" {
	require_redis
	require_standalone
	n=$(lookups_after_wake failed "echo 'went wrong'; exit 9")
	assert_served_by_wake "$n"
	for who in leader-failed w{1,2,3,4,5}-failed; do
		assert_eq "$(cat "$who.st")" 9 "status of $who"
		assert_bytes "$who.out" 'went wrong\n'
	done
	assert_eq "$(runs lead-failed)" 1 "runs of COMMAND"
	# nothing stored: the next caller runs COMMAND
	cf_to after -t 1m -k failed -- "$SCRATCH/lead-failed"
	assert_status 9 after
	assert_eq "$(runs lead-failed)" 2 "runs of COMMAND"
}

@test "waiters woken by a compressed result (200 kB of text, stored in under 16 KiB) decode it from the wake-up" {
	require_redis
	require_standalone
	yes 'a line of text that repeats' | head -c 200000 >text
	n=$(lookups_after_wake zipped "cat '$SCRATCH/text'" --compress)
	assert_served_by_wake "$n"
	for who in leader-zipped w{1,2,3,4,5}-zipped; do
		assert_eq "$(cat "$who.st")" 0 "status of $who"
		cmp text "$who.out"
	done
	cf_to inspect inspect zipped
	grep -q 'zstd' inspect.out
}

@test "waiters woken by a result over 16 KiB look it up: one lookup each after the wake-up, and the bytes are whole" {
	require_redis
	require_standalone
	head -c 20000 /dev/urandom >payload
	n=$(lookups_after_wake large "cat '$SCRATCH/payload'")
	assert_eq "$n" 5 "lookups after the leader's wake-up"
	# staged with plain commands, streamed: one HSET, one PEXPIRE
	assert_eq "$(client_commands HSET monitor-large)" 1 "HSETs sent by clients"
	for who in leader-large w{1,2,3,4,5}-large; do
		assert_eq "$(cat "$who.st")" 0 "status of $who"
		cmp payload "$who.out"
	done
}

@test "a failing result is not stored without --cache-failures" {
	cmd=$(counter_cmd fail 'echo "attempt $n"; exit 7')

	cf_to first -t 1m -k nocache -- "$cmd"
	assert_status 7 first
	assert_bytes first.out 'attempt 1\n'
	cf_to second -t 1m -k nocache -- "$cmd"
	assert_status 7 second
	assert_bytes second.out 'attempt 2\n'
	assert_eq "$(runs fail)" 2 "runs of COMMAND"

	cf_to got get nocache
	assert_status 1 got
	assert_empty got.out
}

@test "--cache-failures stores a failing result and replays its output and exit status" {
	cmd=$(counter_cmd fail 'echo "attempt $n"; exit 7')

	cf_to first -t 1m -k cached --cache-failures -- "$cmd"
	assert_status 7 first
	cf_to second -t 1m -k cached --cache-failures -- "$cmd"
	assert_status 7 second
	assert_bytes second.out 'attempt 1\n'
	assert_eq "$(runs fail)" 1 "runs of COMMAND"
}

# --- lease, takeover, fencing -------------------------------------------------------

@test "when the leader is SIGKILLed mid-run one waiter takes over within a couple of leases and the rest get its result" {
	cmd=$(counter_cmd job 'if [ $n -eq 1 ]; then touch started; exec sleep 60; fi; echo "result of run $n"')

	cf_bg leader -t 1m -k job --lock-lease 2s -- "$cmd"
	wait_for_file started 30
	for i in 1 2 3; do
		cf_bg "waiter$i" -t 1m -k job --lock-lease 2s -- "$cmd"
	done
	sleep 1
	kill -KILL "$(bg_pid leader)"
	SECONDS=0

	for i in 1 2 3; do
		assert_eq "$(bg_status "waiter$i" 60)" 0 "status of waiter $i"
		assert_bytes "waiter$i.out" 'result of run 2\n'
	done
	((SECONDS < 20)) || { echo "takeover took ${SECONDS}s with a 2s lease" >&2; false; }
	assert_eq "$(bg_status leader)" 137 "status of the killed leader"
	assert_eq "$(runs job)" 2 "runs of COMMAND"
}

@test "redis store: a leader SIGSTOPped past its lease cannot overwrite the newer result when resumed (fencing)" {
	require_redis # the local store's kernel lock has no lease: see the next test
	cmd=$(counter_cmd job 'if [ $n -eq 1 ]; then touch started; sleep 3; echo "result of run 1"; touch run1.done; exit 0; fi; echo "result of run $n"')

	cf_bg old -t 1m -k fenced --lock-lease 1s -- "$cmd"
	wait_for_file started 30
	kill -STOP "$(bg_pid old)"

	cf_bg new -t 1m -k fenced --lock-lease 1s -- "$cmd"
	assert_eq "$(bg_status new 60)" 0 "status of the new leader"
	assert_bytes new.out 'result of run 2\n'

	wait_for_file run1.done 30
	kill -CONT "$(bg_pid old)"
	assert_eq "$(bg_status old 60)" 0 "status of the resumed leader"
	assert_bytes old.out 'result of run 1\n'

	cf_to got get fenced
	assert_status 0 got
	assert_bytes got.out 'result of run 2\n'
	assert_eq "$(runs job)" 2 "runs of COMMAND"
}

@test "local store: a SIGSTOPped leader keeps its kernel lock, so a waiter with --wait exits 124 without running COMMAND and the resumed leader stores its result" {
	require_file # Redis lets the lease run out instead: see the previous test
	cmd=$(counter_cmd job 'if [ $n -eq 1 ]; then touch started; sleep 3; echo "result of run 1"; touch run1.done; exit 0; fi; echo "result of run $n"')

	cf_bg old -t 1m -k paused --lock-lease 1s -- "$cmd"
	wait_for_file started 30
	kill -STOP "$(bg_pid old)"

	SECONDS=0
	cf_to waiter -t 1m -k paused --lock-lease 1s -w 2s -- "$cmd"
	elapsed=$SECONDS
	assert_status 124 waiter
	assert_empty waiter.out
	((elapsed < 30)) || { echo "--wait 2s took ${elapsed}s" >&2; false; }
	assert_eq "$(runs job)" 1 "runs of COMMAND while the leader was paused"

	wait_for_file run1.done 30
	kill -CONT "$(bg_pid old)"
	assert_eq "$(bg_status old 60)" 0 "status of the resumed leader"
	assert_bytes old.out 'result of run 1\n'

	cf_to got get paused
	assert_status 0 got
	assert_bytes got.out 'result of run 1\n'
	assert_eq "$(runs job)" 1 "runs of COMMAND"
}

@test "a COMMAND that runs three times the lease keeps its lock and is not run twice (lease renewal)" {
	cmd=$(counter_cmd long 'touch started; sleep 6; echo "long result"')

	cf_bg leader -t 1m -k long --lock-lease 2s -- "$cmd"
	wait_for_file started 30
	for i in 1 2 3; do
		cf_bg "waiter$i" -t 1m -k long --lock-lease 2s -- "$cmd"
	done

	for name in leader waiter1 waiter2 waiter3; do
		assert_eq "$(bg_status "$name" 60)" 0 "status of $name"
		assert_bytes "$name.out" 'long result\n'
	done
	assert_eq "$(runs long)" 1 "runs of COMMAND"
}

# --- streaming, invalidate ------------------------------------------------------------

@test "the leader streams: the first line reaches the caller before COMMAND ends" {
	cmd=$(counter_cmd stream "echo first; $(hold_until "$SCRATCH/release"); echo second")

	cf_bg caller -t 1m -k stream -- "$cmd"
	if ! wait_for_text caller.out first 30; then
		touch release
		echo "no output while COMMAND ran" >&2
		false
	fi
	touch release

	assert_eq "$(bg_status caller 60)" 0 "status of the caller"
	assert_bytes caller.out 'first\nsecond\n'
}

@test "invalidate while the leader runs: its result is not stored but its caller still gets it" {
	cmd=$(counter_cmd inv "touch started; $(hold_until "$SCRATCH/release"); echo 'leader result'")

	cf_bg leader -t 1m -k inv -- "$cmd"
	wait_for_file started 30
	cf_to invalidated invalidate inv
	touch release
	assert_status 0 invalidated

	assert_eq "$(bg_status leader 60)" 0 "status of the leader"
	assert_bytes leader.out 'leader result\n'
	cf_to got get inv
	assert_status 1 got
	assert_empty got.out
}

# --- exit statuses -------------------------------------------------------------------

@test "a COMMAND killed by signal 15 gives 128+15 and is not stored" {
	cmd=$(counter_cmd sig 'echo before; kill -TERM $$')

	cf_to killed -t 1m -k sig -- "$cmd"
	assert_status 143 killed
	assert_bytes killed.out 'before\n'

	cf_to got get sig
	assert_status 1 got
}

@test "SIGTERM to the leader reaches COMMAND, stores nothing and releases the lock" {
	cmd=$(counter_cmd term 'echo partial; touch started; exec sleep 60')

	cf_bg leader -t 1m -k term -- "$cmd"
	wait_for_file started 30
	kill -TERM "$(bg_pid leader)"

	assert_eq "$(bg_status leader 30)" 143 "status of the leader"
	assert_bytes leader.out 'partial\n'
	! proc_alive "$(cat term.runs)" || { echo "COMMAND still runs" >&2; false; }
	cf_to got get term
	assert_status 1 got
	if store_is_redis; then
		assert_eq "$(rcli EXISTS 'cachefence:{term}:lock')" 0 "lock keys left"
	fi

	# on every store: the next caller leads at once instead of waiting out a
	# lock (a left-over Redis lock would hold it for the 10 s default lease)
	next=$(counter_cmd next 'echo "next result"')
	cf_to after -t 1m -k term -w 5s -- "$next"
	assert_status 0 after
	assert_bytes after.out 'next result\n'
	assert_eq "$(runs next)" 1 "runs of the next COMMAND"
}

@test "a waiter whose --wait expires exits 124 without running COMMAND" {
	cmd=$(counter_cmd held "touch started; $(hold_until "$SCRATCH/release"); echo done")

	cf_bg leader -t 1m -k held -- "$cmd"
	wait_for_file started 30
	SECONDS=0
	cf_to waiter -t 1m -k held -w 1s -- "$cmd"
	elapsed=$SECONDS
	touch release

	assert_status 124 waiter
	assert_empty waiter.out
	((elapsed < 30)) || { echo "--wait 1s took ${elapsed}s" >&2; false; }
	assert_eq "$(bg_status leader 60)" 0 "status of the leader"
	assert_eq "$(runs held)" 1 "runs of COMMAND"
}

# --- the store down, slow or holding junk ---------------------------------------------

# a URL of the suite's kind of store that cannot be used: a Redis port where
# nothing listens, or a store directory that cannot be created (its parent is
# a regular file)
unreachable_url() {
	case $CACHEFENCE_TEST_STORE in
	file)
		: >"$SCRATCH/not-a-directory"
		echo "file://$SCRATCH/not-a-directory/store"
		;;
	*) echo "$REDIS_SCHEME://127.0.0.1:1" ;;
	esac
}

@test "with the store unreachable COMMAND runs uncached, with one warning and its own exit status" {
	cmd=$(counter_cmd down 'echo uncached; exit 3')
	url=$(unreachable_url)

	cf_to first -u "$url" -t 1m -k down -- "$cmd"
	assert_status 3 first
	assert_bytes first.out 'uncached\n'
	assert_one_line first.err "cachefence: warning:"

	cf_to second -u "$url" -t 1m -k down -- "$cmd"
	assert_status 3 second
	assert_eq "$(runs down)" 2 "runs of COMMAND"
}

@test "with the store unreachable --fail-closed exits 125 without running COMMAND" {
	cmd=$(counter_cmd down 'echo uncached')

	cf_to closed -u "$(unreachable_url)" -t 1m -k down --fail-closed -- "$cmd"
	assert_usage_error closed
	assert_eq "$(runs down)" 0 "runs of COMMAND"
}

@test "a store slower than --redis-timeout fails open within a bounded time" {
	require_redis # the local store has no server to be slow
	require_standalone # it stops the one server
	cmd=$(counter_cmd slowstore 'echo uncached')

	kill -STOP "$REDIS_PID"
	SECONDS=0
	cf_to stalled --redis-timeout 500ms -t 1m -k stalled -- "$cmd"
	elapsed=$SECONDS
	kill -CONT "$REDIS_PID"

	assert_status 0 stalled
	assert_bytes stalled.out 'uncached\n'
	assert_one_line stalled.err "cachefence: warning:"
	((elapsed < 20)) || { echo "took ${elapsed}s with --redis-timeout 500ms" >&2; false; }
}

@test "corrupt or foreign entries written with redis-cli are misses: COMMAND runs and prints the right bytes" {
	require_redis # the local store's counterparts are in store_file.bats
	cmd=$(counter_cmd real 'echo "real output"')
	now=$(server_ms)
	junk=(
		"HSET cachefence:{k1} v 99 out bogus st 0 ct $now ttl 600000 dt 1"
		"SET cachefence:{k2} junk"
		"HSET cachefence:{k3} v 1 out bogus ct $now ttl 600000 dt 1"
		"HSET cachefence:{k4} v 1 out bogus st banana ct $now ttl 600000 dt 1"
		"HSET cachefence:{k5} v 1 out bogus st 0 ct yesterday ttl 600000 dt 1"
		"HSET cachefence:{k6} v 1 st 0 ct $now ttl 600000 dt 1"
		"RPUSH cachefence:{k7} bogus bogus"
	)

	for i in "${!junk[@]}"; do
		k=k$((i + 1))
		rcli ${junk[$i]} >/dev/null
		cf_to "$k" -t 1m -k "$k" -- "$cmd"
		assert_status 0 "$k" || { echo "after: ${junk[$i]}" >&2; false; }
		assert_bytes "$k.out" 'real output\n'
		assert_at_most_one_line "$k.err"
	done
	assert_eq "$(runs real)" "${#junk[@]}" "runs of COMMAND"
}
