#!/usr/bin/env bats
# A leader's COMMAND does not outlive the leader, a slow store does not hold
# up the leader's output, and a wait that runs out can run COMMAND itself
# (issue #14): on both stores.

load lib/common

setup_file() { store_start; }
teardown_file() { store_stop; }
setup() { common_setup; }
teardown() { common_teardown; }

# the pids of the processes whose command line matches the regex RE
marked() {
	pgrep -f -- "$1" || true
}

# true while any of the pids in FILE runs (zombies do not count)
any_alive() {
	local pid
	while read -r pid; do
		proc_alive "$pid" && return 0
	done <"$1"
	return 1
}

@test "a leader SIGKILLed mid-run takes its COMMAND and what it started down within 1 s" {
	mark="orphan-mark-$$-$RANDOM"
	cf_bg lead -t 1m -k orphan -- sh -c 'sleep 3; echo done' "$mark"
	lead=$(bg_pid lead)
	# COMMAND (sh, named by the mark) and its sleep
	for ((i = 0; i < 50; i++)); do
		sh_pid=$(marked "^sh -c .*$mark")
		[[ -n $sh_pid ]] && sleep_pid=$(pgrep -P "$sh_pid" || true)
		[[ -n $sh_pid && -n ${sleep_pid:-} ]] && break
		sleep 0.1
	done
	[[ -n $sh_pid && -n $sleep_pid ]] || { echo "COMMAND did not start" >&2; false; }
	printf '%s\n%s\n' "$sh_pid" "$sleep_pid" >command.pids
	sleep 0.5
	kill -KILL "$lead"
	killed=$(date +%s%3N)
	while any_alive command.pids && (($(date +%s%3N) - killed < 1000)); do
		sleep 0.05
	done
	if any_alive command.pids; then
		echo "COMMAND still runs 1 s after its leader was killed:" >&2
		ps -o pid,pgid,stat,args -p "$sh_pid,$sleep_pid" >&2 || true
		false
	fi
	[[ -z $(marked "^sh -c .*$mark") ]]
	# nothing was stored: the next caller runs COMMAND
	cf_to next -t 1m -k orphan -- printf again
	assert_status 0 next
	assert_bytes next.out again
}

@test "a kill -9 of the caller's whole process group takes COMMAND down too" {
	mark="job-mark-$$-$RANDOM"
	# the caller leads a job of its own (setsid execs it in place), as a
	# shell's job or timeout(1)'s child does
	(
		setsid "$CACHEFENCE_BIN" -t 1m -k job -- sh -c 'sleep 3; echo done' "$mark" \
			</dev/null >job.out 2>job.err 3>&- &
		echo $! >job.pid
	)
	job=$(cat job.pid)
	for ((i = 0; i < 50; i++)); do
		sh_pid=$(marked "^sh -c .*$mark")
		[[ -n $sh_pid ]] && sleep_pid=$(pgrep -P "$sh_pid" || true)
		[[ -n $sh_pid && -n ${sleep_pid:-} ]] && break
		sleep 0.1
	done
	[[ -n $sh_pid && -n $sleep_pid ]] || { echo "COMMAND did not start" >&2; false; }
	printf '%s\n%s\n' "$sh_pid" "$sleep_pid" >command.pids
	kill -KILL -- "-$job"
	killed=$(date +%s%3N)
	while any_alive command.pids && (($(date +%s%3N) - killed < 1000)); do
		sleep 0.05
	done
	! any_alive command.pids || { echo "COMMAND outlived its caller's job" >&2; false; }
}

@test "at a terminal, COMMAND stays the foreground job: it reads the terminal, and dies with a SIGKILLed leader" {
	command -v script >/dev/null || skip "needs script(1) for a terminal"
	# script(1) gives cachefence a terminal whose foreground job it is;
	# in a process group of its own COMMAND would be stopped (SIGTTIN)
	(sleep 1; printf 'hello\n') | timeout 20 script -qec \
		"'$CACHEFENCE_BIN' -t 1m -k tty -- sh -c 'read l; echo got \$l'" /dev/null >tty.out 2>&1 ||
		{ cat tty.out >&2; false; }
	grep -q 'got hello' tty.out
	# the watchdog reaches COMMAND there too; a shell stays the session
	# leader, as at a login, so the terminal hangs nothing up
	cat >tty_run.sh <<-EOF
		'$CACHEFENCE_BIN' -t 1m -k tty2 -- sh -c 'echo \$PPID >leader.pid; echo \$\$ >cmd.pid; exec sleep 3'
		sleep 3
	EOF
	( (sleep 6) | timeout 20 script -qec "sh '$SCRATCH/tty_run.sh'" /dev/null >tty2.out 2>&1 3>&- &)
	wait_for_file cmd.pid 20
	sleep 0.3
	kill -KILL "$(cat leader.pid)"
	killed=$(date +%s%3N)
	while any_alive cmd.pid && (($(date +%s%3N) - killed < 1000)); do
		sleep 0.05
	done
	! any_alive cmd.pid || { echo "COMMAND outlived its leader at a terminal" >&2; false; }
}

@test "a leader whose COMMAND ends leaves no watchdog or other process behind" {
	mark="watch-mark-$$-$RANDOM"
	cf_to lead -t 1m -k watched -- sh -c 'echo ran' "$mark"
	assert_status 0 lead
	assert_bytes lead.out $'ran\n'
	# no child of ours is left in this scratch directory
	for pid in $(pgrep -f -- "$CACHEFENCE_BIN" || true); do
		[[ $(readlink "/proc/$pid/cwd" 2>/dev/null) != "$SCRATCH" ]] ||
			{ echo "process $pid is left:" >&2; ps -o pid,args -p "$pid" >&2; false; }
	done
}

@test "a leader's output reaches its caller while the store is stopped mid-renewal" {
	require_redis
	# renewals every 100 ms from COMMAND's start; the server stops right
	# after it, so a renewal hangs up to --redis-timeout (5 s); COMMAND
	# itself looks whether its first line reached the caller 1.5 s later
	cf_bg lead --redis-timeout 5s --lock-lease 300ms -t 1m -k slow -- sh -c "
		touch '$SCRATCH/started'; sleep 0.5; echo first; sleep 1.5
		grep -q first '$SCRATCH/lead.out' && touch '$SCRATCH/seen'
		touch '$SCRATCH/ended'; echo last"
	wait_for_file started 20
	kill -STOP "$REDIS_PID"
	wait_for_file ended 20 || true
	kill -CONT "$REDIS_PID"
	[[ -e seen ]] || { echo "the first line was held up by the renewal" >&2; false; }
	assert_eq "$(bg_status lead 30)" 0 "the leader's status"
	assert_bytes lead.out $'first\nlast\n'
}

@test "a leader's output reaches its caller through a link that delays every reply" {
	[[ $CACHEFENCE_TEST_STORE == redis ]] || skip "the relay speaks plain TCP to Redis"
	(
		python3 "$BATS_TEST_DIRNAME/lib/relay.py" --to "$REDIS_PORT" --port-file relay.port \
			--lifetime 120 --mode delay:1000 </dev/null >relay.log 2>&1 3>&- &
		echo $! >relay.pid
	)
	wait_for_file relay.port 10
	# the scripts are loaded over the direct link, so the leader's lookup
	# is one delayed round trip
	cf_to ping ping
	assert_status 0 ping
	# the first renewal goes out 100 ms into COMMAND and is answered 1 s
	# later; the first line comes at 0.3 s; COMMAND looks for it in the
	# caller's output at 0.8 s
	cf_bg lead -u "redis://127.0.0.1:$(cat relay.port)" --redis-timeout 5s --lock-lease 300ms \
		-t 1m -k delayed -- sh -c "
		sleep 0.3; echo first; sleep 0.5
		grep -q first '$SCRATCH/lead.out' && touch '$SCRATCH/seen'; echo last"
	assert_eq "$(bg_status lead 60)" 0 "the leader's status"
	[[ -e seen ]] || { echo "the first line was held up by the renewal" >&2; false; }
	assert_bytes lead.out $'first\nlast\n'
}

@test "-w 1s --wait-then-run runs COMMAND uncached after the wait and exits with its status" {
	cf_bg lead -t 1m -k busy -- sh -c "touch '$SCRATCH/started'; $(hold_until "$SCRATCH/go"); echo leader"
	wait_for_file started 20
	start=$(date +%s%3N)
	cf_to late -w 1s --wait-then-run -t 1m -k busy -- sh -c 'echo fallback; exit 3'
	took=$(($(date +%s%3N) - start))
	assert_status 3 late
	assert_bytes late.out $'fallback\n'
	assert_one_line late.err "cachefence: warning: "
	grep -q -- '--wait-then-run' late.err
	((took >= 1000 && took < 5000)) || { echo "took $took ms" >&2; false; }
	touch go
	assert_eq "$(bg_status lead 30)" 0 "the leader's status"
	# the leader's result is the stored one, not the fallback's
	cf_to hit -t 1m -k busy -- sh -c 'echo again'
	assert_bytes hit.out $'leader\n'
}

@test "-w 1s without --wait-then-run still gives up with 124 and runs nothing" {
	cf_bg lead -t 1m -k busy2 -- sh -c "touch '$SCRATCH/started'; $(hold_until "$SCRATCH/go"); echo leader"
	wait_for_file started 20
	cf_to late -w 1s -t 1m -k busy2 -- sh -c 'echo ran >ran; echo fallback'
	assert_status 124 late
	assert_empty late.out
	[[ ! -e ran ]]
	touch go
	assert_eq "$(bg_status lead 30)" 0 "the leader's status"
}

@test "--wait-then-run without --wait is a usage error" {
	cf_to bad --wait-then-run -t 1m -- true
	assert_usage_error bad
	grep -q -- 'only means something with --wait' bad.err
}

@test "a background refresh outlives the caller that started it, and stores" {
	cf_to seed -t 1s -s 1h -k bg -- printf old
	assert_status 0 seed
	sleep 1.2
	cf_to stale -t 1h -s 1h -k bg -- sh -c "sleep 1; printf new"
	assert_status 0 stale
	assert_bytes stale.out old
	# the caller is gone; the refresh, a leader of its own with its own
	# watchdog, goes on and stores
	for ((i = 0; i < 50; i++)); do
		cf_to get get bg
		[[ $(cat get.out) == new ]] && break
		sleep 0.1
	done
	assert_bytes get.out new
}
