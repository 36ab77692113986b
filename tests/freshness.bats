#!/usr/bin/env bats
# The freshness policy through the real binary against a real store: the
# stale window and its background refresh, stale-if-error, XFetch early
# refresh, --refresh, --timeout, --max-size, stderr and failure caching, the
# key scopes and --stdin. Timing is only ever bounded generously: a slow
# machine must not fail a test.

load lib/common

# -v names the store on its first line; check it, then drop it so the
# decision line can be matched alone
drop_store_line() {
	[[ $(head -n 1 "$1") == "cachefence: store "* ]] || { echo "$1: no store line first" >&2; return 1; }
	sed -i 1d "$1"
}

setup_file() { store_start; }
teardown_file() { store_stop; }
setup() { common_setup; }
teardown() { common_teardown; }

# the host's clock in milliseconds
now_ms() {
	date +%s%3N
}

# fail unless FILE is one line matching the extended regex RE
assert_line_matches() {
	local file=$1 re=$2 lines
	lines=$(awk 'END { print NR }' "$file")
	[[ $lines == 1 ]] && grep -qE -- "$re" "$file" && return 0
	echo "$file: expected one line matching /$re/, got $lines line(s):" >&2
	head -c 2000 "$file" >&2
	return 1
}

# sh code for COMMAND: on a refresh run (not the first), write the pid of its
# parent, the detached refresher, to refresher.pid
note_refresher() {
	echo "[ \$n -gt 1 ] && echo \$PPID >'$SCRATCH/refresher.pid.tmp' && mv '$SCRATCH/refresher.pid.tmp' '$SCRATCH/refresher.pid'"
}

# wait up to SECONDS (default 30) for the detached refresher recorded in
# refresher.pid to start and then to end
wait_refresher_done() {
	local limit=${1:-30} i pid
	wait_for_file "$SCRATCH/refresher.pid" "$limit" ||
		{ echo "no background refresh started" >&2; return 1; }
	pid=$(cat "$SCRATCH/refresher.pid")
	for ((i = 0; i < limit * 10; i++)); do
		proc_alive "$pid" || return 0
		sleep 0.1
	done
	echo "background refresher $pid still runs after ${limit}s" >&2
	return 1
}

# wait up to SECONDS (default 10) until process PID has ended
wait_gone() {
	local i
	for ((i = 0; i < ${2:-10} * 10; i++)); do
		proc_alive "$1" || return 0
		sleep 0.1
	done
	echo "process $1 still runs" >&2
	return 1
}

# make KEY's entry stale: store it with TTL 1s and OPTIONS..., then let the
# TTL pass (COMMAND is the remaining arguments after --)
store_then_expire() {
	local name=$1
	shift
	cf_to "$name" "$@"
	assert_status 0 "$name"
	sleep 1.5
}

# --- stale-while-revalidate ----------------------------------------------------

@test "a stale hit returns the old bytes in under half of COMMAND's 4 s runtime and a later get shows the refreshed value" {
	cmd=$(counter_cmd val "$(note_refresher); [ \$n -gt 1 ] && sleep 4; echo \"value \$n\"")

	store_then_expire first -t 1s -s 1m -k swr -- "$cmd"
	assert_bytes first.out 'value 1\n'

	start=$(now_ms)
	cf_to stale -v -t 1s -s 1m -k swr -- "$cmd" 3>&-
	elapsed=$(($(now_ms) - start))
	assert_status 0 stale
	assert_bytes stale.out 'value 1\n'
	drop_store_line stale.err
	assert_line_matches stale.err '^cachefence: stale key=swr .*: refreshing in the background$'
	((elapsed < 2000)) || { echo "stale hit took ${elapsed}ms" >&2; false; }

	wait_refresher_done 30
	assert_eq "$(runs val)" 2 "runs of COMMAND"
	cf_to got get swr
	assert_status 0 got
	assert_bytes got.out 'value 2\n'
}

@test "20 concurrent stale hits all get the old bytes at once and cause exactly one refresh" {
	cmd=$(counter_cmd val "$(note_refresher); [ \$n -gt 1 ] && { $(hold_until "$SCRATCH/release"); }; echo \"value \$n\"")

	store_then_expire first -t 1s -s 10m --beta 0 -k herd -- "$cmd"

	gate_close
	for i in $(seq 20); do
		cf_bg "c$i" --redis-timeout 10s -t 1s -s 10m --beta 0 -k herd -- "$cmd"
	done
	sleep 1
	gate_open

	# the refresh is held until release: every caller returns without it
	for i in $(seq 20); do
		assert_eq "$(bg_status "c$i" 60)" 0 "status of caller $i" || { touch release; false; }
		assert_bytes "c$i.out" 'value 1\n' || { touch release; false; }
		assert_empty "c$i.err" || { touch release; false; }
	done
	touch release
	wait_refresher_done 30

	assert_eq "$(runs val)" 2 "runs of COMMAND (the first and one refresh)"
	cf_to got get herd
	assert_status 0 got
	assert_bytes got.out 'value 2\n'
}

@test "x=\$(cachefence -s ...) on a stale hit returns while the background refresh still runs" {
	cmd=$(counter_cmd val "$(note_refresher); [ \$n -gt 1 ] && { $(hold_until "$SCRATCH/release"); touch '$SCRATCH/refresh.done'; }; echo \"value \$n\"")

	store_then_expire first -t 1s -s 1m -k subst -- "$cmd"

	start=$(now_ms)
	x=$(cf -t 1s -s 1m -k subst -- "$cmd" 2>subst.err 3>&-) || { touch release; false; }
	elapsed=$(($(now_ms) - start))
	# the refresh has not ended: it is held until release
	[[ ! -e refresh.done ]] || { echo "the caller waited for the refresh" >&2; false; }
	wait_for_file refresher.pid 30 || { touch release; false; }
	proc_alive "$(cat refresher.pid)" || { touch release; echo "refresher gone" >&2; false; }
	touch release

	assert_eq "$x" "value 1" "captured output"
	assert_empty subst.err
	((elapsed < 10000)) || { echo "x=\$(...) took ${elapsed}ms" >&2; false; }

	wait_refresher_done 30
	[[ -e refresh.done ]]
	cf_to got get subst
	assert_bytes got.out 'value 2\n'
}

# --- stale-if-error --------------------------------------------------------------

@test "stale-if-error serves the old bytes and status with one warning when the refresh exits non-zero" {
	cmd=$(counter_cmd flaky 'if [ $n -eq 1 ]; then echo "good $n"; exit 0; fi; echo "broken $n"; exit 5')

	store_then_expire first -t 1s --stale-if-error 1m -k sie -- "$cmd"
	assert_bytes first.out 'good 1\n'

	cf_to second -t 1s --stale-if-error 1m -k sie -- "$cmd"
	assert_status 0 second
	assert_bytes second.out 'good 1\n'
	assert_eq "$(cat second.err)" 'cachefence: warning: refresh of key=sie failed (status 5), serving stale' \
		"stderr"
	assert_eq "$(runs flaky)" 2 "runs of COMMAND"

	# the old entry stays
	cf_to got get sie
	assert_status 0 got
	assert_bytes got.out 'good 1\n'
}

# --- XFetch -------------------------------------------------------------------------

@test "with a huge --beta the first hit triggers an early refresh in the background; with --beta 0 hits never do" {
	cmd=$(counter_cmd xf "$(note_refresher); sleep 0.2; echo \"value \$n\"")

	# a compute time of ~0.2 s and beta 1e9: the draw always fires
	cf_to first -t 1h -k early -- "$cmd"
	assert_bytes first.out 'value 1\n'
	cf_to hit -v -t 1h --beta 1000000000 -k early -- "$cmd" 3>&-
	assert_status 0 hit
	assert_bytes hit.out 'value 1\n'
	drop_store_line hit.err
	assert_line_matches hit.err '^cachefence: hit key=early .*: xfetch early refresh in the background$'
	wait_refresher_done 30
	assert_eq "$(runs xf)" 2 "runs of COMMAND with a huge beta"
	cf_to got get early
	assert_status 0 got
	assert_bytes got.out 'value 2\n'

	# --beta 0 turns it off, whatever the draw
	cmd=$(counter_cmd off 'sleep 0.2; echo "value $n"')
	cf_to first0 -t 1h --beta 0 -k never -- "$cmd"
	for i in $(seq 10); do
		cf_to "hit$i" -v -t 1h --beta 0 -k never -- "$cmd"
		assert_status 0 "hit$i"
		assert_bytes "hit$i.out" 'value 1\n'
		drop_store_line "hit$i.err"
		assert_line_matches "hit$i.err" '^cachefence: hit key=never '
		! grep -q xfetch "hit$i.err"
	done
	sleep 1
	assert_eq "$(runs off)" 1 "runs of COMMAND with --beta 0"
}

# --- clocks ------------------------------------------------------------------------

@test "two hosts with clocks 2 hours apart agree on freshness (the server's clock decides)" {
	require_redis
	command -v faketime >/dev/null || skip "faketime is not installed"
	[[ $(faketime -f '+2h' date +%s) -gt $(($(date +%s) + 3600)) ]] || skip "faketime does not work here"
	cmd=$(counter_cmd clock 'echo "value $n"')
	# faketime is an LD_PRELOAD library; in a sanitizer build ASan must be
	# told that it need not come first
	export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
	ahead() { timeout -s KILL "$CF_TIMEOUT" faketime -f '+2h' "$CACHEFENCE_BIN" "$@"; }
	behind() { timeout -s KILL "$CF_TIMEOUT" faketime -f '-2h' "$CACHEFENCE_BIN" "$@"; }

	# written by a host 2 h behind, fresh for a host on time and one 2 h ahead
	behind -t 1m -k skew1 -- "$cmd" >w1.out
	assert_bytes w1.out 'value 1\n'
	cf -t 1m -k skew1 -- "$cmd" >r1.out
	assert_bytes r1.out 'value 1\n'
	ahead -t 1m -k skew1 -- "$cmd" >r2.out
	assert_bytes r2.out 'value 1\n'
	assert_eq "$(runs clock)" 1 "runs after one write and two reads"

	# written by a host 2 h ahead: the host 2 h behind still sees it fresh
	ahead -t 1m -k skew2 -- "$cmd" >w2.out
	assert_bytes w2.out 'value 2\n'
	behind -t 1m -k skew2 -- "$cmd" >r3.out
	assert_bytes r3.out 'value 2\n'
	assert_eq "$(runs clock)" 2 "runs after a second write and read"

	# and once the TTL has passed on the server, all of them see it expired
	ahead -t 2s -k skew3 -- "$cmd" >w3.out
	assert_bytes w3.out 'value 3\n'
	behind -t 2s -k skew3 -- "$cmd" >r4.out
	assert_bytes r4.out 'value 3\n'
	sleep 2.5
	behind -t 2s -k skew3 -- "$cmd" >r5.out
	assert_bytes r5.out 'value 4\n'
	assert_eq "$(runs clock)" 4 "runs after the TTL passed"
}

# --- --timeout ------------------------------------------------------------------------

@test "--timeout exits 124 within the timeout plus the 2 s grace, stores nothing and kills grandchildren" {
	# a COMMAND that dies on SIGTERM, with a grandchild
	cmd=$(counter_cmd slow "sleep 30 & echo \$! >'$SCRATCH/gc1.pid'; echo started; wait")
	start=$(now_ms)
	cf_to term -t 1m --timeout 1s -k term -- "$cmd"
	elapsed=$(($(now_ms) - start))
	assert_status 124 term
	assert_bytes term.out 'started\n'
	assert_one_line term.err
	grep -q 'timed out' term.err
	((elapsed < 10000)) || { echo "--timeout 1s took ${elapsed}ms" >&2; false; }
	wait_gone "$(cat gc1.pid)" 10
	wait_gone "$(head -1 slow.runs)" 10

	# a COMMAND and grandchild that ignore SIGTERM: SIGKILL after the grace
	cmd=$(counter_cmd stubborn "trap '' TERM; sleep 30 & echo \$! >'$SCRATCH/gc2.pid'; echo started; wait; wait")
	start=$(now_ms)
	cf_to kill -t 1m --timeout 1s -k stubborn -- "$cmd"
	elapsed=$(($(now_ms) - start))
	assert_status 124 kill
	assert_bytes kill.out 'started\n'
	assert_one_line kill.err
	((elapsed >= 2500)) || { echo "SIGKILL came after ${elapsed}ms, before the grace" >&2; false; }
	((elapsed < 12000)) || { echo "--timeout 1s took ${elapsed}ms" >&2; false; }
	wait_gone "$(cat gc2.pid)" 10
	wait_gone "$(head -1 stubborn.runs)" 10

	for key in term stubborn; do
		cf_to "got-$key" get "$key"
		assert_status 1 "got-$key"
		assert_empty "got-$key.out"
	done
}

# --- --max-size ----------------------------------------------------------------------

@test "a 2 MiB output with --max-size 1M reaches the caller intact, with one warning, and is not stored" {
	head -c 2097152 /dev/urandom >data
	cmd=$(counter_cmd big "cat '$SCRATCH/data'")

	cf_to first -t 1m --max-size 1M -k big -- "$cmd"
	assert_status 0 first
	cmp first.out data
	assert_one_line first.err "cachefence: warning: "
	grep -q 'max-size' first.err

	cf_to got get big
	assert_status 1 got
	assert_empty got.out

	cf_to second -t 1m --max-size 1M -k big -- "$cmd"
	assert_status 0 second
	cmp second.out data
	assert_eq "$(runs big)" 2 "runs of COMMAND"
}

# --- stderr, failures ----------------------------------------------------------------------

@test "--cache-stderr replays stderr on a hit; failures are stored only with --cache-failures and expire after --failure-ttl" {
	cmd=$(counter_cmd both 'echo "out $n"; echo "err $n" >&2')

	# stderr: stored and replayed only with --cache-stderr
	cf_to live -t 1m --cache-stderr -k witherr -- "$cmd"
	assert_status 0 live
	assert_bytes live.out 'out 1\n'
	assert_bytes live.err 'err 1\n'
	cf_to replay -t 1m --cache-stderr -k witherr -- "$cmd"
	assert_status 0 replay
	assert_bytes replay.out 'out 1\n'
	assert_bytes replay.err 'err 1\n'
	cf_to plain1 -t 1m -k noerr -- "$cmd"
	assert_bytes plain1.err 'err 2\n'
	cf_to plain2 -t 1m -k noerr -- "$cmd"
	assert_status 0 plain2
	assert_bytes plain2.out 'out 2\n'
	assert_empty plain2.err
	assert_eq "$(runs both)" 2 "runs of the stderr COMMAND"

	# a failure without --cache-failures: not stored
	cmd=$(counter_cmd fail 'echo "attempt $n"; exit 7')
	cf_to f1 -t 1m -k nofail -- "$cmd"
	assert_status 7 f1
	cf_to f1got get nofail
	assert_status 1 f1got
	cf_to f2 -t 1m -k nofail -- "$cmd"
	assert_status 7 f2
	assert_bytes f2.out 'attempt 2\n'

	# --failure-ttl without --cache-failures is a usage error
	cf_to usage -t 1m --failure-ttl 3s -k nofail -- "$cmd"
	assert_usage_error usage

	# with --cache-failures: stored, replayed, gone after --failure-ttl
	cf_to f3 -t 1h --cache-failures --failure-ttl 3s -k neg -- "$cmd"
	assert_status 7 f3
	assert_bytes f3.out 'attempt 3\n'
	cf_to f4 -t 1h --cache-failures --failure-ttl 3s -k neg -- "$cmd"
	assert_status 7 f4
	assert_bytes f4.out 'attempt 3\n'
	assert_eq "$(runs fail)" 3 "runs while the failure is cached"
	sleep 3.5
	cf_to f5 -t 1h --cache-failures --failure-ttl 3s -k neg -- "$cmd"
	assert_status 7 f5
	assert_bytes f5.out 'attempt 4\n'
	assert_eq "$(runs fail)" 4 "runs after --failure-ttl passed"
}

# --- key scopes ------------------------------------------------------------------------

@test "--scope-env, argv word boundaries and --scope-file each give distinct derived keys" {
	cmd=$(counter_cmd envcmd 'echo "FOO=$FOO run $n"')

	FOO=1 cf_to e1 -t 1m --scope-env FOO -- "$cmd"
	assert_bytes e1.out 'FOO=1 run 1\n'
	FOO=2 cf_to e2 -t 1m --scope-env FOO -- "$cmd"
	assert_bytes e2.out 'FOO=2 run 2\n'
	FOO=1 cf_to e3 -t 1m --scope-env FOO -- "$cmd"
	assert_bytes e3.out 'FOO=1 run 1\n'
	FOO=2 cf_to e4 -t 1m --scope-env FOO -- "$cmd"
	assert_bytes e4.out 'FOO=2 run 2\n'
	assert_eq "$(runs envcmd)" 2 "runs for FOO=1 and FOO=2"

	cf_to p1 -t 1m -- printf '%s|' a b
	assert_bytes p1.out 'a|b|'
	cf_to p2 -t 1m -- printf '%s|' 'a b'
	assert_bytes p2.out 'a b|'
	cf_to p3 -t 1m -- printf '%s|' a b
	assert_bytes p3.out 'a|b|'

	echo 'setting = 1' >conf
	touch -d '2020-01-01 00:00:00' conf
	cmd=$(counter_cmd filecmd "echo \"conf run \$n\"")
	cf_to c1 -t 1m --scope-file conf -- "$cmd"
	assert_bytes c1.out 'conf run 1\n'
	cf_to c2 -t 1m --scope-file conf -- "$cmd"
	assert_bytes c2.out 'conf run 1\n'
	touch -d '2021-01-01 00:00:00' conf
	cf_to c3 -t 1m --scope-file conf -- "$cmd"
	assert_bytes c3.out 'conf run 2\n'
	assert_eq "$(runs filecmd)" 2 "runs before and after touching the file"

	# the scopes shape the derived key only: with -k they are a usage error
	cf_to withkey -t 1m -k fixed --scope-env FOO -- "$cmd"
	assert_usage_error withkey
}

# --- --stdin ------------------------------------------------------------------------------

@test "--stdin: two inputs give two entries, the same input a hit, and COMMAND sees exactly the piped bytes" {
	cmd=$(counter_cmd filter "cat >\"$SCRATCH/seen.\$n\"; echo \"run \$n\"")
	head -c 100000 /dev/urandom >in1
	printf '\000\377no newline' >>in1
	printf 'second input\n' >in2

	cf_to s1 -t 1m --stdin -- "$cmd" <in1
	assert_status 0 s1
	assert_bytes s1.out 'run 1\n'
	cmp seen.1 in1

	cf_to s2 -t 1m --stdin -- "$cmd" <in2
	assert_status 0 s2
	assert_bytes s2.out 'run 2\n'
	cmp seen.2 in2

	cat in1 | cf_to s3 -t 1m --stdin -- "$cmd"
	assert_status 0 s3
	assert_bytes s3.out 'run 1\n'
	assert_eq "$(runs filter)" 2 "runs of COMMAND"
}

# --- fencing of the background refresh -------------------------------------------------------

@test "a detached refresh is fenced by its lock token: invalidated while it runs, its result is not stored" {
	cmd=$(counter_cmd val "$(note_refresher); [ \$n -gt 1 ] && { touch '$SCRATCH/started'; $(hold_until "$SCRATCH/release"); }; echo \"value \$n\"")

	store_then_expire first -t 1s -s 1m -k fence -- "$cmd"
	cf_to stale -t 1s -s 1m -k fence -- "$cmd" 3>&-
	assert_status 0 stale
	assert_bytes stale.out 'value 1\n'

	wait_for_file started 30 || { touch release; false; }
	cf_to inv invalidate fence
	touch release
	assert_status 0 inv
	wait_refresher_done 30

	assert_eq "$(runs val)" 2 "runs of COMMAND"
	cf_to got get fence
	assert_status 1 got
	assert_empty got.out
}

# --- --refresh -----------------------------------------------------------------------------

@test "--refresh runs COMMAND under the lock and replaces the entry while readers keep getting the old one" {
	cmd=$(counter_cmd val "[ \$n -gt 1 ] && { touch '$SCRATCH/started'; $(hold_until "$SCRATCH/release"); }; echo \"value \$n\"")

	cf_to first -t 1h -k warm -- "$cmd"
	assert_bytes first.out 'value 1\n'

	cf_bg refresher --refresh -t 1h -k warm -- "$cmd"
	wait_for_file started 30 || { touch release; false; }
	cf_to reader -t 1h -k warm -- "$cmd"
	touch release
	assert_status 0 reader
	assert_bytes reader.out 'value 1\n'

	assert_eq "$(bg_status refresher 60)" 0 "status of --refresh"
	assert_bytes refresher.out 'value 2\n'
	cf_to got get warm
	assert_bytes got.out 'value 2\n'
	assert_eq "$(runs val)" 2 "runs of COMMAND"
}
