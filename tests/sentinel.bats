#!/usr/bin/env bats
# Redis Sentinel (SPEC 9.2, 9.4, 9.5): what only sentinels can show. Runs on
# the 'sentinel' store: one primary, one replica and three sentinels on
# loopback (tests/lib/sentinel_fixture.sh), watching the service cfmaster;
# core and freshness run through the sentinel URL too.

load lib/common

setup_file() { store_start; }
teardown_file() { store_stop; }
setup() { common_setup; }
teardown() {
	# a sentinel a test froze answers again
	local port
	for port in $(sentinel_ports); do
		kill -CONT "$(port_pid "$port")" 2>/dev/null || true
	done
	common_teardown
}

# the fixture's three sentinels' ports
sentinel_ports() {
	sed -n '3,5p' "$SENTINEL_DIR/ports"
}

# the pid of what serves PORT in the fixture
port_pid() {
	local line
	line=$(grep -nx "$1" "$SENTINEL_DIR/ports" | cut -d: -f1)
	sed -n "${line}p" "$SENTINEL_DIR/pids"
}

# a sentinel URL for SERVICE on the fixture's sentinels
url_for() {
	local hosts
	hosts=$(sentinel_ports | sed 's/^/127.0.0.1:/' | paste -sd,)
	echo "redis+sentinel://$hosts/$1"
}

# the primary's port, as the sentinels say now
primary_port() {
	"$BATS_TEST_DIRNAME/lib/sentinel_fixture.sh" primary "$SENTINEL_DIR"
}

# wait until the replica has every write the primary took so far: the
# sentinels promote a replica whether or not it has caught up, and what it
# lacks is lost (SPEC 9.4), so a test that needs it there waits for it
replicated() {
	assert_eq "$(rcli WAIT 1 60000)" 1 "replicas that have every write"
}

# fail over to the replica and wait until the old primary is its replica;
# prints the new primary's port
failover() {
	"$BATS_TEST_DIRNAME/lib/sentinel_fixture.sh" failover "$SENTINEL_DIR"
}

# A leader held until SCRATCH/go exists, then N waiters, all with
# --cache-failures -t 1m and ARGS..., on a COMMAND (./job) that prints
# "result of run N" and exits STATUS; returns once all N wait
leader_and_waiters() {
	local n=$1 st=$2 i
	shift 2
	opts=(--cache-failures -t 1m "$@")
	cmd=$(counter_cmd job "if [ \$n -eq 1 ]; then touch started; $(hold_until "$SCRATCH/go"); fi; echo \"result of run \$n\"; exit $st")
	cf_bg leader "${opts[@]}" -- "$cmd"
	wait_for_file started 30
	for ((i = 1; i <= n; i++)); do
		cf_bg "w$i" "${opts[@]}" -- "$cmd"
	done
	wait_for_stat waits "$n" 60
}

# the leader and N waiters of leader_and_waiters ended with STATUS within
# SECONDS each, each with one whole result, and COMMAND ran at most twice
all_served() {
	local n=$1 st=$2 limit=$3 i
	assert_eq "$(bg_status leader "$limit")" "$st" "status of the leader"
	grep -Eqx 'result of run [12]' leader.out
	for ((i = 1; i <= n; i++)); do
		assert_eq "$(bg_status "w$i" "$limit")" "$st" "status of waiter $i"
		grep -Eqx 'result of run [12]' "w$i.out" || { cat "w$i.out" "w$i.err" >&2; false; }
	done
	assert_le "$(runs job)" 2 "runs of COMMAND"
}

@test "a service the sentinels do not know is exit 125 with one line naming it, for a run and for ping" {
	url=$(url_for nosuch)
	cf_to run -u "$url" -t 1m -k unknown -- echo ran
	assert_usage_error run
	grep -q 'know no service "nosuch"' run.err
	cf_to ping -u "$url" ping
	assert_usage_error ping
	grep -q 'know no service "nosuch"' ping.err
}

@test "no sentinel reachable: COMMAND runs uncached with one warning, and --fail-closed is 125 without running it" {
	p1=$(free_port) p2=$(free_port)
	url="redis+sentinel://127.0.0.1:$p1,127.0.0.1:$p2/cfmaster"
	cmd=$(counter_cmd nosentinel 'echo "ran $n"; exit 3')
	cf_to open -u "$url" -t 1m -k down -- "$cmd"
	assert_status 3 open
	assert_bytes open.out 'ran 1\n'
	assert_one_line open.err "cachefence: warning: store unavailable:"
	grep -q 'no sentinel told where the primary is' open.err
	cf_to closed -u "$url" --fail-closed -t 1m -k down -- "$cmd"
	assert_usage_error closed
	assert_eq "$(runs nosentinel)" 1 "runs of COMMAND"
}

@test "the first sentinel frozen (SIGSTOP): calls resolve through the next one within --redis-timeout, and ping says which did not answer" {
	first=$(sentinel_ports | head -n 1)
	cf_to warm -t 1m -k frozen -- printf stored
	kill -STOP "$(port_pid "$first")"
	SECONDS=0
	cf_to hit --redis-timeout 2s -t 1m -k frozen -- printf recomputed
	elapsed=$SECONDS
	assert_status 0 hit
	assert_bytes hit.out 'stored'
	assert_empty hit.err
	((elapsed <= 4)) || { echo "the hit took $elapsed s" >&2; false; }
	cf_to ping --redis-timeout 2s ping
	assert_status 0 ping
	grep -q "127.0.0.1:$first did not answer" ping.out
	grep -q "primary 127.0.0.1:$(primary_port): ROLE master" ping.out
}

@test "ping names the sentinels, what each answered and the primary it checked" {
	cf_to ping ping
	assert_status 0 ping
	assert_empty ping.err
	assert_eq "$(awk 'END { print NR }' ping.out)" 3 "lines of ping"
	primary=$(primary_port)
	for port in $(sentinel_ports); do
		grep -q "127.0.0.1:$port names 127.0.0.1:$primary" ping.out
	done
}

@test "SENTINEL FAILOVER while a leader runs and 50 waiters wait: every caller gets the leader's bytes and status, COMMAND at most twice" {
	leader_and_waiters 50 5 --redis-timeout 20s -k failover
	old=$(primary_port)
	new=$(failover)
	[[ $new != "$old" ]] || { echo "the primary is still $old" >&2; false; }
	touch go
	all_served 50 5 60
	assert_bytes leader.out 'result of run 1\n'
	cf_to hit "${opts[@]}" -- "$cmd"
	assert_status 5 hit
	grep -Eqx 'result of run [0-9]+' hit.out
}

@test "SENTINEL FAILOVER under a live leader: its lock reached the new primary naming the old one's client, so its waiters leave it its lease and COMMAND runs once" {
	leader_and_waiters 10 0 --redis-timeout 20s --lock-lease 2m -k orderly
	replicated
	old=$(primary_port)
	new=$(failover)
	[[ $new != "$old" ]] || { echo "the primary is still $old" >&2; false; }
	# the lock (the leader's client on the old primary in it) came along
	grep -q "run=$(redis-cli -p "$old" INFO server | tr -d '\r' | sed -n 's/^run_id://p')" \
		<(redis-cli -p "$new" GET 'cachefence:{orderly}:lock')
	sleep 2 # the waiters judge the holder every third of a second
	touch go
	all_served 10 0 60
	assert_eq "$(runs job)" 1 "runs of COMMAND"
	assert_eq "$(stat_value lock_takeovers_holder_gone)" 0 "takeovers of a holder judged gone"
}

@test "SENTINEL FAILOVER during a 64 MiB store and a 64 MiB hit: complete bytes and the right status for both, COMMAND at most twice" {
	head -c $((64 * 1024 * 1024 - 3)) /dev/urandom >value
	printf 'end' >>value
	served=$(counter_cmd served "cat '$SCRATCH/value'")
	cf_to first --redis-timeout 20s -t 1h -k big-hit -- "$served"
	assert_status 0 first
	# a CI run promoted a replica still short of these 64 MiB: the
	# reader, cut off, then rightly found the entry gone (exit 125)
	replicated
	stored=$(counter_cmd stored "$(hold_until "$SCRATCH/go"); cat '$SCRATCH/value'")
	cf_bg leader --redis-timeout 20s -t 1h -k big-store -- "$stored"
	wait_for_file stored.runs 30
	failover >new &
	fo=$!
	touch go
	# read at 5 MB/s (some 13 s), so that the failover comes in its middle
	python3 "$BATS_TEST_DIRNAME/lib/slow_reader.py" --rate 5000000 reader.out -- \
		"$CACHEFENCE_BIN" -v --redis-timeout 20s -t 1h -k big-hit -- "$served" 2>reader.err &
	reader=$!
	wait "$fo"
	assert_eq "$(bg_status leader 120)" 0 "status of the leader"
	cmp leader.out value
	st=0
	wait "$reader" || st=$?
	assert_eq "$st" 0 "status of the reader" || { cat reader.err >&2; false; }
	cmp reader.out value
	assert_le "$(runs stored)" 2 "runs of the storing COMMAND"
	assert_le "$(runs served)" 2 "runs of the served COMMAND"
	cf_to after --redis-timeout 20s -t 1h -k big-store -- "$stored"
	assert_status 0 after
	cmp after.out value
}

@test "a run that kept the old primary finds it a replica (READONLY) after a failover, asks the sentinels, and gets the entry from the new primary" {
	cf_to first -t 1h -k kept -- printf stored
	assert_status 0 first
	replicated
	old=$(primary_port)
	new=$(failover)
	[[ $new != "$old" ]] || { echo "the primary is still $old" >&2; false; }
	# the entry reached the replica before it was promoted
	assert_eq "$(redis-cli -p "$new" EXISTS 'cachefence:{kept}')" 1 "the entry on the new primary"
	cf_to again -v -t 1h -k kept -- printf recomputed
	assert_status 0 again
	assert_bytes again.out 'stored'
	grep -q "127.0.0.1:$old is a replica now: asking the sentinels again" again.err
	# the file now names the new primary: the next run goes there at once
	cf_to hit -v -t 1h -k kept -- printf recomputed
	assert_bytes hit.out 'stored'
	! grep -q 'replica now' hit.err
}

@test "the sentinels' password comes from CACHEFENCE_SENTINEL_PASSWORD: without it a sentinel that wants one is named, and the run goes on uncached" {
	pw=$CACHEFENCE_SENTINEL_PASSWORD
	unset CACHEFENCE_SENTINEL_PASSWORD
	rm -rf "$XDG_CACHE_HOME/cachefence-sentinel" # no primary kept: the sentinels are asked
	cf_to nopw -t 1m -k pw -- printf ran
	assert_status 0 nopw
	grep -q 'NOAUTH.*CACHEFENCE_SENTINEL_PASSWORD' nopw.err || { cat nopw.err >&2; false; }
	CACHEFENCE_SENTINEL_PASSWORD=$pw cf_to withpw -t 1m -k pw -- printf ran
	assert_empty withpw.err
}

@test "a hit with the primary kept from an earlier run is one connection, to the primary, and no sentinel is asked" {
	cf_to first -t 1h -k one-trip -- printf stored
	assert_status 0 first
	ls "$XDG_CACHE_HOME"/cachefence-sentinel/* >/dev/null
	# the connections each server took (each reading is one more)
	connections() {
		local port
		for port in $(sed -n '1,2p' "$SENTINEL_DIR/ports"); do
			echo "$port $(connections_taken "$port")"
		done
		for port in $(sentinel_ports); do
			echo "$port $(REDISCLI_AUTH=$SENTINEL_PASSWORD connections_taken "$port")"
		done
	}
	primary=$(primary_port)
	connections >before
	cf_to hit -t 1h -k one-trip -- printf recomputed
	connections >after
	assert_bytes hit.out 'stored'
	assert_one_connection_to before after "$primary"
}

@test "kill -9 of the primary while a leader runs and 20 waiters wait: the sentinels fail over, and every caller gets a whole result and its status, COMMAND at most twice" {
	leader_and_waiters 20 6 --redis-timeout 30s -k killed
	old=$(primary_port)
	kill -KILL "$(port_pid "$old")"
	for _ in $(seq 300); do
		[[ $(primary_port) != "$old" ]] && break
		sleep 0.1
	done
	[[ $(primary_port) != "$old" ]] || { echo "no failover within 30 s" >&2; false; }
	touch go
	all_served 20 6 90
	pid=$("$BATS_TEST_DIRNAME/lib/sentinel_fixture.sh" restart "$SENTINEL_DIR" "$old")
	redis_watchdog "$SENTINEL_SUITE_PID" "$pid"
}

@test "rediss+sentinel://: sentinels and servers that speak TLS only, with a password: a miss, a hit, ping, and a SENTINEL FAILOVER under a leader" {
	tls_fixture "$SCRATCH/certs"
	dir=$SCRATCH/tls-sentinels
	SENTINEL_TLS_DIR=$TLS_DIR SENTINEL_PASSWORD='tls sentinel pw' \
		"$BATS_TEST_DIRNAME/lib/sentinel_fixture.sh" start "$dir"
	while read -r pid; do redis_watchdog "$BASHPID" "$pid"; done <"$dir/pids"
	url=$(<"$dir/url")
	[[ $url == rediss+sentinel://* ]]
	export CACHEFENCE_TLS_CA_FILE=$TLS_DIR/ca.crt CACHEFENCE_SENTINEL_PASSWORD='tls sentinel pw'
	cmd=$(counter_cmd tlsjob "$(hold_until "$SCRATCH/go"); echo \"tls run \$n\"")
	touch go
	cf_to miss -u "$url" -t 1h -k tls -- "$cmd"
	assert_status 0 miss
	assert_bytes miss.out 'tls run 1\n'
	cf_to hit -u "$url" -t 1h -k tls -- "$cmd"
	assert_bytes hit.out 'tls run 1\n'
	cf_to ping -u "$url" ping
	assert_status 0 ping
	grep -q '^rediss+sentinel://.*TLSv1' ping.out
	grep -q 'names 127.0.0.1:' ping.out
	# a leader held while the sentinels fail over; then a waiter
	rm go
	cf_bg leader -u "$url" --redis-timeout 30s -t 1h -k tls-fo -- "$cmd"
	wait_for_file tlsjob.runs 30 # (run 2: the leader's)
	new=$("$BATS_TEST_DIRNAME/lib/sentinel_fixture.sh" failover "$dir")
	touch go
	assert_eq "$(bg_status leader 60)" 0 "status of the leader"
	assert_bytes leader.out 'tls run 2\n'
	cf_to after -u "$url" --redis-timeout 30s -t 1h -k tls-fo -- "$cmd"
	assert_status 0 after
	grep -Eqx 'tls run [23]' after.out
	grep -q "primary 127.0.0.1:$new" <("$CACHEFENCE_BIN" -u "$url" ping)
	"$BATS_TEST_DIRNAME/lib/sentinel_fixture.sh" stop "$dir"
}

@test "a kept primary file that is garbage, readable by others, or names a dead port is not trusted: the sentinels are asked and nothing breaks" {
	# one file: this URL's (other tests keep others); time enough to ask
	# the sentinels on a loaded machine (half of --redis-timeout each)
	rm -rf "$XDG_CACHE_HOME/cachefence-sentinel"
	cf_to first --redis-timeout 10s -t 1h -k kept-file -- printf stored
	assert_status 0 first
	assert_empty first.err
	file=$(ls "$XDG_CACHE_HOME"/cachefence-sentinel/*)
	[[ -f $file ]] || { echo "no kept primary after a run" >&2; false; }
	replica=$(sed -n 2p "$SENTINEL_DIR/ports")
	[[ $replica != "$(primary_port)" ]] || replica=$(sed -n 1p "$SENTINEL_DIR/ports")
	for bad in garbage shared dead; do
		case $bad in
		garbage) printf 'garbage\0\n' >"$file" ;;
		# the replica: trusted, the run would meet READONLY and say so
		shared) printf 'cachefence-primary 1\n127.0.0.1 %s\n' "$replica" >"$file" && chmod 0644 "$file" ;;
		dead) printf 'cachefence-primary 1\n127.0.0.1 %s\n' "$(free_port)" >"$file" && chmod 0600 "$file" ;;
		esac
		cf_to "$bad" -v --redis-timeout 10s -t 1h -k kept-file -- printf recomputed
		assert_status 0 "$bad"
		assert_bytes "$bad.out" 'stored'
		! grep -v '^cachefence: \(store\|hit\) ' "$bad.err" || { cat "$bad.err" >&2; false; }
		# the file names the primary again, ours alone
		grep -qx "127.0.0.1 $(primary_port)" "$file"
		[[ $(stat -c %a "$file") == 600 ]]
	done
}
