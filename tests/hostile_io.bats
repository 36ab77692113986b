#!/usr/bin/env bats
# A hostile start and a hostile caller, on both stores: standard descriptors
# closed in every combination, a full or non-blocking or stalled stdout, a
# reader that goes away, signals ignored or blocked at start, grandchildren
# that outlive COMMAND, and no process, descriptor or spool space to spare.
# Each time COMMAND's output and status reach the caller, or the caller
# learns with one line and a non-zero status that they could not; nothing
# of COMMAND's ever reaches the store as a command, and nobody else waits on
# one caller's slow reading.

load lib/common

SLOW_READER=$BATS_TEST_DIRNAME/lib/slow_reader.py
SIGEXEC=$BATS_TEST_DIRNAME/lib/sigexec.py

setup_file() { store_start; }
teardown_file() { store_stop; }
setup() { common_setup; }
teardown() {
	common_teardown
	[[ -z ${NOBODY_DIR:-} ]] || rm -rf "$NOBODY_DIR"
}

# cf_closed FDS NAME ARGS...: cachefence ARGS... with the standard
# descriptors named in FDS (a word of 0, 1 and 2) closed; what it writes to
# those left open goes to NAME.out and NAME.err; sets $status
cf_closed() {
	local fds=$1 name=$2
	shift 2
	status=0
	(
		if [[ $fds == *0* ]]; then exec 0<&-; fi
		if [[ $fds == *1* ]]; then exec 1>&-; fi
		if [[ $fds == *2* ]]; then exec 2>&-; fi
		exec timeout -s KILL "$CF_TIMEOUT" "$CACHEFENCE_BIN" "$@"
	) >"$name.out" 2>"$name.err" || status=$?
}

# bg NAME COMMAND...: like cf_bg, for any command line (nohup, sigexec.py,
# slow_reader.py): its pid to NAME.pid, stdout to NAME.out, stderr to
# NAME.err, and when it ends its status to NAME.status (see bg_status)
bg() {
	local name=$1
	shift
	(
		"$@" >"$name.out" 2>"$name.err" &
		echo $! >"$name.pid.tmp" # renamed into place: never read empty
		mv "$name.pid.tmp" "$name.pid"
		st=0
		wait $! || st=$?
		echo $st >"$name.status.tmp"
		mv "$name.status.tmp" "$name.status"
	) </dev/null 3>&- 8>&- &
}

# slow_bg NAME STALL ARGS...: cachefence ARGS... in the background with its
# stdout a pipe that nobody reads for STALL seconds; then read at full speed
# into NAME.out (stderr: NAME.err, status: bg_status NAME)
slow_bg() {
	local name=$1 stall=$2
	shift 2
	(
		python3 "$SLOW_READER" --stall "$stall" "$name.out" -- "$CACHEFENCE_BIN" "$@" \
			2>"$name.err" &
		echo $! >"$name.pid.tmp" # renamed into place: never read empty
		mv "$name.pid.tmp" "$name.pid"
		st=0
		wait $! || st=$?
		echo $st >"$name.status.tmp"
		mv "$name.status.tmp" "$name.status"
	) </dev/null 3>&- 8>&- &
}

# mount a tmpfs of SIZE on DIR that anyone may write to, or skip the test
# where that is not allowed
mount_small_tmpfs() {
	mount_tmpfs "$1" "size=$2,mode=1777"
}

# fail if any Redis key starts with one of PREFIXES: a command that COMMAND's
# output would have run (nothing to check on the local store)
assert_not_injected() {
	[[ $CACHEFENCE_TEST_STORE == redis ]] || return 0
	local p found
	for p in "$@"; do
		found=$(rcli --scan --pattern "$p*")
		[[ -z $found ]] || { echo "injected into Redis: $found" >&2; return 1; }
	done
}

# the bit of signal SIG (a name) in a /proc/PID/status mask such as SigIgn
# of FILE: prints 1 or 0
sig_bit() {
	local file=$1 field=$2 num mask
	num=$(kill -l "$3")
	mask=$(awk -v f="$field:" '$1 == f { print $2 }' "$file")
	echo $(((0x$mask >> (num - 1)) & 1))
}

# --- closed standard descriptors ------------------------------------------------------

@test "stdout closed: COMMAND's output never reaches the store as a command; the miss and the hit fail with one line" {
	cmd=$(counter_cmd inject "printf 'SET injected%s x\\r\\n' \$n")

	cf_closed 1 miss -t 1m -k inject -- "$cmd"
	assert_status 125 miss
	assert_one_line miss.err
	grep -q 'cannot write to standard output: it is closed' miss.err
	cf_closed 1 hit -t 1m -k inject -- "$cmd"
	assert_status 125 hit
	assert_one_line hit.err
	assert_eq "$(runs inject)" 1 "runs of COMMAND"
	assert_not_injected injected
	# the run was stored whole all the same: only its caller lost it
	cf_to got get inject
	assert_status 0 got
	assert_bytes got.out 'SET injected1 x\r\n'
	cf_to again -t 1m -k inject -- "$cmd"
	assert_bytes again.out 'SET injected1 x\r\n'
}

@test "a stored DEL replayed with stdout closed deletes nothing: the hit and get fail with one line" {
	victim=$(counter_cmd victim 'echo "the victim entry"')
	deleter=$(counter_cmd deleter "printf 'DEL cachefence:{victim}\\r\\nDEL cachefence:{victim}:lock\\r\\n'")
	cf_to v -t 1h -k victim -- "$victim"
	cf_to d -t 1h -k deleter -- "$deleter"
	assert_status 0 d

	for i in 1 2 3; do
		cf_closed 1 "hit$i" -t 1h -k deleter -- "$deleter"
		assert_status 125 "hit$i"
		assert_one_line "hit$i.err"
	done
	cf_closed 1 got get deleter
	assert_status 125 got
	assert_one_line got.err
	assert_eq "$(runs deleter)" 1 "runs of the deleter"

	cf_to still get victim
	assert_status 0 still
	assert_bytes still.out 'the victim entry\n'
	if [[ $CACHEFENCE_TEST_STORE == redis ]]; then
		assert_eq "$(rcli EXISTS 'cachefence:{victim}')" 1 "the victim's Redis key"
	fi
}

@test "stderr closed with --cache-stderr: COMMAND's stderr never reaches the store as a command, and the run keeps COMMAND's status" {
	cmd=$(counter_cmd errinject "echo out; printf 'SET errinjected%s x\\r\\n' \$n >&2")

	# stderr is closed: there is nowhere to say anything, so the lost
	# stderr bytes do not change the status
	cf_closed 2 miss --cache-stderr -t 1m -k errinject -- "$cmd"
	assert_status 0 miss
	assert_bytes miss.out 'out\n'
	cf_closed 2 hit --cache-stderr -t 1m -k errinject -- "$cmd"
	assert_status 0 hit
	assert_bytes hit.out 'out\n'
	assert_eq "$(runs errinject)" 1 "runs of COMMAND"
	assert_not_injected errinjected
	cf_to again --cache-stderr -t 1m -k errinject -- "$cmd"
	assert_status 0 again
	assert_bytes again.out 'out\n'
	assert_bytes again.err 'SET errinjected1 x\r\n'
}

@test "every combination of closed stdin, stdout and stderr on a miss, a hit, get and --refresh with --cache-stderr: a closed stdout is a write error, nothing reaches the store" {
	cmd=$(counter_cmd combo "printf 'SET o%s x\\r\\n' \$n; printf 'SET e%s x\\r\\n' \$n >&2")

	for fds in 0 1 2 01 02 12 012; do
		opts=(--cache-stderr -t 1m -k "combo$fds")
		for what in miss hit get refresh; do
			case $what in
			get) cf_closed "$fds" "$what$fds" get "combo$fds" ;;
			refresh) cf_closed "$fds" "$what$fds" --refresh "${opts[@]}" -- "$cmd" ;;
			*) cf_closed "$fds" "$what$fds" "${opts[@]}" -- "$cmd" ;;
			esac
			# a closed stdout fails the run; a closed stderr only loses bytes
			fails=0
			[[ $fds == *1* ]] && fails=1
			if ((fails)); then
				assert_status 125 "$what$fds"
			else
				assert_status 0 "$what$fds"
			fi
			# one line when stdout failed and stderr can carry it
			if [[ $fds == *1* && $fds != *2* ]]; then
				assert_eq "$(grep -c '^cachefence: ' "$what$fds.err")" 1 \
					"cachefence lines of $what with $fds closed"
			fi
		done
		n=$(grep -c . "combo.runs")
		assert_not_injected "o" "e"
		cf_to "final$fds" --cache-stderr -t 1m -k "combo$fds" -- "$cmd"
		assert_status 0 "final$fds"
		assert_bytes "final$fds.out" "SET o$n x\\r\\n"
		assert_bytes "final$fds.err" "SET e$n x\\r\\n"
	done
	assert_eq "$(runs combo)" 14 "runs of COMMAND (a miss and a refresh per combination)"
}

@test "a stale hit with every standard descriptor closed fails with 125, and its background refresh still stores the new result" {
	cmd=$(counter_cmd stale "printf 'SET stale%s x\\r\\n' \$n")
	cf_to first -t 1s -s 1h -k stale -- "$cmd"
	sleep 1.2

	cf_closed 012 hit -t 1s -s 1h -k stale -- "$cmd"
	assert_status 125 hit
	for i in $(seq 100); do
		[[ $(runs stale) == 2 ]] && break
		sleep 0.1
	done
	assert_eq "$(runs stale)" 2 "runs of COMMAND"
	for i in $(seq 100); do
		cf_to got get stale
		[[ $(cat got.out) == "SET stale2 x"* ]] && break
		sleep 0.1
	done
	assert_bytes got.out 'SET stale2 x\r\n'
	assert_not_injected stale
}

@test "stdin closed: COMMAND finds it closed (a read fails), and --stdin refuses it with one line" {
	cf_closed 0 run -t 1m -k readin -- sh -c 'timeout 5 cat; echo "cat: status $?"'
	assert_status 0 run
	assert_bytes run.out 'cat: status 1\n'
	grep -q 'Bad file descriptor' run.err

	cf_closed 0 spooled --stdin -t 1m -- cat
	assert_status 125 spooled
	assert_empty spooled.out
	assert_one_line spooled.err
	grep -q 'cannot read standard input' spooled.err
}

# --- a stdout that fails, blocks or goes away -----------------------------------------------

@test "stdout on a full device (/dev/full): a miss, a hit and get exit 125 with one line, and the result is stored whole" {
	cmd=$(counter_cmd full 'seq 1 100000')

	for what in miss hit get; do
		status=0
		if [[ $what == get ]]; then
			cf get full >/dev/full 2>"$what.err" || status=$?
		else
			cf -t 1m -k full -- "$cmd" >/dev/full 2>"$what.err" || status=$?
		fi
		assert_status 125 "$what"
		assert_one_line "$what.err"
		grep -q 'cannot write to standard output: No space left on device' "$what.err"
	done
	assert_eq "$(runs full)" 1 "runs of COMMAND"
	cf_to got get full
	seq 1 100000 >expected
	cmp got.out expected
}

@test "a non-blocking stdout pipe with a slow reader gets all 1,000,000 bytes on a miss and on a hit" {
	head -c 1000000 /dev/urandom >data.bin
	cmd=$(counter_cmd emit "cat '$SCRATCH/data.bin'")

	for what in miss hit; do
		status=0
		python3 "$SLOW_READER" --nonblock --stall 0.5 --rate 2000000 "$what.out" -- \
			"$CACHEFENCE_BIN" -t 1m -k nonblock -- "$cmd" 2>"$what.err" || status=$?
		assert_status 0 "$what"
		cmp "$what.out" data.bin
		assert_empty "$what.err"
	done
	assert_eq "$(runs emit)" 1 "runs of COMMAND"
}

@test "a non-blocking stdout pipe with a slow reader gets all of a 50 MiB hit" {
	head -c 52428800 /dev/urandom >big.bin
	cmd=$(counter_cmd emit "cat '$SCRATCH/big.bin'")
	cf_to miss -t 1m -k big -- "$cmd"
	assert_status 0 miss
	rm miss.out

	status=0
	python3 "$SLOW_READER" --nonblock --stall 1 --rate 60000000 hit.out -- \
		"$CACHEFENCE_BIN" -t 1m -k big -- "$cmd" 2>hit.err || status=$?
	assert_status 0 hit
	cmp hit.out big.bin
	assert_empty hit.err
	assert_eq "$(runs emit)" 1 "runs of COMMAND"
}

@test "a reader that goes away (| head -c 10): no message, exit 141 as for SIGPIPE, and the leader still stores the whole result" {
	head -c 1000000 /dev/urandom >data.bin
	cmd=$(counter_cmd emit "cat '$SCRATCH/data.bin'")

	for what in miss hit; do
		cf -t 1m -k gone -- "$cmd" 2>"$what.err" | head -c 10 >"$what.out"
		st=${PIPESTATUS[0]}
		assert_eq "$st" 141 "status of the $what"
		assert_empty "$what.err"
		cmp -n 10 "$what.out" data.bin
	done
	assert_eq "$(runs emit)" 1 "runs of COMMAND"
	cf_to got get gone
	cmp got.out data.bin
}

# --- --stale-if-error when the spool stops short ------------------------------------------

@test "--stale-if-error: a refresh whose output outgrows --max-size reaches its caller whole, with its own status, or the old entry when it fails" {
	cmd=$(counter_cmd sie 'case $n in
		1) echo old ;;
		2 | 3) head -c 200000 /dev/zero | tr "\0" y; exit $((n - 2)) ;;
		*) head -c 1500000 /dev/zero | tr "\0" y; exit 2 ;;
		esac')
	head -c 200000 /dev/zero | tr '\0' y >expected
	head -c 1500000 /dev/zero | tr '\0' y >expected.big
	cf_to first -t 1s --stale-if-error 1h -k sie -- "$cmd"
	assert_bytes first.out 'old\n'
	sleep 1.2

	cf_to ok -t 1s --stale-if-error 1h --max-size 100k -k sie -- "$cmd"
	assert_status 0 ok
	cmp ok.out expected
	assert_one_line ok.err "cachefence: warning: "
	grep -q -- '--max-size' ok.err
	# held in memory (under 1 MiB) though the spool stopped: a failure is
	# still answered with the old entry
	cf_to failed -t 1s --stale-if-error 1h --max-size 100k -k sie -- "$cmd"
	assert_status 0 failed || { head -c 300 failed.out; false; }
	assert_bytes failed.out 'old\n'
	# past what a hold keeps in memory the bytes went out live, so the
	# failure cannot be swapped for the old entry: COMMAND's whole output
	# and status
	cf_to big -t 1s --stale-if-error 1h --max-size 100k -k sie -- "$cmd"
	assert_status 2 big
	cmp big.out expected.big
	assert_eq "$(runs sie)" 4 "runs of COMMAND"
	cf_to got get sie
	assert_bytes got.out 'old\n'
}

@test "--stale-if-error with TMPDIR full: a refresh's output reaches its caller whole, and a live leader's too" {
	mount_small_tmpfs "$SCRATCH/tmp" 64k
	cmd=$(counter_cmd sie 'if [ $n -eq 1 ]; then echo old; else head -c 200000 /dev/zero | tr "\0" z; fi')
	head -c 200000 /dev/zero | tr '\0' z >expected
	cf_to first -t 1s --stale-if-error 1h -k siefull -- "$cmd"
	sleep 1.2

	TMPDIR=$SCRATCH/tmp cf_to refresh -t 1s --stale-if-error 1h -k siefull -- "$cmd"
	assert_status 0 refresh
	cmp refresh.out expected
	assert_one_line refresh.err "cachefence: warning: "
	grep -q 'No space left on device' refresh.err

	TMPDIR=$SCRATCH/tmp cf_to live -t 1m -k livefull -- "$cmd"
	assert_status 0 live
	cmp live.out expected
	assert_one_line live.err "cachefence: warning: "
}

# --- hangs ----------------------------------------------------------------------------------

@test "--timeout kills COMMAND's whole process group even after its shell exited: (sleep 20) & and sleep infinity & end within seconds" {
	for body in '(sleep 20) & echo $! >"$PWD/grand1.pid"; echo started' \
		'sleep infinity & echo $! >"$PWD/grand2.pid"; echo started'; do
		SECONDS=0
		cf_to grand --timeout 1s -t 1m -k "grand$RANDOM" -- sh -c "$body"
		took=$SECONDS
		assert_status 124 grand
		assert_bytes grand.out 'started\n'
		assert_one_line grand.err
		((took <= 8)) || { echo "--timeout 1s returned after ${took}s: $body" >&2; false; }
	done
	for f in grand1.pid grand2.pid; do
		for i in $(seq 50); do
			proc_alive "$(cat "$f")" || break
			sleep 0.1
		done
		! proc_alive "$(cat "$f")" || { echo "the grandchild of $f still runs" >&2; false; }
	done
}

@test "--timeout: a grandchild that left COMMAND's group (setsid) with the output pipe open stops holding the caller a moment after SIGKILL" {
	SECONDS=0
	cf_to escaped --timeout 1s -t 1m -k escaped -- sh -c 'setsid sleep 30 & echo $! >"$PWD/escaped.pid"; echo started'
	took=$SECONDS
	assert_status 124 escaped
	assert_bytes escaped.out 'started\n'
	((took <= 10)) || { echo "--timeout 1s returned after ${took}s" >&2; false; }
}

@test "a leader whose caller does not read for 15 s renews its lease, stores the result and wakes its waiters at once: one run" {
	cmd=$(counter_cmd slow 'echo "run $n"; head -c 1000000 /dev/zero | tr "\0" x; sleep 2; echo end')
	{ echo "run 1"; head -c 1000000 /dev/zero | tr '\0' x; echo end; } >expected

	slow_bg leader 15 --lock-lease 1s -t 1m -k slow -- "$cmd"
	wait_for_file slow.runs 30
	SECONDS=0
	for i in 1 2 3; do
		cf_bg "waiter$i" --lock-lease 1s -t 1m -k slow -- "$cmd"
	done
	for i in 1 2 3; do
		assert_eq "$(bg_status "waiter$i" 60)" 0 "status of waiter $i"
	done
	took=$SECONDS
	assert_eq "$(runs slow)" 1 "runs of COMMAND"
	((took <= 10)) || { echo "the waiters took ${took}s: they waited for the leader's reader" >&2; false; }
	for i in 1 2 3; do
		cmp "waiter$i.out" expected
	done
	assert_eq "$(bg_status leader 60)" 0 "status of the leader"
	cmp leader.out expected
	assert_empty leader.err
}

@test "--timeout fires on time while the leader's caller does not read" {
	cmd=$(counter_cmd stuck "echo \$\$ >'$SCRATCH/stuck.pid'; head -c 1000000 /dev/zero | tr '\\0' s; exec sleep 30")

	slow_bg leader 20 --timeout 3s --lock-lease 1s -t 1m -k stuck -- "$cmd"
	wait_for_file stuck.pid 30
	pid=$(cat stuck.pid)
	SECONDS=0
	while proc_alive "$pid" && ((SECONDS < 15)); do
		sleep 0.2
	done
	took=$SECONDS
	! proc_alive "$pid" || { echo "COMMAND still runs ${took}s after it started (--timeout 3s)" >&2; false; }
	((took <= 10)) || { echo "--timeout 3s fired after ${took}s" >&2; false; }
	assert_eq "$(bg_status leader 60)" 124 "status of the leader"
	assert_eq "$(wc -c <leader.out)" 1000000 "bytes the leader's caller got"
}

# --- signals the caller ignores or blocks -------------------------------------------------

@test "nohup: SIGHUP ignored at start stays ignored: the leader neither dies of it nor passes it on, and COMMAND inherits it ignored" {
	cmd=$(counter_cmd hup "grep -E '^Sig(Ign|Blk)' /proc/self/status >'$SCRATCH/hup.sigs'; touch '$SCRATCH/started'; $(hold_until "$SCRATCH/go"); echo \"run \$n done\"")

	bg leader nohup "$CACHEFENCE_BIN" -t 1m -k hup -- "$cmd"
	wait_for_file started 30
	kill -HUP "$(bg_pid leader)"
	sleep 0.5
	proc_alive "$(bg_pid leader)" || { echo "SIGHUP ended the leader" >&2; false; }
	touch go
	assert_eq "$(bg_status leader 60)" 0 "status of the leader"
	assert_bytes leader.out 'run 1 done\n'
	assert_eq "$(sig_bit hup.sigs SigIgn HUP)" 1 "SIGHUP ignored in COMMAND"
	cf_to got get hup
	assert_bytes got.out 'run 1 done\n'
}

@test "signals ignored at start reach COMMAND ignored, and only those: as leader and as a fail-open run" {
	cmd=$(counter_cmd sigs "grep -E '^Sig(Ign|Blk)' /proc/self/status >\"$SCRATCH/sigs.\$n\"")
	dead=redis://127.0.0.1:1

	dfl=(--default HUP --default TERM --default CHLD)

	python3 "$SIGEXEC" "${dfl[@]}" --ignore PIPE --ignore INT --ignore TERM -- \
		"$CACHEFENCE_BIN" -t 1m -k sigs -- "$cmd"
	python3 "$SIGEXEC" "${dfl[@]}" --ignore PIPE --ignore HUP -- \
		"$CACHEFENCE_BIN" -q -u "$dead" -t 1m -k sigs -- "$cmd"
	python3 "$SIGEXEC" "${dfl[@]}" -- "$CACHEFENCE_BIN" -t 1m -k sigs2 -- "$cmd"
	python3 "$SIGEXEC" "${dfl[@]}" -- "$CACHEFENCE_BIN" -q -u "$dead" -t 1m -k sigs2 -- "$cmd"
	assert_eq "$(runs sigs)" 4 "runs of COMMAND"
	for sig in PIPE INT TERM; do
		assert_eq "$(sig_bit sigs.1 SigIgn "$sig")" 1 "SIG$sig ignored in the leader's COMMAND"
	done
	for sig in PIPE HUP; do
		assert_eq "$(sig_bit sigs.2 SigIgn "$sig")" 1 "SIG$sig ignored in the fail-open COMMAND"
	done
	for n in 3 4; do
		for sig in PIPE INT TERM HUP CHLD; do
			assert_eq "$(sig_bit "sigs.$n" SigIgn "$sig")" 0 "SIG$sig ignored in COMMAND run $n"
		done
	done
}

@test "a caller that blocks SIGCHLD: the leader returns as soon as COMMAND ends, and COMMAND gets the caller's mask" {
	cmd=$(counter_cmd masked "echo done; exec >&- 2>&-; sleep 1")
	blocked=(python3 "$SIGEXEC" --block CHLD --block USR1 -- "$CACHEFENCE_BIN" --lock-lease 30s -t 1m)

	SECONDS=0
	status=0
	timeout -s KILL "$CF_TIMEOUT" "${blocked[@]}" -k masked -- "$cmd" >masked.out 2>masked.err || status=$?
	took=$SECONDS
	assert_status 0 masked
	assert_bytes masked.out 'done\n'
	((took <= 6)) || { echo "the leader returned ${took}s after COMMAND started" >&2; false; }
	# not through sh, which unblocks every signal at start
	status=0
	timeout -s KILL "$CF_TIMEOUT" "${blocked[@]}" -k mask -- grep '^Sig' /proc/self/status \
		>mask.out 2>mask.err || status=$?
	assert_status 0 mask
	assert_eq "$(sig_bit mask.out SigBlk CHLD)" 1 "SIGCHLD blocked in COMMAND"
	assert_eq "$(sig_bit mask.out SigBlk USR1)" 1 "SIGUSR1 blocked in COMMAND"
}

# --- nothing to spare: processes, descriptors, spool space ---------------------------

@test "no process to spare (RLIMIT_NPROC): COMMAND runs uncached in place with one warning, and the lock is given back" {
	id nobody >/dev/null 2>&1 || skip "no user nobody"
	for tool in setpriv prlimit perl; do
		command -v "$tool" >/dev/null || skip "needs $tool"
	done
	# root is exempt from RLIMIT_NPROC: run as nobody, with a store nobody can use
	url=$CACHEFENCE_URL
	NOBODY_DIR=$(mktemp -d /tmp/cachefence-nproc.XXXXXX)
	chmod 755 "$NOBODY_DIR"
	chown nobody "$NOBODY_DIR"
	[[ $CACHEFENCE_TEST_STORE == file ]] && url=file://$NOBODY_DIR/store
	# the build may sit where nobody cannot reach it (/root is 0700): run a copy
	cp "$CACHEFENCE_BIN" "$NOBODY_DIR/cachefence"
	CACHEFENCE_BIN=$NOBODY_DIR/cachefence
	as_nobody=(setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)" --clear-groups)

	# 1: not even a thread; 2: a thread, but no fork
	for n in 1 2; do
		bg "limited$n" prlimit --nproc="$n" "${as_nobody[@]}" "$CACHEFENCE_BIN" -u "$url" \
			-t 1m -k "nproc$n" -- perl -e '$| = 1; print "uncached run\n"; sleep 3; exit 3'
		wait_for_text "limited$n.out" 'uncached run' 30
		# the lock is free while the uncached COMMAND still runs
		status=0
		timeout -s KILL "$CF_TIMEOUT" "${as_nobody[@]}" "$CACHEFENCE_BIN" -u "$url" -w 2s -t 1m \
			-k "nproc$n" -- echo "cached run" >"other$n.out" 2>"other$n.err" || status=$?
		assert_status 0 "other$n"
		assert_bytes "other$n.out" 'cached run\n'
		assert_eq "$(bg_status "limited$n" 30)" 3 "status of the run without processes ($n)"
		assert_bytes "limited$n.out" 'uncached run\n'
		assert_one_line "limited$n.err" "cachefence: warning: "
		grep -q 'running COMMAND uncached' "limited$n.err"
	done
}

@test "at every descriptor limit from 4 to 24: COMMAND's output and status come through, cached or uncached with one warning, never 125, and the lock is given back" {
	for n in $(seq 4 24); do
		status=0
		(
			ulimit -n "$n"
			exec "$CACHEFENCE_BIN" --cache-stderr -t 1m -k "fd$n" -- ls -d / /nonexistent-cf
		) >"fd$n.out" 2>"fd$n.err" 3>&- || status=$?
		assert_status 2 "fd$n"
		assert_bytes "fd$n.out" '/\n'
		grep -q 'nonexistent-cf' "fd$n.err"
		lines=$(grep -c '^cachefence: ' "fd$n.err" || true)
		((lines <= 1)) || { echo "$lines lines from cachefence at ulimit -n $n:" >&2; cat "fd$n.err" >&2; false; }
		((lines == 0)) || grep -q '^cachefence: warning: .*running COMMAND uncached' "fd$n.err"
		cf_to "again$n" --cache-stderr -w 2s -t 1m -k "fd$n" -- ls -d / /nonexistent-cf
		assert_status 2 "again$n"
	done
}

@test "--stdin when TMPDIR is missing or full: COMMAND runs uncached with one warning and gets every byte of its input" {
	head -c 1000000 /dev/urandom >in
	want=$(md5sum <in)

	status=0
	cat in | TMPDIR=$SCRATCH/missing cf --stdin -t 1m -- md5sum >missing.out 2>missing.err || status=$?
	assert_status 0 missing
	assert_eq "$(cat missing.out)" "$want" "COMMAND's input with TMPDIR missing"
	assert_one_line missing.err "cachefence: warning: "

	mount_small_tmpfs "$SCRATCH/tmp" 64k
	status=0
	cat in | TMPDIR=$SCRATCH/tmp cf --stdin -t 1m -- md5sum >piped.out 2>piped.err || status=$?
	assert_status 0 piped
	assert_eq "$(cat piped.out)" "$want" "COMMAND's input from a pipe with TMPDIR full"
	assert_one_line piped.err "cachefence: warning: "
	grep -q 'No space left on device' piped.err
	status=0
	TMPDIR=$SCRATCH/tmp cf --stdin -t 1m -- md5sum <in >file.out 2>file.err || status=$?
	assert_status 0 file
	assert_eq "$(cat file.out)" "$want" "COMMAND's input from a file with TMPDIR full"
	assert_one_line file.err "cachefence: warning: "
}
