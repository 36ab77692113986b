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

# --- names that try to collide ------------------------------------------------------------

# run cf ARGS... as call NAME and fail unless it printed exactly BYTES, exited 0
# and said nothing on stderr
clean_run() {
	local name=$1 bytes=$2
	shift 2
	cf_to "$name" "$@"
	assert_status 0 "$name"
	assert_bytes "$name.out" "$bytes"
	assert_empty "$name.err"
}

@test "a tag named like another namespace's counters leaves that namespace's runs and stats intact" {
	# `-n a --tag b:stats` once named the counters hash of namespace a:tag:b
	clean_run tagged 'tagged' -n a --tag b:stats -t 1m -k x -- printf tagged
	clean_run miss 'one' -n a:tag:b -t 1m -k k -- printf one
	clean_run hit 'one' -n a:tag:b -t 1m -k k -- printf two
	assert_eq "$(rcli EXISTS 'a:tag:b:{k}:lock')" 0 "locks left in namespace a:tag:b"
	cf_to stats -n a:tag:b stats --json
	assert_status 0 stats
	assert_eq "$(jq -c '[.hits, .misses, .fail_open_runs]' stats.out)" "[1,1,0]" "hits, misses, fail-open runs of a:tag:b"
	# and the other way round: the counters first, then the tag
	clean_run tagged2 'again' -n a --tag b:stats -t 1m -k y -- printf again
	cf_to inval -n a invalidate --tag b:stats
	assert_bytes inval.out '2\n'
	clean_run hit2 'one' -n a:tag:b -t 1m -k k -- printf three
}

@test "a tag named like another namespace's entry, and keys named like tag sets and counters, stay apart" {
	# the entry of key x in namespace a:tag was once a:tag:{x}, the name
	# of tag {x} in namespace a
	clean_run entry 'entry of x' -n a:tag -t 1m -k x -- printf 'entry of x'
	clean_run tagged 'tagged other' -n a --tag '{x}' -t 1m -k other -- printf 'tagged other'
	clean_run hit 'entry of x' -n a:tag -t 1m -k x -- printf recomputed
	# keys spelled like the tag sets and the counters of their own namespace
	clean_run pct 'pct' -n a --tag t -t 1m -k '%tag:t' -- printf pct
	clean_run stats 'st' -n a --tag t -t 1m -k '%stats' -- printf st
	clean_run pct2 'pct' -n a -t 1m -k '%tag:t' -- printf recomputed
	cf_to list -n a list --json
	assert_status 0 list
	assert_eq "$(jq -r .key list.out | LC_ALL=C sort | tr '\n' ' ')" '%stats %tag:t other ' "keys listed in a"
	cf_to counters -n a stats --json
	assert_eq "$(jq -c '[.hits, .misses, .fail_open_runs]' counters.out)" "[1,3,0]" "hits, misses, fail-open runs of a"
	cf_to byx -n a invalidate --tag '{x}'
	assert_bytes byx.out '1\n'
	cf_to byt -n a invalidate --tag t
	assert_bytes byt.out '2\n'
	clean_run kept 'entry of x' -n a:tag -t 1m -k x -- printf recomputed
	cf_to none -n a list --json
	assert_empty none.out
}

@test "every name one run writes starts with its namespace and one brace tag" {
	cf_to one -n 'odd:ns' --tag 'a}b' --tag '%' -t 1m -k 'k}%' -- printf x
	assert_status 0 one
	rcli --scan >names
	assert_eq "$(grep -cv '^odd:ns:{' names)" 0 "names outside odd:ns:{"
	grep -qxF 'odd:ns:{k%7D%25}' names
	grep -qxF 'odd:ns:{%tag:a%7Db}' names
	grep -qxF 'odd:ns:{%tag:%25}' names
	grep -qxF 'odd:ns:{%stats}' names
}

# --- slow and broken links (tests/lib/relay.py) --------------------------------------------

# start a relay to the suite's Redis with relay.py's ARGS; sets RELAY_URL
# (its pid goes to relay.pid, so common_teardown stops it)
relay_start() {
	(
		python3 "$BATS_TEST_DIRNAME/lib/relay.py" --to "$REDIS_PORT" --port-file relay.port \
			--lifetime 300 "$@" </dev/null >relay.log 2>&1 3>&- &
		echo $! >relay.pid
	)
	wait_for_file relay.port 10 || { echo "the relay did not start:" >&2; cat relay.log >&2; return 1; }
	RELAY_URL=redis://127.0.0.1:$(cat relay.port)
}

# cf ARGS... as call NAME (see cf_to), its wall-clock milliseconds in $took
timed_cf_to() {
	local start
	start=$(date +%s%N)
	cf_to "$@"
	took=$((($(date +%s%N) - start) / 1000000))
}

# fail unless the last timed_cf_to took less than MS milliseconds
assert_took_less() {
	((took < $1)) && return 0
	echo "took ${took} ms, the bound is $1 ms" >&2
	return 1
}

# a file of N bytes of lines that say WORD
payload_file() {
	yes "$2" | head -c "$3" >"$1"
}

@test "a 100 kB hit through a link that trickles 2,000 B/s ends within --redis-timeout: COMMAND runs uncached, one warning" {
	payload_file stored.txt stored 100000
	cf_to seed -t 1h -k trickled -- cat stored.txt
	assert_status 0 seed
	relay_start --mode trickle:2000
	CF_TIMEOUT=20 timed_cf_to slow -u "$RELAY_URL" --redis-timeout 1s -t 1h -k trickled -- printf 'ran live'
	assert_status 0 slow
	assert_bytes slow.out 'ran live'
	assert_one_line slow.err "cachefence: warning: "
	grep -q 'redis-timeout' slow.err
	# 1 s, plus 100 kB at the 1 MiB/s floor, plus the start and COMMAND
	assert_took_less 3000
}

@test "a small reply that trickles a byte at a time is bounded as a whole, not per read" {
	cf_to seed -t 1h -k k -- printf x
	echo trickle:20 >relay.mode
	relay_start --mode-file relay.mode
	# stats's reply is some 400 bytes: 20 s at this rate, each read well
	# within --redis-timeout
	CF_TIMEOUT=20 timed_cf_to stats -u "$RELAY_URL" --redis-timeout 1s stats
	assert_usage_error stats
	grep -q 'redis-timeout' stats.err
	assert_took_less 3000
	# invalidate's reply is 4 bytes: 2 s at 2 B/s, a byte every 0.5 s
	echo trickle:2 >relay.mode
	CF_TIMEOUT=20 timed_cf_to inval -u "$RELAY_URL" --redis-timeout 1s invalidate k
	assert_usage_error inval
	assert_took_less 3000
}

@test "a 2 MiB value that trickles at 100 kB/s is cut at its size's budget: exit 125 with the cut-off line" {
	payload_file big.txt big 2097152
	cf_to seed -t 1h -k big -- cat big.txt
	assert_status 0 seed
	relay_start --mode trickle:100000
	# budget: 1 s + 2 MiB at 1 MiB/s = 3 s; the whole value would take 21 s
	CF_TIMEOUT=30 timed_cf_to get -u "$RELAY_URL" --redis-timeout 1s get big
	assert_status 125 get
	assert_one_line get.err
	grep -q 'redis-timeout' get.err
	assert_took_less 6000
	CF_TIMEOUT=30 timed_cf_to hit -u "$RELAY_URL" --redis-timeout 1s -t 1h -k big -- printf 'not run'
	assert_status 125 hit
	grep -q 'cut off' hit.err
	assert_took_less 6000
	[[ $(head -c 3 hit.out) == big ]] || { echo "no part of the value came out" >&2; false; }
}

# --- a refresh racing a large read ---------------------------------------------------------------

@test "reads of a 2 MiB entry that --refresh keeps replacing each see one run whole: bytes, stderr and status" {
	# two runs of the same size whose stdout, stderr and status all differ
	payload_file A.out AAAAAAA 2097152
	payload_file B.out BBBBBBB 2097152
	cat >payload <<-EOF
		#!/bin/sh
		cat "$SCRATCH/\$1.out"
		printf 'stderr of %s' "\$1" >&2
		[ "\$1" = A ] || exit 3
	EOF
	chmod +x payload
	opts=(-t 1h -k racy --cache-failures --cache-stderr)
	cf_to seed "${opts[@]}" -- ./payload A
	assert_status 0 seed

	# the refresher: only --refresh traffic, A and B in turn
	(
		i=0
		while [[ ! -e stop ]] && ((i < 2000)); do
			i=$((i + 1))
			run=A
			((i % 2)) && run=B
			"$CACHEFENCE_BIN" "${opts[@]}" --refresh -- ./payload "$run" >/dev/null 2>&1 || true
		done
	) </dev/null 3>&- &
	echo $! >refresher.pid

	# four readers, each checking every read belongs to one run
	for r in 1 2 3 4; do
		(
			for i in $(seq 75); do
				st=0
				"$CACHEFENCE_BIN" "${opts[@]}" -- ./payload A >"out.$r" 2>"err.$r" || st=$?
				if cmp -s "out.$r" A.out; then want_err='stderr of A' want_st=0
				elif cmp -s "out.$r" B.out; then want_err='stderr of B' want_st=3
				else echo "read $i: stdout is neither run's ($(wc -c <"out.$r") bytes)"; continue
				fi
				[[ $(cat "err.$r") == "$want_err" && $st == "$want_st" ]] ||
					echo "read $i: mixed: stdout of one run, stderr '$(head -c 60 "err.$r")', status $st"
			done >"mixed.$r"
			touch "done.$r"
		) </dev/null 3>&- &
	done
	for r in 1 2 3 4; do
		wait_for_file "done.$r" 300 || { touch stop; echo "reader $r did not finish" >&2; false; }
	done
	touch stop
	wait "$(cat refresher.pid)" || true
	cat mixed.* >mixed
	refreshes=$(cf stats --json | jq .misses)
	echo "refreshes during the reads: $refreshes" >&2
	((refreshes > 20)) || { echo "too few refreshes to race the reads" >&2; false; }
	[[ ! -s mixed ]] || { echo "$(wc -l <mixed) of 300 reads mixed two runs:" >&2; head -5 mixed >&2; false; }
}

# --- invalidate fences what already runs ---------------------------------------------------------

# start a first computation of KEY (no entry yet) with ARGS..., held until
# the file go exists; returns once it holds the lock
start_held_leader() {
	local name=$1 key=$2
	shift 2
	cf_bg "$name" -t 1h -k "$key" "$@" -- sh -c "$(hold_until go); echo 'computed from the old data'"
	for _ in $(seq 100); do
		[[ $(rcli EXISTS "cachefence:{$key}:lock") == 1 ]] && return 0
		sleep 0.1
	done
	echo "the leader of $key never took its lock" >&2
	return 1
}

@test "invalidate --match fences a first computation already running: its caller gets its output, nothing is stored" {
	start_held_leader lead user:1
	start_held_leader other account:1
	cf_to inval invalidate --match 'user:*'
	assert_status 0 inval
	assert_bytes inval.out '0\n'
	touch go
	assert_eq "$(bg_status lead)" 0 "status of the fenced leader"
	assert_bytes lead.out 'computed from the old data\n'
	assert_eq "$(bg_status other)" 0 "status of the other leader"
	cf_to got get user:1
	assert_status 1 got
	cf_to kept get account:1
	assert_status 0 kept
	assert_bytes kept.out 'computed from the old data\n'
}

@test "invalidate --tag fences a first computation already running under the tag, and leaves other tags' runs alone" {
	start_held_leader lead report --tag users --tag weekly
	start_held_leader other summary --tag billing
	cf_to inval invalidate --tag weekly
	assert_status 0 inval
	assert_bytes inval.out '0\n'
	touch go
	assert_eq "$(bg_status lead)" 0 "status of the fenced leader"
	assert_bytes lead.out 'computed from the old data\n'
	assert_eq "$(bg_status other)" 0 "status of the other leader"
	cf_to got get report
	assert_status 1 got
	cf_to kept get summary
	assert_status 0 kept
	# the next run stores as usual, and is filed under its tags again
	cf_to again -t 1h -k report --tag users --tag weekly -- echo new
	assert_bytes again.out 'new\n'
	assert_eq "$(rcli EXISTS 'cachefence:{%run:users}' 'cachefence:{%run:weekly}')" 0 "run sets left by a finished run"
	cf_to byusers invalidate --tag users
	assert_bytes byusers.out '1\n'
}

@test "a run's pending tag outlives a lease it keeps renewing, so invalidate --tag still finds it" {
	start_held_leader lead slow --tag t --lock-lease 1s
	sleep 2.5 # past the first lease: the tag set lives on renewals alone
	cf_to inval invalidate --tag t
	assert_status 0 inval
	touch go
	assert_eq "$(bg_status lead)" 0 "status of the fenced leader"
	cf_to got get slow
	assert_status 1 got
}

