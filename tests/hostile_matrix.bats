#!/usr/bin/env bats
# The promise under hostile starting conditions, as a matrix, on both
# stores: putting cachefence in front of a command never makes things worse.
# COMMAND's output and status reach the caller, nothing hangs past its bound,
# nothing foreign reaches the store, and a failure to deliver is one line and
# a non-zero exit, never a silent 0 and never a crash.
#
# Conditions: descriptors 0, 1 and 2 closed in every combination; signals
# blocked or ignored at start; low RLIMIT_NOFILE, RLIMIT_NPROC, RLIMIT_FSIZE
# and RLIMIT_AS; a non-blocking stdout pipe with a slow reader and a pipe full
# before the start; a full file system under every step of the local store
# and under TMPDIR; stdout on /dev/full.
#
# Each test loops over its combinations and names every one that failed in
# its failure message (problem/problems_report), so one run lists them all.
# tests/lib/hostile_launch.py starts cachefence in an exactly known state
# (signals, mask, rlimits, user, closed descriptors); tests/lib/pipe_reader.py
# reads its stdout badly. Bounds are generous: 2 busy cores must not fail a
# test that keeps its promise.

load lib/common

PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3
LIB=$BATS_TEST_DIRNAME/lib

setup_file() { store_start; }
teardown_file() { store_stop; }
setup() {
	common_setup
	problems=()
}
teardown() {
	common_teardown
	local m
	if [[ -f $BATS_TEST_TMPDIR/mounts ]]; then
		while read -r m; do
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
		done < <(tac "$BATS_TEST_TMPDIR/mounts")
	fi
	[[ -n ${NOBODY_DIR:-} ]] && rm -rf "$NOBODY_DIR"
	return 0
}

# --- collecting failures ------------------------------------------------------------

# note one failed combination (a sentence naming it); the test goes on
problem() {
	problems+=("$*")
}

# fail, listing every problem noted, if there was one
problems_report() {
	((${#problems[@]} == 0)) && return 0
	printf '  %s\n' "${problems[@]}" >&2
	echo "${#problems[@]} problem(s)" >&2
	return 1
}

# --- running cachefence in a hostile state --------------------------------------------

# hl NAME [hostile_launch.py OPTION]... -- ARG...: run cachefence ARGS in the
# state the options ask for; stdout in NAME.out, stderr in NAME.err, status in
# $status (137: still running after HL_KILL_AFTER seconds, 30 by default)
hl() {
	local name=$1 opts=()
	shift
	while (($#)) && [[ $1 != -- ]]; do
		opts+=("$1")
		shift
	done
	shift
	status=0
	"$PY" "$LIB/hostile_launch.py" --kill-after "${HL_KILL_AFTER:-30}" "${opts[@]}" -- \
		"$CACHEFENCE_BIN" "$@" >"$name.out" 2>"$name.err" 3>&- || status=$?
}

# true if FILE is exactly one line that starts "cachefence: "
one_line() {
	[[ $(awk 'END { print NR }' "$1") == 1 && $(head -c 12 "$1") == "cachefence: " ]]
}

# true if FILE is empty or one line that starts "cachefence: "
at_most_one_line() {
	[[ ! -s $1 ]] || one_line "$1"
}

# FILE with the first copy of the bytes of BLOCK (a file) taken out, on stdout
without_block() {
	"$PY" -c '
import sys
data, block = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
i = data.find(block) if block else -1
sys.stdout.buffer.write(data if i < 0 else data[:i] + data[i + len(block):])' "$1" "$2"
}

# a short description of FILE's content for a failure message
show() {
	local n
	n=$(wc -c <"$1")
	printf '%s bytes' "$n"
	((n == 0)) || printf ': %q' "$(head -c 160 "$1" | tr '\0' '@')"
}

# --- what a COMMAND's bytes could do to the store ---------------------------------------

# The bytes the fd tests' COMMAND prints: Redis commands in RESP (a SET of a
# key outside the namespace and a DEL of another entry), then a marker line
# that the local store's check looks for in files where it does not belong.
make_payloads() {
	printf '*3\r\n$3\r\nSET\r\n$10\r\ninjected-o\r\n$1\r\nx\r\n*2\r\n$3\r\nDEL\r\n$19\r\ncachefence:{victim}\r\nINJECT-MARK-OUT\n' >"$SCRATCH/payload.out"
	printf '*3\r\n$3\r\nSET\r\n$10\r\ninjected-e\r\n$1\r\nx\r\n*2\r\n$3\r\nDEL\r\n$19\r\ncachefence:{victim}\r\nINJECT-MARK-ERR\n' >"$SCRATCH/payload.err"
	: >"$SCRATCH/empty"
}

# ./fdcmd: records its descriptors in fds.PID, prints payload.out on stdout
# and payload.err on stderr, exits 0
make_fdcmd() {
	make_payloads
	cat >"$SCRATCH/fdcmd" <<-EOF
		#!/bin/sh
		echo \$\$ >>"$SCRATCH/fdcmd.runs"
		ls -l /proc/\$\$/fd/ >"$SCRATCH/fds.\$\$" 2>&1
		cat "$SCRATCH/payload.out"
		cat "$SCRATCH/payload.err" >&2
		exit 0
	EOF
	chmod +x "$SCRATCH/fdcmd"
	echo "$SCRATCH/fdcmd"
}

# the entry "victim", whose Redis name the payloads DEL
make_victim() {
	cf -t 1h -k victim -- printf 'victim entry\n' >/dev/null 2>&1
}

# Print what COMMAND's bytes did to the store, if anything (nothing when the
# store is as it should be), and repair it for the next combination.
store_damage() {
	local k
	if [[ $CACHEFENCE_TEST_STORE == redis ]]; then
		for k in injected-o injected-e; do
			[[ $(rcli EXISTS "$k") == 0 ]] || echo "the server ran a SET of $k from output bytes;"
		done
		for k in $(rcli --scan); do
			[[ $k == cachefence:* || $k == injected-? ]] || echo "a foreign key $k appeared;"
		done
		rcli DEL injected-o injected-e >/dev/null
	else
		local f
		while read -r f; do
			[[ -n $f ]] || continue
			case $f in
			*.entry | *.done) ;;
			*)
				echo "output bytes landed in ${f#"$STORE_DIR"/};"
				rm -f "$f"
				;;
			esac
		done < <(grep -rlaF INJECT-MARK "$STORE_DIR" 2>/dev/null)
	fi
	if [[ $(cf get victim 2>/dev/null) != 'victim entry' ]]; then
		echo "the entry victim was deleted or changed;"
		cf invalidate victim >/dev/null 2>&1
		make_victim
	fi
}

# Print what is wrong with the descriptors COMMAND runs with (the fds.PID
# files of ./fdcmd): none may be a socket or a file of the store.
command_fd_damage() {
	local f line
	for f in "$SCRATCH"/fds.*; do
		[[ -f $f ]] || continue
		while read -r line; do
			case $line in
			*'-> socket:'*) echo "COMMAND has a socket as fd ${line%% -> *};" ;;
			*"-> ${STORE_DIR:-/nonexistent}"*) echo "COMMAND has a store file as fd ${line%% -> *}: ${line##*/};" ;;
			esac
		done < <(sed -n 's/.* \([0-9][0-9]*\) -> /\1 -> /p' "$f")
		rm -f "$f"
	done
}

# true if the entry of KEY is fresh
is_fresh() {
	cf inspect --json "$1" 2>/dev/null | jq -e '.state == "fresh"' >/dev/null 2>&1
}

# the 8 sets of standard descriptors to close, for --close
FD_COMBOS=("" 0 1 2 0,1 0,2 1,2 0,1,2)

# name of a combination, for file names and messages
combo_name() {
	[[ -n $1 ]] && echo "closed${1//,/}" || echo "none-closed"
}

# Judge the call NAME made with the descriptors COMBO closed (a comma list):
# with stdout open it exits EXPECT_STATUS with exactly the bytes of file
# OUT on stdout and of file ERR on stderr (when open); with stdout closed it
# exits non-zero, and stderr (when open) holds one line "cachefence: ..."
# besides, possibly, ERR's bytes (COMMAND's own stderr). Never a signal.
judge() {
	local what=$1 combo=$2 name=$3 out=$4 err=$5 expect=${6:-0}
	local label="$what with fds {${combo:-none}} closed"
	if ((status >= 128)); then
		problem "$label: exit $status (a crash or a kill), stderr: $(show "$name.err")"
		return
	fi
	if [[ ,$combo, != *,1,* ]]; then
		cmp -s "$name.out" "$out" || problem "$label: stdout is $(show "$name.out"), expected $(show "$out")"
		[[ $status == "$expect" ]] || problem "$label: exit $status, expected $expect; stderr: $(show "$name.err")"
		if [[ ,$combo, != *,2,* ]]; then
			cmp -s "$name.err" "$err" || problem "$label: stderr is $(show "$name.err"), expected $(show "$err")"
		fi
	else
		[[ $status != 0 ]] || problem "$label: exit 0 though nothing could be written to the closed stdout"
		if [[ ,$combo, != *,2,* ]]; then
			without_block "$name.err" "$err" >"$name.err.rest"
			one_line "$name.err.rest" ||
				problem "$label: stderr should say in one line that stdout is closed; it is $(show "$name.err")"
		fi
	fi
	local d
	d=$(store_damage | tr '\n' ' ')
	[[ -z $d ]] || problem "$label: $d"
	d=$(command_fd_damage | tr '\n' ' ')
	[[ -z $d ]] || problem "$label: $d"
}

# --- 1. closed standard descriptors ------------------------------------------------------

@test "fds 0/1/2 closed in every combination, a miss: COMMAND's output reaches what is open, a closed stdout is an error, nothing reaches the store" {
	cmd=$(make_fdcmd)
	make_victim
	for c in "${FD_COMBOS[@]}"; do
		n=$(combo_name "$c")
		hl "$n" --close "$c" -- -t 1h -k "miss-$n" -- "$cmd"
		judge "a miss" "$c" "$n" payload.out payload.err
	done
	problems_report
}

@test "fds 0/1/2 closed in every combination, a hit: the stored bytes reach an open stdout and never the store's socket or files" {
	cmd=$(make_fdcmd)
	make_victim
	for c in "${FD_COMBOS[@]}"; do
		n=$(combo_name "$c")
		cf_to "prep-$n" -t 1h -k "hit-$n" -- "$cmd"
		assert_status 0 "prep-$n"
	done
	before=$(runs fdcmd)
	for c in "${FD_COMBOS[@]}"; do
		n=$(combo_name "$c")
		hl "$n" --close "$c" -- -t 1h -k "hit-$n" -- "$cmd"
		judge "a hit" "$c" "$n" payload.out empty
	done
	[[ $(runs fdcmd) == "$before" ]] || problem "COMMAND ran $(($(runs fdcmd) - before)) time(s) for hits"
	problems_report
}

@test "fds 0/1/2 closed in every combination, get: the stored bytes reach an open stdout and never the store" {
	cmd=$(make_fdcmd)
	make_victim
	cf_to prep -t 1h -k got -- "$cmd"
	assert_status 0 prep
	for c in "${FD_COMBOS[@]}"; do
		n=$(combo_name "$c")
		hl "$n" --close "$c" -- get got
		judge "get" "$c" "$n" payload.out empty
	done
	problems_report
}

@test "fds 0/1/2 closed in every combination, --cache-stderr: a miss and a hit give stdout and stderr to what is open and nothing to the store" {
	cmd=$(make_fdcmd)
	make_victim
	for c in "${FD_COMBOS[@]}"; do
		n=$(combo_name "$c")
		hl "miss-$n" --close "$c" -- -t 1h -k "cse-$n" --cache-stderr -- "$cmd"
		judge "a --cache-stderr miss" "$c" "miss-$n" payload.out payload.err
		# a hit of an entry stored whole by a caller with everything open
		cf_to "prep-$n" -t 1h -k "cse-hit-$n" --cache-stderr -- "$cmd"
		hl "hit-$n" --close "$c" -- -t 1h -k "cse-hit-$n" --cache-stderr -- "$cmd"
		judge "a --cache-stderr hit" "$c" "hit-$n" payload.out payload.err
	done
	problems_report
}

@test "fds 0/1/2 closed in every combination, a stale hit: the stale bytes reach an open stdout, the background refresh stores a sound entry, nothing reaches the store" {
	cmd=$(make_fdcmd)
	make_victim
	for c in "${FD_COMBOS[@]}"; do
		n=$(combo_name "$c")
		cf_to "prep-$n" -t 1s -s 1h --beta 0 -k "stale-$n" -- "$cmd"
		assert_status 0 "prep-$n"
	done
	sleep 1.5
	for c in "${FD_COMBOS[@]}"; do
		n=$(combo_name "$c")
		# -t 1h: the refresh stores an entry that stays fresh for the checks
		hl "$n" --close "$c" -- -t 1h -s 1h --beta 0 -k "stale-$n" -- "$cmd"
		judge "a stale hit" "$c" "$n" payload.out empty
	done
	# the refreshes run detached: once each entry is fresh again (or after
	# 20 s), look at what they did
	for c in "${FD_COMBOS[@]}"; do
		n=$(combo_name "$c")
		[[ ,$c, == *,1,* ]] && continue # a caller that could not serve may skip the refresh
		for _ in $(seq 200); do
			is_fresh "stale-$n" && break
			sleep 0.1
		done
		is_fresh "stale-$n" ||
			problem "a stale hit with fds {${c:-none}} closed: the background refresh stored nothing in 20 s"
		cf get "stale-$n" >"got-$n" 2>/dev/null
		cmp -s "got-$n" payload.out || problem "a stale hit with fds {${c:-none}} closed: after the refresh get gives $(show "got-$n")"
	done
	sleep 0.5
	d=$(store_damage | tr '\n' ' ')
	[[ -z $d ]] || problem "after the background refreshes: $d"
	d=$(command_fd_damage | tr '\n' ' ')
	[[ -z $d ]] || problem "after the background refreshes: $d"
	problems_report
}

@test "COMMAND starts with only the descriptors its caller gave it: no store socket or file, no spare end of its own pipes" {
	# the same probe run directly and through cachefence (a miss, a miss
	# with --cache-stderr, a fail-open run) must see the same descriptors
	cat >"$SCRATCH/probe" <<-EOF
		#!/bin/sh
		ls /proc/\$\$/fd/ >"\$1"
	EOF
	chmod +x "$SCRATCH/probe"
	"$PY" "$LIB/hostile_launch.py" -- "$SCRATCH/probe" "$SCRATCH/direct" </dev/null >/dev/null 2>&1
	direct=$(sort -n direct | tr '\n' ' ')
	if [[ $CACHEFENCE_TEST_STORE == redis ]]; then down=redis://127.0.0.1:1; else down=file:///proc/cachefence-none/store; fi
	for how in miss cache-stderr fail-open; do
		case $how in
		miss) args=(-t 1h -k fd-miss) ;;
		cache-stderr) args=(-t 1h -k fd-cse --cache-stderr) ;;
		fail-open) args=(-u "$down" -t 1h -k fd-down) ;;
		esac
		hl "$how" -- "${args[@]}" -- "$SCRATCH/probe" "$SCRATCH/$how.fds" </dev/null
		got=$(sort -n "$how.fds" 2>/dev/null | tr '\n' ' ')
		[[ $got == "$direct" ]] || problem "$how: COMMAND has descriptors [$got], run directly [$direct]"
	done
	problems_report
}

# --- 2. signals blocked or ignored at start -------------------------------------------------
#
# What is expected of COMMAND: exactly the dispositions and the mask it would
# have had without cachefence in front. A signal the caller ignored stays
# ignored (SigIgn: nohup(1), a shell's `trap '' HUP`, a background job's
# SIGINT), a signal the caller blocked stays blocked (SigBlk: exec keeps the
# mask, and the caller asked for it), and nothing else is ignored or blocked.
# cachefence itself may catch what it needs while it runs, but its bounds
# (-w, --timeout, --redis-timeout) may not depend on a signal the caller
# blocked, and a signal the caller ignored or blocked is not acted upon: a
# leader started under nohup keeps running through a hangup.

# the sets of signals each test blocks or ignores: each alone, then all at once
SIG_SETS=(ALRM CHLD TERM PIPE HUP ALRM,CHLD,TERM,PIPE,HUP)

# sigprobe FILE STATUS: set PROBE to the COMMAND of the signal tests: awk
# (started by exec, no shell in between, which would clear the mask) prints
# its own SigIgn and SigBlk lines to stdout and to FILE, then exits STATUS
sigprobe() {
	PROBE=(awk -v "out=$1" -v "st=$2" '/^Sig(Ign|Blk):/ { print; print > out } END { exit st }' /proc/self/status)
}

# the store URL of a store that cannot be reached (for a fail-open run)
down_url() {
	if [[ $CACHEFENCE_TEST_STORE == redis ]]; then
		echo redis://127.0.0.1:1
	else
		echo file:///proc/cachefence-none/store
	fi
}

@test "signals ignored or blocked at start: COMMAND keeps the caller's dispositions and mask on a miss, a fail-open run, a stale-if-error refresh and a background refresh" {
	down=$(down_url)
	# the entries the two refresh paths find stale
	for mode in ignore block; do
		for set in "${SIG_SETS[@]}"; do
			tag=$mode-${set//,/-}
			cf -t 1s --stale-if-error 1h -k "sie-$tag" -- echo old >/dev/null
			cf -t 1s -s 1h --beta 0 -k "bg-$tag" -- echo old >/dev/null
		done
	done
	sleep 1.5
	for mode in ignore block; do
		for set in "${SIG_SETS[@]}"; do
			tag=$mode-${set//,/-}
			opts=("--$mode" "$set")
			sigprobe "$SCRATCH/direct-$tag" 0
			"$PY" "$LIB/hostile_launch.py" "${opts[@]}" -- "${PROBE[@]}" >/dev/null 2>&1
			for path in miss fail-open stale-if-error background; do
				sigprobe "$SCRATCH/$path-$tag" 0
				case $path in
				miss) args=(-t 1h -k "miss-$tag") ;;
				fail-open) args=(-u "$down" -t 1h -k "down-$tag") ;;
				stale-if-error)
					# a refresh that fails: the stale entry is served
					sigprobe "$SCRATCH/$path-$tag" 3
					args=(-t 1h --stale-if-error 1h -k "sie-$tag")
					;;
				background) args=(-t 1h -s 1h --beta 0 -k "bg-$tag") ;;
				esac
				args+=(-- "${PROBE[@]}")
				hl "$path-$tag" "${opts[@]}" -- "${args[@]}"
				((status == 0)) || problem "$path, --$mode $set: exit $status, expected 0; stderr $(show "$path-$tag.err")"
			done
		done
	done
	for mode in ignore block; do
		for set in "${SIG_SETS[@]}"; do
			tag=$mode-${set//,/-}
			want=$(tr '\n' ' ' <"direct-$tag")
			for path in miss fail-open stale-if-error background; do
				# the background refresh runs detached: give it 20 s
				wait_for_file "$path-$tag" 20 || true
				got=$(tr '\n' ' ' <"$path-$tag" 2>/dev/null)
				[[ $got == "$want" ]] ||
					problem "$path, --$mode $set: COMMAND ran with [${got:-nothing recorded}], without cachefence [$want]"
			done
		done
	done
	problems_report
}

@test "signals ignored or blocked at start: -w, --timeout and --redis-timeout still bound the call" {
	HL_KILL_AFTER=20
	# a leader that holds key "held" until ./release appears (up to 300 s)
	cf_bg leader -t 1h -k held -- sh -c "touch '$SCRATCH/started'; i=0; while [ ! -e '$SCRATCH/release' ] && [ \$i -lt 3000 ]; do sleep 0.1; i=\$((i+1)); done; echo held"
	wait_for_file started 20
	if [[ $CACHEFENCE_TEST_STORE == redis ]]; then
		# a server that accepts connections and never answers
		redis_spawn "$SCRATCH" frozen
		echo "$SPAWNED_PID" >frozen.pid
		frozen=$SPAWNED_PORT
		kill -STOP "$SPAWNED_PID"
	fi
	for mode in ignore block; do
		for set in "${SIG_SETS[@]}"; do
			tag=$mode-${set//,/-}
			opts=("--$mode" "$set")

			hl "w-$tag" "${opts[@]}" --time-file "w-$tag.time" -- -t 1h -w 1s -k held -- echo never
			t=$(cat "w-$tag.time" 2>/dev/null || echo "$HL_KILL_AFTER+")
			[[ $status == 124 ]] || problem "-w 1s, --$mode $set: exit $status after ${t}s, expected 124"
			awk -v t="${t%+}" 'BEGIN { exit !(t < 6) }' || problem "-w 1s, --$mode $set: took ${t}s (bound: 6 s)"
			[[ $status != 124 ]] || one_line "w-$tag.err" || problem "-w 1s, --$mode $set: stderr $(show "w-$tag.err")"

			# `sleep` ignores SIGTERM when the caller ignored it: then the
			# SIGKILL 2 s later ends it
			hl "t-$tag" "${opts[@]}" --time-file "t-$tag.time" -- -t 1h --timeout 1s -k "to-$tag" -- sleep 30
			t=$(cat "t-$tag.time" 2>/dev/null || echo "$HL_KILL_AFTER+")
			[[ $status == 124 ]] || problem "--timeout 1s, --$mode $set: exit $status after ${t}s, expected 124"
			awk -v t="${t%+}" 'BEGIN { exit !(t < 8) }' || problem "--timeout 1s, --$mode $set: took ${t}s (bound: 8 s)"

			[[ $CACHEFENCE_TEST_STORE == redis ]] || continue
			hl "r-$tag" "${opts[@]}" --time-file "r-$tag.time" -- -u "redis://127.0.0.1:$frozen" --redis-timeout 1s -t 1h -k rt -- echo ran
			t=$(cat "r-$tag.time" 2>/dev/null || echo "$HL_KILL_AFTER+")
			[[ $status == 0 && $(cat "r-$tag.out") == ran ]] ||
				problem "--redis-timeout 1s, --$mode $set: exit $status, stdout $(show "r-$tag.out"), expected a fail-open run"
			awk -v t="${t%+}" 'BEGIN { exit !(t < 6) }' || problem "--redis-timeout 1s, --$mode $set: took ${t}s (bound: 6 s)"
			at_most_one_line "r-$tag.err" || problem "--redis-timeout 1s, --$mode $set: stderr $(show "r-$tag.err")"
		done
	done
	touch release
	bg_status leader 30 >/dev/null
	problems_report
}

@test "a leader started with SIGTERM and SIGHUP ignored or blocked runs through them: COMMAND finishes, its output reaches the caller and is stored" {
	for mode in ignore block; do
		rm -f "$SCRATCH/go"
		"$PY" "$LIB/hostile_launch.py" --kill-after 40 "--$mode" TERM,HUP --pid-file "$mode.cfpid" -- \
			"$CACHEFENCE_BIN" -t 1h -k "nohup-$mode" -- \
			sh -c "echo begin; $(hold_until "$SCRATCH/go"); echo end" >"$mode.out" 2>"$mode.err" 3>&- &
		launcher=$!
		wait_for_text "$mode.out" begin 20
		cfpid=$(cat "$mode.cfpid")
		kill -HUP "$cfpid"
		kill -TERM "$cfpid"
		sleep 0.5
		touch "$SCRATCH/go"
		status=0
		wait "$launcher" || status=$?
		[[ $status == 0 ]] || problem "--$mode TERM,HUP: exit $status after SIGHUP and SIGTERM, expected 0; stderr $(show "$mode.err")"
		printf 'begin\nend\n' >expected
		cmp -s "$mode.out" expected || problem "--$mode TERM,HUP: stdout $(show "$mode.out"), expected begin and end"
		cf get "nohup-$mode" >"$mode.got" 2>/dev/null || true
		cmp -s "$mode.got" expected || problem "--$mode TERM,HUP: the stored entry is $(show "$mode.got"), expected begin and end"
	done
	problems_report
}
