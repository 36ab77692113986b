#!/usr/bin/env bats
# Fault injection against a real redis-server: the server restarted, paused,
# killed or frozen under a leader and its waiters, out of memory, evicting
# locks, read-only, a connection cut in the middle of a reply, signals to
# every kind of caller, and the password kept out of sight. The promise under
# test: putting cachefence in front of a command never makes things worse.
# COMMAND's output and status reach the caller, nothing hangs past its bound,
# and no caller is handed bytes of another key or a torn entry.
#
# Redis only, over plain TCP and over TLS. Tests that break the server leave it to teardown, which starts
# a fresh one on the same port when the test asked for it or the server does
# not answer. Timing is only ever bounded generously: a 2-core machine with a
# CI run next door must not fail a test.

load lib/common

setup_file() {
	store_start
	# the bats process that owns the suite's server, for the watchdog of a
	# server a test starts again (redis_up)
	echo "$BASHPID" >"$BATS_FILE_TMPDIR/owner"
}

teardown_file() {
	# a test may have replaced the server: stop the one that runs now
	[[ -s $BATS_FILE_TMPDIR/redis.pid ]] && REDIS_PID=$(<"$BATS_FILE_TMPDIR/redis.pid")
	store_stop
}

setup() {
	require_redis
	[[ -s $BATS_FILE_TMPDIR/redis.pid ]] && REDIS_PID=$(<"$BATS_FILE_TMPDIR/redis.pid")
	common_setup
}

teardown() {
	common_teardown
	store_is_redis || return 0
	[[ -n ${REDIS_PID:-} ]] && kill -CONT "$REDIS_PID" 2>/dev/null
	local port
	for port in $(store_ports); do redis_cli_at "$port" CLIENT UNPAUSE >/dev/null 2>&1 || true; done
	# a cluster's primaries get their memory back (the only setting a test
	# changes there); a server whose configuration a test changed (a
	# password, maxmemory, an eviction policy) or left down, a fresh one
	if [[ $CACHEFENCE_TEST_STORE == cluster ]]; then
		limit_memory 0
	elif [[ -e $BATS_TEST_TMPDIR/restart-redis || $(rcli PING 2>/dev/null) != PONG ]]; then
		redis_down
		redis_up
	fi
}

# --- the server ---------------------------------------------------------------------

# ask teardown for a fresh server after this test
restart_after_test() {
	touch "$BATS_TEST_TMPDIR/restart-redis"
}

# the servers a run may write to: the one, or every primary of a cluster
store_ports() {
	if [[ $CACHEFENCE_TEST_STORE == cluster ]]; then
		echo $CLUSTER_PRIMARIES
	else
		echo "$REDIS_PORT"
	fi
}

# maxmemory EXTRA bytes above what each server (see store_ports) uses now,
# with noeviction; EXTRA 0: no limit again
limit_memory() {
	local port used
	for port in $(store_ports); do
		if (($1 == 0)); then
			redis_cli_at "$port" CONFIG SET maxmemory 0 >/dev/null
			continue
		fi
		used=$(redis_cli_at "$port" INFO memory | tr -d '\r' | sed -n 's/^used_memory://p')
		redis_cli_at "$port" CONFIG SET maxmemory-policy noeviction >/dev/null
		redis_cli_at "$port" CONFIG SET maxmemory $((used + $1)) >/dev/null
	done
}

# the value of INFO field NAME (used_memory, evicted_keys, ...)
redis_info() {
	rcli INFO | tr -d '\r' | sed -n "s/^$1:\\([^ ]*\\)\$/\\1/p"
}

# --- callers --------------------------------------------------------------------------

# sig_bg NAME [--out FILE] ARGS...: like cf_bg, but cachefence starts with
# SIGINT, SIGPIPE and SIGXFSZ at their defaults, as a foreground job of an
# interactive shell does (an asynchronous job of this shell would start with
# SIGINT ignored, and python3, which resets it, ignores SIGPIPE). Its stdout
# goes to NAME.out, or to FILE.
sig_bg() {
	local name=$1 out=$1.out
	shift
	if [[ $1 == --out ]]; then
		out=$2
		shift 2
	fi
	(
		python3 -c 'import os, signal, sys
for s in (signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ):
    signal.signal(s, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])' "$CACHEFENCE_BIN" "$@" >"$out" 2>"$name.err" &
		echo $! >"$name.pid.tmp" # renamed into place: never read empty
		mv "$name.pid.tmp" "$name.pid"
		st=0
		wait $! || st=$?
		echo $st >"$name.status.tmp"
		mv "$name.status.tmp" "$name.status"
	) </dev/null 3>&- 8>&- &
}

# fail unless every line of FILE starts with "cachefence: " and there are at
# most MAX (default 1) of them
assert_warnings() {
	local file=$1 max=${2:-1} lines
	lines=$(awk 'END { print NR }' "$file")
	if ((lines <= max)) && ! grep -qv '^cachefence: ' "$file"; then
		return 0
	fi
	echo "$file: expected at most $max line(s) starting 'cachefence: ', got $lines:" >&2
	head -c 2000 "$file" >&2
	return 1
}

# fail unless the entry of user KEY is absent, or holds exactly one line
# matching the extended regex RE
assert_entry_whole() {
	local key=$1 re=$2
	cf_to "entry-$key" get "$key"
	[[ $status == 1 ]] && return 0
	assert_status 0 "entry-$key"
	if [[ $(awk 'END { print NR }' "entry-$key.out") == 1 ]] && grep -Eqx -- "$re" "entry-$key.out"; then
		return 0
	fi
	echo "the entry of $key is not one whole result matching /$re/:" >&2
	head -c 2000 "entry-$key.out" >&2
	return 1
}

# fail if any key of the namespace is a leftover stage (a half-written result)
assert_no_stage_keys() {
	local left
	left=$(redis_names 'cachefence:*:stage:*')
	[[ -z $left ]] && return 0
	echo "stage keys left behind:" >&2
	echo "$left" >&2
	return 1
}

# --- the server restarted, paused, killed, frozen ------------------------------------

@test "Redis restarted without persistence while a leader runs: its waiters reconnect and wait for it, the leader stores, and everyone gets run 1's output and status (SPEC 9.5)" {
	require_standalone # restarts the one server (cluster.bats kills a primary)
	cmd=$(counter_cmd job "if [ \$n -eq 1 ]; then touch started; $(hold_until "$SCRATCH/go"); fi; echo \"result of run \$n\"")
	opts=(--redis-timeout 1s --lock-lease 2s -t 1m -k job)

	cf_bg leader "${opts[@]}" -- "$cmd"
	wait_for_file started 30
	for i in 1 2 3; do
		cf_bg "waiter$i" "${opts[@]}" -- "$cmd"
	done
	wait_for_stat waits 3 30

	redis_down
	redis_up
	# more than a lease later, the waiters still wait for the leader, which
	# is alive and renews: a restart does not make them run COMMAND
	sleep 3
	for i in 1 2 3; do
		[[ ! -e waiter$i.status ]] || { echo "waiter $i ended:" >&2; cat "waiter$i.out" "waiter$i.err" >&2; false; }
	done
	assert_eq "$(runs job)" 1 "runs of COMMAND before the leader ends"

	touch go
	assert_eq "$(bg_status leader 60)" 0 "status of the leader"
	assert_bytes leader.out 'result of run 1\n'
	# at most: cannot renew the lock, cannot store the result
	assert_warnings leader.err 2
	for i in 1 2 3; do
		assert_eq "$(bg_status "waiter$i" 60)" 0 "status of waiter $i"
		assert_bytes "waiter$i.out" 'result of run 1\n'
		assert_warnings "waiter$i.err" 1
	done
	assert_eq "$(runs job)" 1 "runs of COMMAND"

	assert_entry_whole job 'result of run [0-9]+'
	assert_no_stage_keys
	# the store works again for the next caller
	cf_to after -t 1m -k after -- "$cmd"
	assert_status 0 after
	assert_empty after.err
}

@test "Redis paused with CLIENT PAUSE longer than --redis-timeout: a hit becomes a fail-open run within twice the timeout plus COMMAND's time" {
	cmd=$(counter_cmd paused 'if [ $n -gt 1 ]; then sleep 1; fi; echo "live run $n"; exit 3')

	cf_to first -t 1h --cache-failures -k paused -- "$cmd"
	assert_status 3 first
	cf_to hit -t 1h --cache-failures -k paused -- "$cmd"
	assert_bytes hit.out 'live run 1\n'

	local port
	for port in $(store_ports); do
		assert_eq "$(redis_cli_at "$port" CLIENT PAUSE 30000 ALL)" OK "CLIENT PAUSE"
	done
	SECONDS=0
	cf_to during --redis-timeout 1s -t 1h --cache-failures -k paused -- "$cmd"
	elapsed=$SECONDS
	for port in $(store_ports); do redis_cli_at "$port" CLIENT UNPAUSE >/dev/null; done

	assert_status 3 during
	assert_bytes during.out 'live run 2\n'
	assert_one_line during.err "cachefence: warning: store unavailable:"
	# bound: the lookup's timeout, the fail-open count's timeout on the same
	# connection, COMMAND's 1 s, and slack; the pause itself lasts 30 s
	((elapsed <= 2 * 1 + 1 + 8)) || { echo "took ${elapsed}s with --redis-timeout 1s" >&2; false; }

	cf_to again -t 1h --cache-failures -k paused -- "$cmd"
	assert_status 3 again
	assert_bytes again.out 'live run 1\n'
	assert_empty again.err
}

@test "Redis killed while 50 waiters wait: every waiter returns within --redis-timeout + lease + COMMAND time + 15 s, none with empty output and exit 0" {
	require_standalone # kills the one server (cluster.bats kills a primary)
	cmd=$(counter_cmd job "if [ \$n -eq 1 ]; then touch started; $(hold_until "$SCRATCH/go"); fi; echo \"result of run \$n\"")
	# 3 s: 50 TLS handshakes at once on a loaded 2-core CI machine (ASan)
	# took more than 1 s for some, which then ran uncached before the kill
	opts=(--redis-timeout 3s --lock-lease 2s -t 1m -k killed)

	cf_bg leader "${opts[@]}" -- "$cmd"
	wait_for_file started 30
	gate_close
	for i in $(seq 50); do
		cf_bg "w$i" "${opts[@]}" -- "$cmd"
	done
	gate_open
	wait_for_stat waits 50 60

	restart_after_test
	kill -KILL "$REDIS_PID"
	killed_at=$EPOCHREALTIME
	# every waiter's status, and when it ended (s after the kill)
	for i in $(seq 50); do
		st=$(bg_status "w$i" 60) || st=hung
		printf 'w%s %s %s\n' "$i" "$st" "$(stat -c %.3Y "w$i.status" 2>/dev/null || echo "$EPOCHREALTIME")" >>ended
	done
	awk -v t0="$killed_at" '{ printf "%s %s %.1f\n", $1, $2, $3 - t0 }' ended >ended.rel
	# the bound: --redis-timeout 3 s + lease 2 s + COMMAND ~0 s + 15 s slack
	slow=$(awk '$3 > 3 + 2 + 0 + 15' ended.rel)
	[[ -z $slow ]] || { echo "waiters that took longer than 20 s (name status seconds):" >&2; echo "$slow" >&2; false; }
	for i in $(seq 50); do
		st=$(cat "w$i.status")
		if [[ $st == 0 && ! -s w$i.out ]]; then
			echo "waiter $i: exit 0 with empty output" >&2
			false
		fi
		assert_eq "$st" 0 "status of waiter $i" || {
			echo "statuses: $(cut -d' ' -f2 ended.rel | sort | uniq -c | xargs)" >&2
			echo "stderr of waiter $i:" >&2
			cat "w$i.err" >&2
			false
		}
		grep -Eqx 'result of run [0-9]+' "w$i.out" || { cat "w$i.out" >&2; false; }
		assert_warnings "w$i.err" 1
	done

	touch go
	assert_eq "$(bg_status leader 60)" 0 "status of the leader"
	assert_bytes leader.out 'result of run 1\n'
	assert_warnings leader.err 2
}

@test "Redis frozen with SIGSTOP while 20 waiters wait: every waiter fails open within 1 s + 2 x --redis-timeout + COMMAND time + 15 s" {
	require_standalone # freezes the one server; a cluster fails a frozen primary over
	cmd=$(counter_cmd job "if [ \$n -eq 1 ]; then touch started; $(hold_until "$SCRATCH/go"); fi; echo \"result of run \$n\"")
	opts=(--redis-timeout 1s --lock-lease 30s -t 1m -k frozen)

	cf_bg leader "${opts[@]}" -- "$cmd"
	wait_for_file started 30
	for i in $(seq 20); do
		cf_bg "w$i" "${opts[@]}" -- "$cmd"
	done
	wait_for_stat waits 20 60

	# no FIN reaches the waiters: they find out on their next look (at most
	# 1 s apart), which times out
	kill -STOP "$REDIS_PID"
	SECONDS=0
	for i in $(seq 20); do
		assert_eq "$(bg_status "w$i" 60)" 0 "status of waiter $i"
		grep -Eqx 'result of run [0-9]+' "w$i.out" || { cat "w$i.out" >&2; false; }
		assert_one_line "w$i.err" "cachefence: warning: store unavailable:"
	done
	elapsed=$SECONDS
	kill -CONT "$REDIS_PID"
	((elapsed <= 1 + 2 * 1 + 0 + 15)) || { echo "the waiters took ${elapsed}s" >&2; false; }

	touch go
	assert_eq "$(bg_status leader 60)" 0 "status of the leader"
	assert_bytes leader.out 'result of run 1\n'
	assert_warnings leader.err 2
	assert_entry_whole frozen 'result of run [0-9]+'
}

# --- out of memory, eviction ------------------------------------------------------------

@test "maxmemory with noeviction: a store refused with OOM, or a server already full, leaves the caller's output and status intact with one warning line; stats counts the refused store" {
	restart_after_test
	head -c 1500000 /dev/urandom | base64 -w0 >bigdata
	big=$(counter_cmd big "cat '$SCRATCH/bigdata'; exit 4")
	small=$(counter_cmd small 'echo "small run $n"; exit 3')

	cf_to kept -t 1h --cache-failures -k kept -- "$small"
	assert_status 3 kept

	# room for the lookups, not for a 2 MB result
	limit_memory $((512 * 1024))

	cf_to refused -t 1h --cache-failures -k big -- "$big"
	assert_status 4 refused
	cmp refused.out bigdata
	assert_one_line refused.err "cachefence: warning:"
	grep -q OOM refused.err
	assert_eq "$(rcli EXISTS 'cachefence:{big}')" 0 "entries stored"
	assert_no_stage_keys
	# the refused store is counted: once the big write is turned away
	# there is room again for the counter
	assert_eq "$(stat_value stores_failed)" 1 "stores_failed"
	cf_to stats stats
	grep -Eqx 'stores_failed +1' stats.out

	# over maxmemory already: even the lookup's bookkeeping is refused, so
	# the run is fail-open
	limit_memory $((-100 * 1024))
	cf_to full -t 1h --cache-failures -k other -- "$small"
	assert_status 3 full
	assert_bytes full.out 'small run 2\n'
	assert_one_line full.err "cachefence: warning: store unavailable:"
	grep -q OOM full.err
	cf_to fullhit -t 1h --cache-failures -k kept -- "$small"
	assert_status 3 fullhit
	grep -Eqx 'small run [13]' fullhit.out
	assert_at_most_one_line fullhit.err

	limit_memory 0
	cf_to hit -t 1h --cache-failures -k kept -- "$small"
	assert_status 3 hit
	assert_bytes hit.out 'small run 1\n'
	assert_empty hit.err
}

@test "maxmemory with noeviction: after its store is refused with OOM the leader releases the lock, so a waiter takes over at once instead of after the lease" {
	restart_after_test
	head -c 1500000 /dev/urandom | base64 -w0 >bigdata
	cmd=$(counter_cmd big "if [ \$n -eq 1 ]; then touch started; $(hold_until "$SCRATCH/go"); fi; cat '$SCRATCH/bigdata'")

	limit_memory $((512 * 1024))

	cf_bg leader --lock-lease 30s -t 1h -k oom -- "$cmd"
	wait_for_file started 30
	cf_bg waiter --lock-lease 30s -t 1h -k oom -- "$cmd"
	wait_for_stat waits 1 30
	touch go
	assert_eq "$(bg_status leader 60)" 0 "status of the leader"
	cmp leader.out bigdata
	SECONDS=0
	assert_eq "$(bg_status waiter 60)" 0 "status of the waiter"
	elapsed=$SECONDS
	cmp waiter.out bigdata
	# a lock left behind would hold the waiter for the 30 s lease
	((elapsed <= 15)) || { echo "the waiter waited ${elapsed}s after the leader's store failed" >&2; false; }
}

@test "allkeys-lru evicting locks and entries under memory pressure: over 15 rounds no output is torn or mixed with another key's" {
	require_standalone # fills the one server
	restart_after_test
	# each COMMAND prints its key, its run id and 100 numbered lines, and
	# holds its lock 0.3 s in the middle, while filler keys push entries,
	# stages and locks out
	cat >"$SCRATCH/keyed" <<-'EOF'
		#!/bin/sh
		i=0
		while [ $i -lt 100 ]; do
			echo "key=$1 run=$$ line=$i ................................................................"
			i=$((i + 1))
			if [ $i -eq 50 ]; then sleep 0.3; fi
		done
	EOF
	chmod +x "$SCRATCH/keyed"
	filler="for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'filler:' .. ARGV[2] .. ':' .. i, string.rep('x', tonumber(ARGV[3]))) end return 1"

	used=$(redis_info used_memory)
	rcli CONFIG SET maxmemory-policy allkeys-lru >/dev/null
	rcli CONFIG SET maxmemory-samples 1 >/dev/null
	rcli CONFIG SET maxmemory $((used + 2 * 1024 * 1024)) >/dev/null

	for round in $(seq 15); do
		rcli EVAL "$filler" 0 40 "$round" 40000 >/dev/null
		for k in 1 2 3 4; do
			for c in 1 2 3; do
				cf_bg "r$round-k$k-c$c" --redis-timeout 5s --lock-lease 300ms -t 2s -k "lru$k" -- "$SCRATCH/keyed" "lru$k"
			done
		done
		sleep 0.2
		rcli EVAL "$filler" 0 40 "$round-b" 40000 >/dev/null
		for k in 1 2 3 4; do
			for c in 1 2 3; do
				name=r$round-k$k-c$c
				assert_eq "$(bg_status "$name" 60)" 0 "status of $name"
				awk -v k="lru$k" '
					NR == 1 { run = $2 }
					$1 != "key=" k || $2 != run || $3 != "line=" NR - 1 { bad = 1 }
					END { exit bad || NR != 100 }' "$name.out" ||
					{ echo "$name: torn or mixed output:" >&2; head -c 600 "$name.out" >&2; false; }
				assert_warnings "$name.err" 1
			done
			cf_to "got-$round-$k" get "lru$k"
			if [[ $status == 0 ]]; then
				awk -v k="lru$k" 'NR == 1 { run = $2 } $1 != "key=" k || $2 != run || $3 != "line=" NR - 1 { bad = 1 }
					END { exit bad || NR != 100 }' "got-$round-$k.out" ||
					{ echo "round $round: the entry of lru$k is torn or mixed" >&2; false; }
			fi
		done
	done
	(($(redis_info evicted_keys) > 0)) || { echo "nothing was evicted: no pressure" >&2; false; }
}

# --- a read-only replica ------------------------------------------------------------------

@test "a read-only replica as the URL: runs are fail-open with one warning line that names READONLY" {
	require_standalone # a replica of the one server
	cmd=$(counter_cmd ro 'echo "ro run $n"; exit 6')
	redis_spawn "$SCRATCH" replica --replicaof 127.0.0.1 "$REDIS_PORT"
	port=$SPAWNED_PORT
	echo "$SPAWNED_PID" >replica.pid
	for i in $(seq 200); do
		redis_cli_at "$port" INFO replication 2>/dev/null | grep -q '^master_link_status:up' && break
		sleep 0.1
	done
	redis_cli_at "$port" INFO replication | grep -q '^master_link_status:up'
	# an entry stored on the primary reaches the replica, but serving it
	# counts a hit, which is a write too
	cf_to stored -t 1h -k ro --cache-failures -- "$cmd"
	assert_status 6 stored
	for i in $(seq 100); do
		[[ $(redis_cli_at "$port" EXISTS 'cachefence:{ro}') == 1 ]] && break
		sleep 0.1
	done
	assert_eq "$(redis_cli_at "$port" EXISTS 'cachefence:{ro}')" 1 "the entry on the replica"

	url=$(redis_url "$port")
	for name in hit miss; do
		key=ro
		[[ $name == miss ]] && key=ro-miss
		cf_to "$name" -u "$url" -t 1h -k "$key" --cache-failures -- "$cmd"
		assert_status 6 "$name"
		grep -Eqx 'ro run [0-9]+' "$name.out"
		assert_one_line "$name.err" "cachefence: warning: store unavailable:"
		grep -q READONLY "$name.err"
	done
	assert_eq "$(runs ro)" 3 "runs of COMMAND"
	cf_to closed -u "$url" -t 1h -k ro-miss --fail-closed -- "$cmd"
	assert_usage_error closed
	grep -q READONLY closed.err

	redis_cli_at "$port" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
	for i in $(seq 50); do
		proc_alive "$(cat replica.pid)" || break
		sleep 0.1
	done
}

# --- the connection cut in the middle of a reply ---------------------------------------------

# start a relay in front of the suite's server that cuts every connection
# whose server-to-client bytes reach MARKER, just before the marker; its port
# goes to $PROXY_PORT and its pid to proxy.pid (teardown kills it). On the
# tls store it ends TLS on both sides (the fixture's server certificate
# towards cachefence, the fixture's CA towards Redis) to find the marker in
# the clear, and cuts the TCP connection without a TLS close_notify, the way
# a network that breaks does.
cut_proxy_start() {
	cat >"$SCRATCH/cutproxy.py" <<-'EOF'
		import os, select, socket, ssl, sys, threading
		target, marker, portfile = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]
		tls_dir = sys.argv[4] if len(sys.argv) > 4 else ''
		if tls_dir:
		    facing = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
		    facing.load_cert_chain(tls_dir + '/server.crt', tls_dir + '/server.key')
		    upstream = ssl.create_default_context(cafile=tls_dir + '/ca.crt')

		def cut(*socks):
		    for s in socks:
		        try:
		            # the raw socket: no close_notify goes out
		            socket.socket.shutdown(s, socket.SHUT_RDWR)
		        except OSError:
		            pass

		# what S has for us now: bytes, b'' at the end, None when nothing is
		# there yet (a TLS record that held no data, such as a session ticket,
		# must not block the other direction)
		def read(s):
		    s.setblocking(False)
		    try:
		        return s.recv(65536)
		    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
		        return None
		    finally:
		        s.setblocking(True)

		# one thread per connection does both directions, as an SSL object
		# must not be read and written by two threads at once
		def relay(client):
		    server = None
		    try:
		        server = socket.create_connection(('127.0.0.1', target))
		        if tls_dir:
		            client = facing.wrap_socket(client, server_side=True)
		            server = upstream.wrap_socket(server, server_hostname='127.0.0.1')
		        tail = b''
		        while True:
		            ready = [s for s in (client, server) if tls_dir and s.pending()]
		            if not ready:
		                ready, _, _ = select.select([client, server], [], [])
		            if client in ready:
		                data = read(client)
		                if data == b'':
		                    break
		                if data:
		                    server.sendall(data)
		            if server in ready:
		                data = read(server)
		                if data == b'':
		                    break
		                if not data:
		                    continue
		                seen = tail + data
		                i = seen.find(marker)
		                if i >= 0:
		                    if i > len(tail):
		                        client.sendall(seen[len(tail):i])
		                    break
		                tail = seen[-(len(marker) - 1):]
		                client.sendall(data)
		    except OSError:
		        pass
		    cut(*[s for s in (client, server) if s is not None])

		ls = socket.socket()
		ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
		ls.bind(('127.0.0.1', 0))
		ls.listen(64)
		with open(portfile + '.tmp', 'w') as f:
		    f.write(str(ls.getsockname()[1]))
		os.rename(portfile + '.tmp', portfile)
		while True:
		    client, _ = ls.accept()
		    threading.Thread(target=relay, args=(client,), daemon=True).start()
	EOF
	local tls=
	[[ $CACHEFENCE_TEST_STORE == tls ]] && tls=$TLS_DIR
	python3 "$SCRATCH/cutproxy.py" "$REDIS_PORT" "$1" "$SCRATCH/proxy.port" $tls </dev/null >/dev/null 2>proxy.err 3>&- &
	echo $! >proxy.pid
	wait_for_file "$SCRATCH/proxy.port" 10 || { cat proxy.err >&2; return 1; }
	PROXY_PORT=$(<"$SCRATCH/proxy.port")
}

@test "the connection cut in the middle of a hit's reply, for a value small enough to be buffered: nothing partial on stdout, COMMAND runs instead" {
	require_standalone # relays the one server (a cluster's MOVED names the nodes)
	# 100 kB: read whole before anything is written
	cmd=$(counter_cmd small "echo \"run \$n\"; head -c 50000 /dev/zero | tr '\\0' A; echo; echo CUT-HERE; head -c 50000 /dev/zero | tr '\\0' B; echo")
	cf_to stored -t 1h -k small -- "$cmd"
	assert_status 0 stored
	sed -n 1p stored.out | grep -qx 'run 1'
	assert_eq "$(wc -c <stored.out)" 100017 "bytes of the stored value"
	cut_proxy_start CUT-HERE

	cf_to cut -u "$(redis_url "$PROXY_PORT")" -t 1h -k small -- "$cmd"
	assert_status 0 cut
	# exactly COMMAND's own output of run 2: no byte of the stored value first
	sed 's/^run 1$/run 2/' stored.out >expected
	cmp cut.out expected
	assert_one_line cut.err "cachefence: warning: store unavailable:"
	assert_eq "$(runs small)" 2 "runs of COMMAND"

	# the entry itself is untouched
	cf_to got get small
	cmp got.out stored.out
}

@test "the connection cut in the middle of a streamed 4 MiB value: exit 125 with the cut-off line, COMMAND not run" {
	require_standalone # relays the one server (a cluster's MOVED names the nodes)
	head -c 3145728 /dev/urandom | base64 -w0 | head -c 2097152 >half
	{ cat half; echo CUT-HERE; cat half; } >value
	cmd=$(counter_cmd big "cat '$SCRATCH/value'")
	cf_to stored -t 1h -k big -- "$cmd"
	assert_status 0 stored
	cmp stored.out value
	cut_proxy_start CUT-HERE

	cf_to cut -u "$(redis_url "$PROXY_PORT")" -t 1h -k big -- "$cmd"
	assert_status 125 cut
	assert_one_line cut.err "cachefence: the stored output of key=big was cut off: "
	grep -q 'run again$' cut.err
	# what did reach stdout is a true prefix of the value, never other bytes
	size=$(wc -c <cut.out)
	((size < $(wc -c <value))) || { echo "the whole value came through" >&2; false; }
	cmp -n "$size" cut.out value
	assert_eq "$(runs big)" 1 "runs of COMMAND"

	cf_to got get big
	cmp got.out value
}

# wait until a large entry's read is under way: the server owes the reply
# of an HMGET (up to 20 s)
wait_for_big_read() {
	for _ in $(seq 200); do
		rcli CLIENT LIST | grep -q 'cmd=hmget' && return 0
		sleep 0.1
	done
	echo "no HMGET under way" >&2
	return 1
}

# NAME ARGS...: a hit of cachefence ARGS... read at 16 MB/s into NAME.out
# (stderr NAME.err), while the server closes every client's connection
# twice: once its read is under way, and a second later; its status to
# NAME.st
hit_through_kills() {
	local name=$1 pid st=0
	shift
	python3 "$BATS_TEST_DIRNAME/lib/slow_reader.py" --rate 16000000 "$name.out" -- \
		"$CACHEFENCE_BIN" -v "$@" 2>"$name.err" &
	pid=$!
	wait_for_big_read
	sleep 0.2
	rcli CLIENT KILL TYPE normal >/dev/null
	sleep 1
	rcli CLIENT KILL TYPE normal >/dev/null
	wait "$pid" || st=$?
	echo "$st" >"$name.st"
}

@test "a 60 MiB hit whose connection the server closes midway, twice, reads on from where it broke: whole bytes, stderr and status, COMMAND not run again" {
	require_standalone # CLIENT KILL on the one server
	head -c $((60 * 1024 * 1024 - 3)) /dev/urandom >value
	printf 'end' >>value
	cmd=$(counter_cmd big "cat '$SCRATCH/value'; echo 'its stderr' >&2; exit 3")
	cf_to stored --cache-failures --cache-stderr -t 1h -k big -- "$cmd"
	assert_status 3 stored

	hit_through_kills hit --cache-failures --cache-stderr -t 1h -k big -- "$cmd"
	assert_eq "$(cat hit.st)" 3 "status of the hit" || { cat hit.err >&2; false; }
	cmp hit.out value
	grep -qx "its stderr" hit.err || { cat hit.err >&2; false; }
	assert_eq "$(grep -c 'broke off after [0-9]* bytes; reading on from there' hit.err)" 2 \
		"reads taken up again"
	assert_eq "$(runs big)" 1 "runs of COMMAND"
}

@test "a compressed, signed 60 MiB hit whose connection the server closes midway reads on: the bytes whole and checked, decoded once" {
	require_standalone
	# base64: compressed to about 45 MiB, more than the sockets' buffers hold
	head -c $((45 << 20)) /dev/urandom | base64 -w 76 | head -c $((60 << 20)) >listing
	head -c 32 /dev/urandom | base64 >signkey
	chmod 600 signkey
	cmd=$(counter_cmd lister "cat '$SCRATCH/listing'")
	cf_to stored --compress --sign-key-file signkey -t 1h -k text -- "$cmd"
	assert_status 0 stored

	hit_through_kills hit --sign-key-file signkey -t 1h -k text -- "$cmd"
	assert_eq "$(cat hit.st)" 0 "status of the hit"
	cmp hit.out listing
	grep -q "reading on from there" hit.err || { cat hit.err >&2; false; }
	! grep -q 'not authentic' hit.err
	assert_eq "$(runs lister)" 1 "runs of COMMAND"
}

@test "a hit whose connection breaks after another run replaced the entry is not pieced together from two runs: exit 125 with the cut-off line, a true prefix of the old bytes" {
	require_standalone
	head -c $((60 << 20)) /dev/urandom >old
	head -c $((60 << 20)) /dev/urandom >new
	cf_to first -t 1h -k swap -- cat old
	assert_status 0 first
	# the hit's reader reads nothing for 25 s (the hit blocks, the rest of
	# its reply held by the server: 60 MiB is more than the sockets' buffers
	# take), while a --refresh stores other bytes and the server then closes
	# every client's connection; bounded by the stall, not by how fast this
	# machine stores 60 MiB
	python3 "$BATS_TEST_DIRNAME/lib/slow_reader.py" --stall 25 hit.out -- \
		"$CACHEFENCE_BIN" -t 1h -k swap -- cat old 2>hit.err &
	pid=$!
	wait_for_big_read
	cf_to refresh --refresh -t 1h -k swap -- cat new
	assert_status 0 refresh
	rcli CLIENT KILL TYPE normal >/dev/null
	st=0
	wait "$pid" || st=$?
	assert_eq "$st" 125 "status of the hit"
	assert_one_line hit.err "cachefence: the stored output of key=swap was cut off: "
	grep -q 'replaced since' hit.err
	size=$(wc -c <hit.out)
	((size < 60 << 20)) || { echo "the whole value came through" >&2; false; }
	cmp -n "$size" hit.out old
}

# --- signals -----------------------------------------------------------------------------------

@test "SIGTERM, SIGINT and SIGHUP to a leader: exit 128+S, nothing stored, the lock released at once so a waiter takes over" {
	for sig in TERM INT HUP; do
		num=$(kill -l "$sig")
		cmd=$(counter_cmd "job$sig" "if [ \$n -eq 1 ]; then echo partial; touch started$sig; exec sleep 60; fi; echo \"result of run \$n\"")
		opts=(--lock-lease 30s -t 1m -k "lead$sig")

		waits=$(stat_value waits)
		sig_bg "leader$sig" "${opts[@]}" -- "$cmd"
		wait_for_file "started$sig" 30
		cf_bg "waiter$sig" "${opts[@]}" -- "$cmd"
		wait_for_stat waits $((waits + 1)) 30
		kill "-$sig" "$(bg_pid "leader$sig")"
		SECONDS=0

		assert_eq "$(bg_status "leader$sig" 30)" $((128 + num)) "status of the leader after SIG$sig"
		assert_bytes "leader$sig.out" 'partial\n'
		assert_warnings "leader$sig.err" 0
		# a lock left to expire would hold the waiter for the 30 s lease
		assert_eq "$(bg_status "waiter$sig" 60)" 0 "status of the waiter after SIG$sig"
		((SECONDS <= 15)) || { echo "the waiter took over after ${SECONDS}s" >&2; false; }
		assert_bytes "waiter$sig.out" 'result of run 2\n'
		assert_eq "$(runs "job$sig")" 2 "runs of COMMAND after SIG$sig"
		cf_to "got$sig" get "lead$sig"
		assert_bytes "got$sig.out" 'result of run 2\n'
		assert_eq "$(rcli EXISTS "cachefence:{lead$sig}:lock")" 0 "lock keys left after SIG$sig"
	done
	assert_no_stage_keys
}

@test "SIGTERM, SIGINT and SIGHUP to a waiter: exit 128+S with no output, and the leader's result is stored whole" {
	cmd=$(counter_cmd job "touch started; $(hold_until "$SCRATCH/go"); echo \"result of run \$n\"")

	cf_bg leader --lock-lease 2s -t 1m -k waited -- "$cmd"
	wait_for_file started 30
	for sig in TERM INT HUP; do
		sig_bg "waiter$sig" --lock-lease 2s -t 1m -k waited -- "$cmd"
	done
	wait_for_stat waits 3 30
	sleep 0.5
	for sig in TERM INT HUP; do
		kill "-$sig" "$(bg_pid "waiter$sig")"
	done
	for sig in TERM INT HUP; do
		assert_eq "$(bg_status "waiter$sig" 30)" $((128 + $(kill -l $sig))) "status of the waiter after SIG$sig"
		assert_empty "waiter$sig.out"
		assert_warnings "waiter$sig.err" 0
	done

	touch go
	assert_eq "$(bg_status leader 60)" 0 "status of the leader"
	assert_bytes leader.out 'result of run 1\n'
	assert_empty leader.err
	cf_to got get waited
	assert_bytes got.out 'result of run 1\n'
	assert_eq "$(runs job)" 1 "runs of COMMAND"
	assert_eq "$(rcli EXISTS 'cachefence:{waited}:lock')" 0 "lock keys left"
}

@test "SIGTERM, SIGINT and SIGHUP to a stale-serving caller: exit 128+S, the old entry kept whole, the lock released or left to expire" {
	head -c 1048576 /dev/urandom | base64 -w0 | head -c 1000000 >old
	for sig in TERM INT HUP; do
		# a stale hit blocked writing 1 MB of stale output to a pipe nobody reads
		stale=$(counter_cmd "stale$sig" "if [ \$n -eq 1 ]; then cat '$SCRATCH/old'; else echo \"refreshed by run \$n\"; fi")
		cf_to "stale-first$sig" --lock-lease 1s -t 1s -s 1h -k "stale$sig" -- "$stale"
		# a stale-if-error refresh in the foreground, interrupted
		sie=$(counter_cmd "sie$sig" "if [ \$n -eq 1 ]; then echo 'old result'; else touch refreshing$sig; exec sleep 60; fi")
		cf_to "sie-first$sig" --lock-lease 30s -t 1s --stale-if-error 1h -k "sie$sig" -- "$sie"
	done
	sleep 1.5

	for sig in TERM INT HUP; do
		num=$(kill -l "$sig")

		mkfifo "pipe$sig"
		exec {held}<>"pipe$sig"
		sig_bg "stale$sig" --out "pipe$sig" --lock-lease 1s -t 1s -s 1h -k "stale$sig" -- "$SCRATCH/stale$sig"
		pid=$(bg_pid "stale$sig")
		for i in $(seq 100); do
			[[ $(cat "/proc/$pid/wchan" 2>/dev/null) == pipe_write ]] && break
			sleep 0.1
		done
		kill "-$sig" "$pid"
		assert_eq "$(bg_status "stale$sig" 30)" $((128 + num)) "status of the stale caller after SIG$sig"
		exec {held}>&-
		assert_warnings "stale$sig.err" 0
		cf_to "stale-got$sig" get "stale$sig"
		cmp "stale-got$sig.out" old
		pttl=$(rcli PTTL "cachefence:{stale$sig}:lock")
		((pttl == -2 || (pttl > 0 && pttl <= 1000))) || { echo "lock PTTL $pttl after SIG$sig" >&2; false; }

		sig_bg "sie$sig" --lock-lease 30s -t 1s --stale-if-error 1h -k "sie$sig" -- "$SCRATCH/sie$sig"
		wait_for_file "refreshing$sig" 30
		kill "-$sig" "$(bg_pid "sie$sig")"
		assert_eq "$(bg_status "sie$sig" 30)" $((128 + num)) "status of the stale-if-error caller after SIG$sig"
		assert_empty "sie$sig.out"
		assert_warnings "sie$sig.err" 0
		assert_eq "$(rcli EXISTS "cachefence:{sie$sig}:lock")" 0 "lock keys left after SIG$sig"
		cf_to "sie-got$sig" get "sie$sig"
		assert_bytes "sie-got$sig.out" 'old result\n'
	done

	# the left locks expire: the next stale hits refresh the entries
	sleep 1.2
	for sig in TERM INT HUP; do
		cf_to "stale-next$sig" --lock-lease 1s -t 1s -s 1h -k "stale$sig" -- "$SCRATCH/stale$sig"
		cmp "stale-next$sig.out" old
	done
	for sig in TERM INT HUP; do
		for i in $(seq 100); do
			cf get "stale$sig" 2>/dev/null | grep -q '^refreshed by run' && break
			sleep 0.1
		done
		assert_eq "$(cf get "stale$sig")" "refreshed by run 2" "the refreshed entry after SIG$sig"
	done
	assert_no_stage_keys
}

# --- the password -----------------------------------------------------------------------------------

@test "CACHEFENCE_PASSWORD never appears in the argv of cachefence or of COMMAND, nor in COMMAND's environment" {
	require_standalone # a password is per node
	require_default_user
	restart_after_test
	pw="cf-secret-$RANDOM$RANDOM$RANDOM"
	printf '%s' "$pw" >"$BATS_TEST_TMPDIR/pw"
	rcli CONFIG SET requirepass "$pw" >/dev/null
	# redis-cli gets the password for this test and its teardown; COMMAND's
	# environment must not get it from anywhere, so no REDISCLI_AUTH export
	rcli() { REDISCLI_AUTH=$(<"$BATS_TEST_TMPDIR/pw") redis_cli_at "$REDIS_PORT" "$@"; }
	export CACHEFENCE_PASSWORD=$pw
	cmd=$(counter_cmd pw "env >\"$SCRATCH/env.\$n\"; touch started.\$n; $(hold_until "$SCRATCH/go"); echo \"run \$n\"")

	cf_bg leader -t 1m -k pw -- "$cmd"
	wait_for_file started.1 30
	cf_bg waiter -t 1m -k pw -- "$cmd"
	wait_for_stat waits 1 30
	# a fail-open run hands COMMAND the environment too
	cf_bg open -u "$REDIS_SCHEME://127.0.0.1:1" -t 1m -k pw -- "$cmd"
	wait_for_file started.2 30

	# every process's argv, ours included, while they all run
	leaks=$(grep -lF -f "$BATS_TEST_TMPDIR/pw" /proc/[0-9]*/cmdline 2>/dev/null || true)
	[[ -z $leaks ]] || { echo "the password is in the argv of: $leaks" >&2; xargs -0 <"${leaks%%$'\n'*}" echo >&2; false; }
	for pid in "$(bg_pid leader)" "$(bg_pid waiter)" $(cat pw.runs); do
		[[ -r /proc/$pid/cmdline ]] || continue
		! grep -qF -f "$BATS_TEST_TMPDIR/pw" "/proc/$pid/cmdline" || { echo "the password is in the argv of $pid" >&2; false; }
	done

	touch go
	for name in leader waiter open; do
		assert_eq "$(bg_status "$name" 60)" 0 "status of $name"
	done
	assert_bytes leader.out 'run 1\n'
	assert_bytes waiter.out 'run 1\n'
	assert_bytes open.out 'run 2\n'
	assert_empty leader.err
	assert_one_line open.err "cachefence: warning: store unavailable:"
	for f in env.1 env.2; do
		[[ -s $f ]]
		! grep -qF -f "$BATS_TEST_TMPDIR/pw" "$f" || { echo "the password is in COMMAND's environment ($f)" >&2; false; }
		! grep -q '^CACHEFENCE_PASSWORD=' "$f" || { echo "CACHEFENCE_PASSWORD is in COMMAND's environment ($f)" >&2; false; }
	done
	# the password was used: the entry is stored
	assert_eq "$(rcli EXISTS 'cachefence:{pw}')" 1 "entries stored with the password"
	# and it is never printed
	! grep -qF -f "$BATS_TEST_TMPDIR/pw" leader.err waiter.err open.err || { echo "the password was printed" >&2; false; }
}
