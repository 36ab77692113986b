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
	# the counters and tag sets of the entry's slot: {%W} is its slot's tag
	slot='odd:ns:\{%[@A-O]{4}\}'
	grep -qxE "$slot:tag:a%7Db" names
	grep -qxE "$slot:tag:%25" names
	grep -qxE "$slot:stats" names
	assert_eq "$(grep -oE '^odd:ns:\{%[@A-O]+\}' names | sort -u | wc -l)" 1 "slots of one run's counters and tags"
	# ... and that slot is the entry's (CRC16 of the brace tag, as Redis Cluster hashes)
	w=$(grep -oE '^odd:ns:\{%[@A-O]+\}' names | head -1 | sed 's/^odd:ns:{\(.*\)}$/\1/')
	assert_eq "$(python3 -c 'import binascii, sys; print(*(binascii.crc_hqx(a.encode(), 0) % 16384 for a in sys.argv[1:]))' "$w" 'k%7D%25')" \
		"$(python3 -c 'import binascii, sys; s = binascii.crc_hqx(sys.argv[1].encode(), 0) % 16384; print(s, s)' 'k%7D%25')" \
		"slot of the counters and of the entry"
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
	assert_eq "$(redis_names 'cachefence:{%*}:run:*')" "" "run sets left by a finished run"
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

# --- servers and users that refuse part of what a run needs -----------------------------------

# a server on loopback that answers every connection with the RESP error
# line TEXT and closes it, as Redis does in protected mode or out of
# connections; sets REFUSER_URL
refuser_start() {
	cat >refuser.py <<-'PY'
		import os, socket, sys, threading, time
		line = sys.argv[2].encode() + b"\r\n"
		l = socket.socket()
		l.bind(("127.0.0.1", 0))
		l.listen(64)
		with open(sys.argv[1] + ".tmp", "w") as f:
		    f.write(str(l.getsockname()[1]))
		os.rename(sys.argv[1] + ".tmp", sys.argv[1])
		threading.Timer(120, lambda: os._exit(0)).start()
		def serve(c):
		    c.sendall(line)
		    c.shutdown(socket.SHUT_WR)
		    time.sleep(0.3)
		    c.close()
		while True:
		    c, _ = l.accept()
		    threading.Thread(target=serve, args=(c,), daemon=True).start()
	PY
	rm -f refuser.port
	(
		python3 refuser.py refuser.port "$1" </dev/null >refuser.log 2>&1 3>&- &
		echo $! >refuser.pid
	)
	wait_for_file refuser.port 10 || { cat refuser.log >&2; return 1; }
	REFUSER_URL=redis://127.0.0.1:$(cat refuser.port)
}

# what a Redis server in protected mode sends a client it turns away
PROTECTED="-DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to Redis you may adopt one of the following solutions: 1) Just disable protected mode sending the command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the same host the server is running, however MAKE SURE Redis is not publicly accessible from internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable the protected mode by editing the Redis configuration file, and setting the protected mode option to 'no', and then restarting the server. 3) If you started the server manually just for testing, restart it with the '--protected-mode no' option. 4) Set up an authentication password for the default user. NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside."

@test "a server that turns the client away at connect (protected mode) is named with its own text by run, get and ping" {
	refuser_start "$PROTECTED"
	cf_to run -u "$REFUSER_URL" -t 1m -k k -- printf 'ran anyway'
	assert_status 0 run
	assert_bytes run.out 'ran anyway'
	assert_one_line run.err 'cachefence: warning: '
	grep -q 'refused us: DENIED Redis is running in protected mode' run.err
	for sub in ping "get k"; do
		cf_to sub -u "$REFUSER_URL" $sub
		assert_usage_error sub
		grep -q 'DENIED Redis is running in protected mode' sub.err ||
			{ echo "$sub: $(cat sub.err)" >&2; false; }
	done
}

@test "a real server out of connections (maxclients) is named with its own text" {
	redis_spawn "$SCRATCH" full --maxclients 1 # in SCRATCH: teardown kills it
	echo "$SPAWNED_PID" >full.pid
	url=redis://127.0.0.1:$SPAWNED_PORT
	exec 7<>"/dev/tcp/127.0.0.1/$SPAWNED_PORT" # the one client it takes
	printf 'PING\r\n' >&7
	read -r -t 5 pong <&7
	cf_to run -u "$url" -t 1m -k k -- printf 'ran anyway'
	assert_status 0 run
	assert_bytes run.out 'ran anyway'
	assert_one_line run.err 'cachefence: warning: '
	grep -q 'refused us: ERR max number of clients reached' run.err
	cf_to ping -u "$url" ping
	assert_usage_error ping
	grep -q 'refused us: ERR max number of clients reached' ping.err
	exec 7>&-
}

# create ACL user NAME (password pw) with RULES... on the suite's server
acl_user() {
	local name=$1
	shift
	[[ $(rcli ACL SETUSER "$name" reset on '>pw' "$@") == OK ]]
	echo "redis://$name:pw@127.0.0.1:$REDIS_PORT"
}

@test "ping names the command, keys or channels an ACL user lacks, and what a run would suffer" {
	all=(allchannels '+@all')
	checks=(
		"nochan|~cachefence:* resetchannels +@all|PUBLISH (channels cachefence:*): waiters would not be woken"
		"nosub|~cachefence:* ${all[*]} -subscribe|cannot run SUBSCRIBE: waiters would not be woken"
		"nokey|~other:* ${all[*]}|cannot access keys cachefence:* (add ~cachefence:* to it): every run would fail open"
		"noeval|~cachefence:* ${all[*]} -eval|cannot run EVAL: every run would fail open"
		"noevalsha|~cachefence:* ${all[*]} -evalsha|cannot run EVALSHA: every run would fail open"
		"norename|~cachefence:* ${all[*]} -rename|cannot run RENAME: every run would fail open"
		"noscan|~cachefence:* ${all[*]} -scan|cannot run SCAN: list and invalidate --match would fail"
		"nosscan|~cachefence:* ${all[*]} -sscan|cannot run SSCAN: invalidate --tag would fail"
		"nohmget|~cachefence:* ${all[*]} -hmget|cannot run HMGET: every run would fail open"
	)
	for c in "${checks[@]}"; do
		IFS='|' read -r name rules want <<<"$c"
		# shellcheck disable=SC2086 # the rules are words
		url=$(acl_user "$name" $rules)
		cf_to "$name" -u "$url" ping
		assert_usage_error "$name"
		grep -qF "cachefence: ping: " "$name.err"
		grep -qF "$want" "$name.err" || { echo "$name: expected '$want', got: $(cat "$name.err")" >&2; false; }
	done
	url=$(acl_user fine '~cachefence:*' allchannels '+@all')
	cf_to fine -u "$url" ping
	assert_status 0 fine
	grep -q 'scripts loaded' fine.out
	# SCRIPT is not needed: EVAL loads a script on first use
	url=$(acl_user noscript '~cachefence:*' allchannels '+@all' -script)
	cf_to noscript -u "$url" ping
	assert_status 0 noscript
	grep -q 'scripts load on first use' noscript.out
	grep -q 'a dead leader is taken over at once' fine.out
	# without CLIENT a waiter cannot see that a leader's connection is gone:
	# ping still passes, and says takeover waits for the lease
	url=$(acl_user noclient '~cachefence:*' allchannels '+@all' -client)
	cf_to noclient -u "$url" ping
	assert_status 0 noclient
	grep -q 'a dead leader is taken over after its lease (CLIENT ID is refused)' noclient.out
	url=$(acl_user nolist '~cachefence:*' allchannels '+@all' '-client|list')
	cf_to nolist -u "$url" ping
	assert_status 0 nolist
	grep -q 'a dead leader is taken over after its lease (CLIENT LIST is refused)' nolist.out
	assert_eq "$(rcli --scan --pattern 'cachefence:*' | wc -l)" 0 "probe keys left behind"
}

@test "ping names EVAL or EVALSHA renamed away on the server" {
	for cmd in EVAL EVALSHA; do
		redis_spawn "$SCRATCH" "renamed-$cmd" --rename-command "$cmd" ''
		echo "$SPAWNED_PID" >"renamed-$cmd.pid"
		cf_to "$cmd" -u "redis://127.0.0.1:$SPAWNED_PORT" ping
		kill "$SPAWNED_PID"
		assert_usage_error "$cmd"
		grep -qF "the server has no $cmd command (renamed or disabled): every run would fail open" "$cmd.err" ||
			{ cat "$cmd.err" >&2; false; }
	done
}

@test "an ACL user without channel access stores its result and is not told otherwise" {
	url=$(acl_user quiet '~cachefence:*' resetchannels '+@all')
	cf_to run -u "$url" -t 1m -k k -- printf 'the result'
	assert_status 0 run
	assert_bytes run.out 'the result'
	assert_empty run.err
	cf_to got get k
	assert_status 0 got
	assert_bytes got.out 'the result'
	# and an interrupted run gives its lock back all the same
	cf_bg lead -u "$url" -t 1m -k held -- sleep 30
	for _ in $(seq 100); do
		[[ $(rcli EXISTS 'cachefence:{held}:lock') == 1 ]] && break
		sleep 0.1
	done
	kill -TERM "$(bg_pid lead)"
	assert_eq "$(bg_status lead)" 143 "status of the interrupted run"
	assert_eq "$(rcli EXISTS 'cachefence:{held}:lock')" 0 "locks left"
}

@test "waiters that may not SUBSCRIBE poll instead: 20 callers, one run, no warning" {
	url=$(acl_user deaf '~cachefence:*' resetchannels '+@all')
	cmd=$(counter_cmd slow 'sleep 1; echo "result of run $n"')
	gate_close
	for i in $(seq 20); do
		cf_bg "c$i" -u "$url" -t 1m -k flight -- "$cmd"
	done
	gate_open
	for i in $(seq 20); do
		assert_eq "$(bg_status "c$i")" 0 "status of caller $i"
		assert_bytes "c$i.out" 'result of run 1\n'
		assert_empty "c$i.err"
	done
	assert_eq "$(runs slow)" 1 "runs of COMMAND"
}
