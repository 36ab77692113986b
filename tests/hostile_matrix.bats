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
	n=$(wc -c <"$1" 2>/dev/null || echo 0)
	printf '%s bytes' "$n"
	((n == 0)) || printf ' [%s]' "$(head -c 100 "$1" | tr '\n' '|' | tr -c '[:print:]' '.')"
}

# how FILE differs from the EXPECTED one, for a failure message
differ() {
	local at
	at=$(cmp "$1" "$2" 2>&1 | grep -o 'byte [0-9]*' | head -1)
	printf '%s bytes, expected %s (differs at %s)' "$(wc -c <"$1")" "$(wc -c <"$2")" "${at:-the end}"
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
		cf invalidate victim >/dev/null 2>&1 || true
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
		cmp -s "$name.out" "$out" || problem "$label: stdout is $(differ "$name.out" "$out")"
		[[ $status == "$expect" ]] || problem "$label: exit $status, expected $expect; stderr: $(show "$name.err")"
		if [[ ,$combo, != *,2,* ]]; then
			cmp -s "$name.err" "$err" || problem "$label: stderr is $(show "$name.err"), expected $(show "$err")"
		fi
	else
		[[ $status != 0 ]] || problem "$label: exit 0 though nothing could be written to the closed stdout"
		if [[ ,$combo, != *,2,* ]]; then
			without_block "$name.err" "$err" >"$name.err.rest"
			one_line "$name.err.rest" ||
				problem "$label: stderr should say in one line that stdout is closed; besides COMMAND's own bytes it is $(show "$name.err.rest")"
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
		cf get "stale-$n" >"got-$n" 2>/dev/null || true
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

# --- 3. low resource limits ---------------------------------------------------------------
#
# COMMAND runs, cached or (when cachefence cannot do its part) uncached with
# one warning line; its output and status reach the caller; never a crash.

# hl_piped NAME [hostile_launch.py OPTION]... -- ARG...: like hl, but stdout
# goes through a pipe to `cat` (an RLIMIT_FSIZE must not apply to the file
# the test keeps the output in)
hl_piped() {
	local name=$1 opts=()
	shift
	while (($#)) && [[ $1 != -- ]]; do
		opts+=("$1")
		shift
	done
	shift
	"$PY" "$LIB/hostile_launch.py" --kill-after "${HL_KILL_AFTER:-30}" "${opts[@]}" -- \
		"$CACHEFENCE_BIN" "$@" 2>"$name.err" 3>&- </dev/null | cat >"$name.out"
	status=${PIPESTATUS[0]}
}

# Judge a run NAME (LABEL in messages) that should give the bytes of file
# OUT and exit STATUS, with at most one line on stderr besides the bytes of
# file ERR (COMMAND's own stderr, when given)
judge_run() {
	local label=$1 name=$2 out=$3 expect=$4 err=${5:-}
	if ((status >= 128)); then
		problem "$label: exit $status (a crash or a kill), stderr $(show "$name.err")"
		return
	fi
	[[ $status == "$expect" ]] || problem "$label: exit $status, expected $expect; stderr $(show "$name.err")"
	cmp -s "$name.out" "$out" || problem "$label: stdout $(differ "$name.out" "$out")"
	if [[ -n $err ]]; then
		without_block "$name.err" "$err" >"$name.err.rest"
		cmp -s "$name.err" "$name.err.rest" && problem "$label: COMMAND's stderr did not reach the caller"
	else
		cp "$name.err" "$name.err.rest"
	fi
	at_most_one_line "$name.err.rest" || problem "$label: stderr $(show "$name.err.rest"), expected one warning at most"
}

# Judge a `get` NAME (LABEL): the bytes of file OUT and exit 0, or when it
# cannot read the store, nothing on stdout, exit 1 (no entry) or 125 (one line)
judge_get() {
	local label=$1 name=$2 out=$3
	case $status in
	0) cmp -s "$name.out" "$out" || problem "$label: exit 0 with stdout $(differ "$name.out" "$out")" ;;
	1 | 125) [[ ! -s $name.out ]] || problem "$label: exit $status with stdout $(show "$name.out")" ;;
	*) problem "$label: exit $status, stderr $(show "$name.err")" ;;
	esac
	at_most_one_line "$name.err" || problem "$label: stderr $(show "$name.err"), expected one line at most"
}

# DIR/rl: prints DIR/data (made by the test) on stdout, "rl stderr" on
# stderr, exits 3. Perl, not sh: dash cannot run a script, nor redirect,
# with fewer than 11 descriptors (it moves what it opens above 9).
make_rlcmd() {
	local dir=${1:-$SCRATCH}
	cat >"$dir/rl" <<-EOF
		#!/usr/bin/perl
		open(my \$f, "<", "$dir/data") or die "rl: \$!\\n";
		binmode \$f;
		binmode STDOUT;
		my \$b;
		while (read(\$f, \$b, 65536)) { print \$b or exit 9; }
		print STDERR "rl stderr\\n";
		exit 3;
	EOF
	chmod 755 "$dir/rl"
	echo "rl stderr" >"$SCRATCH/rl.err-expected"
}

# fail the test unless DIR/rl itself, with no cachefence in front, runs as
# it should under hostile_launch.py OPTIONS (else the limit tests nothing)
rl_runs_under() {
	local dir=$1 ps
	shift
	"$PY" "$LIB/hostile_launch.py" "$@" -- "$dir/rl" </dev/null 2>/dev/null | cmp -s - "$dir/data" &&
		ps=("${PIPESTATUS[@]}") || ps=("${PIPESTATUS[@]}")
	[[ ${ps[0]} == 3 && ${ps[1]} == 0 ]] && return 0
	echo "the test's COMMAND itself cannot run under $*: fix the test" >&2
	return 1
}

@test "low RLIMIT_NOFILE (6, 8, 10, 16): a miss, a hit, get, --cache-stderr, --stdin and a stale hit give COMMAND's output and status, one warning at most" {
	make_rlcmd
	head -c 100000 /dev/urandom >data
	for n in 6 8 10 16; do
		lim=(--rlimit "NOFILE=$n")
		rl_runs_under "$SCRATCH" "${lim[@]}"
		hl "miss$n" "${lim[@]}" -- -t 1h -k "nf$n" --cache-failures -- ./rl
		judge_run "NOFILE=$n, a miss" "miss$n" data 3 rl.err-expected
		# a hit of an entry stored without the limit
		cf -t 1h -k "nf-hit$n" --cache-failures -- ./rl >/dev/null 2>&1 || true
		hl "hit$n" "${lim[@]}" -- -t 1h -k "nf-hit$n" --cache-failures -- ./rl
		judge_run "NOFILE=$n, a hit" "hit$n" data 3
		hl "get$n" "${lim[@]}" -- get "nf-hit$n"
		judge_get "NOFILE=$n, get" "get$n" data
		hl "cse$n" "${lim[@]}" -- -t 1h -k "nf-cse$n" --cache-stderr --cache-failures -- ./rl
		judge_run "NOFILE=$n, a --cache-stderr miss" "cse$n" data 3 rl.err-expected
		hl "stdin$n" "${lim[@]}" -- -t 1h --stdin -- cat <data
		judge_run "NOFILE=$n, a --stdin miss" "stdin$n" data 0
	done
	# stale hits: the entries go stale together
	for n in 6 8 10 16; do
		cf -t 1s -s 1h --beta 0 -k "nf-stale$n" --cache-failures -- ./rl >/dev/null 2>&1 || true
	done
	sleep 1.5
	for n in 6 8 10 16; do
		hl "stale$n" --rlimit "NOFILE=$n" -- -t 1h -s 1h --beta 0 -k "nf-stale$n" --cache-failures -- ./rl
		judge_run "NOFILE=$n, a stale hit" "stale$n" data 3
	done
	problems_report
}

# a directory that user nobody owns, for the tests that run as nobody
# (RLIMIT_NPROC does not bind root); skips the test where that cannot be
nobody_dir() {
	[[ $(id -u) == 0 ]] || skip "needs root to run as nobody"
	id nobody >/dev/null 2>&1 || skip "no user nobody"
	NOBODY_DIR=$(mktemp -d /tmp/cachefence-nobody.XXXXXX)
	chmod 755 "$NOBODY_DIR"
	chown nobody "$NOBODY_DIR"
	# the build may sit where nobody cannot reach it (/root is 0700):
	# this test runs a copy
	cp "$CACHEFENCE_BIN" "$NOBODY_DIR/cachefence"
	CACHEFENCE_BIN=$NOBODY_DIR/cachefence
}

@test "RLIMIT_NPROC reached (fork fails): a miss, --cache-stderr, --stdin, --timeout, a hit and a stale hit run or replay COMMAND with its output and status, one warning at most" {
	nobody_dir
	head -c 100000 /dev/urandom >"$NOBODY_DIR/data"
	cp "$NOBODY_DIR/data" data
	make_rlcmd "$NOBODY_DIR"
	rl_runs_under "$NOBODY_DIR" --user nobody --rlimit NPROC=1
	url=$CACHEFENCE_URL
	[[ $CACHEFENCE_TEST_STORE == redis ]] || url=file://$NOBODY_DIR/store
	# LeakSanitizer needs a thread of its own at exit, which NPROC refuses
	export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
	as=(--user nobody)
	# entries stored by nobody without the limit: one fresh, one to go stale
	hl prep-hit "${as[@]}" -- -u "$url" -t 1h -k np-hit --cache-failures -- "$NOBODY_DIR/rl"
	hl prep-stale "${as[@]}" -- -u "$url" -t 1s -s 1h --beta 0 -k np-stale --cache-failures -- "$NOBODY_DIR/rl"
	sleep 1.5
	# one process of nobody's (cachefence itself) is all there may be:
	# every fork fails, exec does not
	as+=(--rlimit NPROC=1)
	hl miss "${as[@]}" -- -u "$url" -t 1h -k np-miss --cache-failures -- "$NOBODY_DIR/rl"
	judge_run "NPROC, a miss" miss data 3 rl.err-expected
	hl cse "${as[@]}" -- -u "$url" -t 1h -k np-cse --cache-stderr --cache-failures -- "$NOBODY_DIR/rl"
	judge_run "NPROC, a --cache-stderr miss" cse data 3 rl.err-expected
	hl stdin "${as[@]}" -- -u "$url" -t 1h --stdin -- cat <data
	judge_run "NPROC, a --stdin miss" stdin data 0
	hl timeout "${as[@]}" -- -u "$url" -t 1h -k np-timeout --timeout 30s --cache-failures -- "$NOBODY_DIR/rl"
	judge_run "NPROC, a miss with --timeout" timeout data 3 rl.err-expected
	hl hit "${as[@]}" -- -u "$url" -t 1h -k np-hit --cache-failures -- "$NOBODY_DIR/rl"
	judge_run "NPROC, a hit" hit data 3
	hl stale "${as[@]}" -- -u "$url" -t 1h -s 1h --beta 0 -k np-stale --cache-failures -- "$NOBODY_DIR/rl"
	judge_run "NPROC, a stale hit (its refresh cannot fork)" stale data 3
	problems_report
}

@test "low RLIMIT_FSIZE (16 KiB, below the output): no SIGXFSZ death; a miss, --cache-stderr, --stdin, a hit and get give COMMAND's output and status, one warning at most" {
	make_rlcmd
	head -c 200000 /dev/urandom >data
	rl_runs_under "$SCRATCH" --rlimit FSIZE=16384
	cf -t 1h -k fs-hit --cache-failures -- ./rl >/dev/null 2>&1 || true
	lim=(--rlimit FSIZE=16384)
	hl_piped miss "${lim[@]}" -- -t 1h -k fs-miss --cache-failures -- ./rl
	judge_run "FSIZE, a miss" miss data 3 rl.err-expected
	# nothing could be stored (the spool cannot grow past the limit): a
	# miss again, COMMAND's own stderr and one warning
	hl_piped again "${lim[@]}" -- -t 1h -k fs-miss --cache-failures -- ./rl
	judge_run "FSIZE, the same key again" again data 3 rl.err-expected
	hl_piped cse "${lim[@]}" -- -t 1h -k fs-cse --cache-stderr --cache-failures -- ./rl
	judge_run "FSIZE, a --cache-stderr miss" cse data 3 rl.err-expected
	"$PY" "$LIB/hostile_launch.py" "${lim[@]}" -- "$CACHEFENCE_BIN" -t 1h --stdin -- cat <data 2>stdin.err | cat >stdin.out
	status=${PIPESTATUS[0]}
	judge_run "FSIZE, a --stdin miss" stdin data 0
	hl_piped hit "${lim[@]}" -- -t 1h -k fs-hit --cache-failures -- ./rl
	judge_run "FSIZE, a hit" hit data 3
	hl_piped get "${lim[@]}" -- get fs-hit
	judge_get "FSIZE, get" get data
	problems_report
}

@test "low RLIMIT_AS (8 and 24 MiB): misses, hits and gets of 1 MiB - 1, 1 MiB, 1 MiB + 1 and 3 MiB give the whole output and status" {
	if nm -D "$CACHEFENCE_BIN" 2>/dev/null | grep -q __asan_init; then
		skip "a sanitizer build reserves terabytes of address space"
	fi
	make_rlcmd
	for as in 8 24; do
		lim=(--rlimit "AS=$((as << 20))")
		for size in 1048575 1048576 1048577 3145728; do
			head -c "$size" /dev/urandom >data
			rl_runs_under "$SCRATCH" "${lim[@]}"
			c="AS=${as}M, $size bytes"
			hl "m$as-$size" "${lim[@]}" -- -t 1h -k "as$as-$size" --cache-failures -- ./rl
			judge_run "$c, a miss" "m$as-$size" data 3 rl.err-expected
			hl "h$as-$size" "${lim[@]}" -- -t 1h -k "as$as-$size" --cache-failures -- ./rl
			judge_run "$c, a hit" "h$as-$size" data 3
			hl "g$as-$size" "${lim[@]}" -- get "as$as-$size"
			judge_get "$c, get" "g$as-$size" data
		done
	done
	problems_report
}

# --- 4. non-blocking and full pipes ----------------------------------------------------------

# pr NAME [pipe_reader.py OPTION]... -- ARG...: cachefence ARGS with its
# stdout on a pipe that pipe_reader.py reads into NAME.out; stderr in
# NAME.err, status in $status
pr() {
	local name=$1 opts=()
	shift
	while (($#)) && [[ $1 != -- ]]; do
		opts+=("$1")
		shift
	done
	shift
	status=0
	"$PY" "$LIB/pipe_reader.py" --kill-after 120 --delay 0.3 --slow 0.5 "${opts[@]}" \
		--out "$name.out" --err "$name.err" -- "$CACHEFENCE_BIN" "$@" 3>&- || status=$?
}

@test "stdout a non-blocking pipe with a slow reader, or a pipe full before the start: a miss, a hit and get of 1 KiB, 2 MiB and 50 MiB deliver every byte and the right status" {
	for size in 1024 2097152 52428800; do
		head -c "$size" /dev/urandom >"data$size"
		for mode in nonblock prefill nonblock-prefill; do
			case $mode in
			nonblock) opts=(--nonblock) ;;
			prefill) opts=(--prefill) ;;
			nonblock-prefill) opts=(--nonblock --prefill) ;;
			esac
			c="$size bytes, $mode"
			pr "m$size-$mode" "${opts[@]}" -- -t 1h -k "p$size-$mode" --cache-failures -- sh -c "cat '$SCRATCH/data$size'; exit 3"
			judge_run "$c, a miss" "m$size-$mode" "data$size" 3
			pr "h$size-$mode" "${opts[@]}" -- -t 1h -k "p$size-$mode" --cache-failures -- sh -c "cat '$SCRATCH/data$size'; exit 3"
			judge_run "$c, a hit" "h$size-$mode" "data$size" 3
			pr "g$size-$mode" "${opts[@]}" -- get "p$size-$mode"
			judge_run "$c, get" "g$size-$mode" "data$size" 0
			rm -f "m$size-$mode.out" "h$size-$mode.out" "g$size-$mode.out"
		done
		rm -f "data$size"
		cf invalidate --match 'p*' >/dev/null 2>&1 || true
	done
	problems_report
}

# --- 5. full file systems ------------------------------------------------------------------

# fill the file system of DIR: every block (blocks), every inode (inodes),
# or both; the filler files are DIR/fill*
fill_blocks() {
	dd if=/dev/zero of="$1/fill-blocks" bs=4096 >/dev/null 2>&1 || true
	# a last partial page, whatever remains
	head -c 4096 /dev/zero >>"$1/fill-blocks" 2>/dev/null || true
}
fill_inodes() {
	local i=0
	while true 2>/dev/null >"$1/fill-inode.$i"; do
		i=$((i + 1))
	done
	rm -f "$1/fill-inode.$i"
}

# sh code for COMMAND that fills the store's file system mid-run: blocks,
# inodes, or every inode but one (`true`, not `:`: a failed redirection of a
# special builtin ends sh)
fill_code() {
	local d=$1
	case $2 in
	blocks) echo "dd if=/dev/zero of='$d/fill-blocks' bs=4096 >/dev/null 2>&1; head -c 4096 /dev/zero >>'$d/fill-blocks' 2>/dev/null" ;;
	inodes) echo "i=0; while true 2>/dev/null >'$d/fill-inode.'\$i; do i=\$((i+1)); done" ;;
	inodes-but-one) echo "i=0; while true 2>/dev/null >'$d/fill-inode.'\$i; do i=\$((i+1)); done; rm -f '$d/fill-inode.0'" ;;
	esac
}

@test "local store: a full file system at each step (directory, lock, lock token, counters, temporary file, tag record) gives COMMAND's output and status with one warning at most, operator commands answer in one line, and the store works again once there is room" {
	require_file
	NS=$STORE_DIR/cachefence
	for step in dir lock lock-token counters temp temp-inode tag; do
		rm -rf "$STORE_DIR"
		mount_tmpfs "$STORE_DIR" size=512k,nr_inodes=64,mode=0700
		fill=true
		case $step in
		dir) fill_blocks "$STORE_DIR"; fill_inodes "$STORE_DIR" ;;
		lock | lock-token)
			# the namespace directory, counters and commit lock exist
			cf -t 1h -k other -- echo other >/dev/null 2>&1
			fill_blocks "$STORE_DIR"
			[[ $step == lock ]] && fill_inodes "$STORE_DIR"
			;;
		counters)
			# the namespace directory exists, the counters file not yet
			mkdir -m 700 "$NS"
			fill_blocks "$STORE_DIR"
			;;
		temp) cf -t 1h -k other -- echo other >/dev/null 2>&1; fill=$(fill_code "$STORE_DIR" blocks) ;;
		temp-inode) cf -t 1h -k other -- echo other >/dev/null 2>&1; fill=$(fill_code "$STORE_DIR" inodes) ;;
		tag)
			# the entry's temporary file still fits, the tag file does not
			cf -t 1h -k other -- echo other >/dev/null 2>&1
			fill=$(fill_code "$STORE_DIR" inodes-but-one)
			;;
		esac
		printf 'full %s: part one\nfull %s: part two\n' "$step" "$step" >"expected-$step"
		cmd=(sh -c "echo 'full $step: part one'; $fill; echo 'full $step: part two'; exit 3")
		args=(-t 1h -k "full-$step" --cache-failures --tag "t-$step")

		cf_to "run-$step" "${args[@]}" -- "${cmd[@]}"
		judge_run "full at $step, a first call" "run-$step" "expected-$step" 3
		cf_to "again-$step" "${args[@]}" -- "${cmd[@]}"
		judge_run "full at $step, a second call" "again-$step" "expected-$step" 3
		cf_to "get-$step" get "full-$step"
		judge_get "full at $step, get" "get-$step" "expected-$step"
		for sub in inspect list stats ping "invalidate --tag t-$step"; do
			cf_to "sub-$step" $sub $([[ $sub == inspect ]] && echo "full-$step")
			((status == 0 || status == 1 || status == 125)) || problem "full at $step, $sub: exit $status, stderr $(show "sub-$step.err")"
			at_most_one_line "sub-$step.err" || problem "full at $step, $sub: stderr $(show "sub-$step.err")"
		done
		# an entry filed under a tag must not outlive invalidate --tag
		# that said it succeeded
		if [[ $status == 0 ]]; then
			cf_to "after-$step" get "full-$step"
			[[ $status == 1 ]] || problem "full at $step: invalidate --tag t-$step exited 0 (\"$(cat "sub-$step.out")\") but get still finds the entry"
		fi

		# room again: the store works (a miss that is stored, then a hit)
		rm -f "$STORE_DIR"/fill-*
		cmd2=(sh -c "echo \$\$ >>'$SCRATCH/room-$step.runs'; echo room")
		cf_to "room1-$step" -t 1h -k "room-$step" -- "${cmd2[@]}"
		cf_to "room2-$step" -t 1h -k "room-$step" -- "${cmd2[@]}"
		[[ $(cat "room2-$step.out") == room && $(wc -l <"room-$step.runs") == 1 ]] ||
			problem "full at $step: with room again, two calls ran COMMAND $(wc -l <"room-$step.runs") times (status $status, stderr $(show "room2-$step.err"))"
		[[ -z $(find "$STORE_DIR" -name '*.tmp') ]] || problem "full at $step: temporary files left: $(find "$STORE_DIR" -name '*.tmp' | tr '\n' ' ')"
		umount "$STORE_DIR" 2>/dev/null || umount -l "$STORE_DIR"
	done
	problems_report
}

@test "a full TMPDIR (nothing free, or 64 KiB free for 200 kB of output): a miss, --cache-stderr, --stdin, stale-if-error refreshes, a hit and get give COMMAND's or the stale output and status, one warning at most" {
	head -c 200000 /dev/urandom >data
	echo old >old
	cf -t 1h -k tmp-hit --cache-failures -- sh -c "cat '$SCRATCH/data'; exit 3" >/dev/null 2>&1 || true
	for free in 0 64k; do
		mount_tmpfs "$SCRATCH/tmp-$free" size=128k,mode=0700
		if [[ $free == 0 ]]; then
			fill_blocks "$SCRATCH/tmp-$free"
		else
			head -c 65536 /dev/zero >"$SCRATCH/tmp-$free/fill" || true
		fi
		# entries that are stale when the calls below come
		cf -t 1s --stale-if-error 1h -k "sie-fail-$free" -- echo old >/dev/null 2>&1
		cf -t 1s --stale-if-error 1h -k "sie-ok-$free" -- echo old >/dev/null 2>&1
		sleep 1.5
		export TMPDIR=$SCRATCH/tmp-$free
		c="TMPDIR with $free free"
		cf_to "miss-$free" -t 1h -k "tmp-miss-$free" --cache-failures -- sh -c "cat '$SCRATCH/data'; exit 3"
		judge_run "$c, a miss" "miss-$free" data 3
		cf_to "cse-$free" -t 1h -k "tmp-cse-$free" --cache-stderr --cache-failures -- sh -c "cat '$SCRATCH/data'; echo cse >&2; exit 3"
		echo cse >cse.err-expected
		judge_run "$c, a --cache-stderr miss" "cse-$free" data 3 cse.err-expected
		status=0
		cf -t 1h --stdin -- cat <data >"stdin-$free.out" 2>"stdin-$free.err" || status=$?
		judge_run "$c, a --stdin miss" "stdin-$free" data 0
		cf_to "sie-fail-$free" -t 1h --stale-if-error 1h -k "sie-fail-$free" -- sh -c "cat '$SCRATCH/data'; exit 3"
		judge_run "$c, a failed stale-if-error refresh (the stale entry is served)" "sie-fail-$free" old 0
		cf_to "sie-ok-$free" -t 1h --stale-if-error 1h -k "sie-ok-$free" -- sh -c "cat '$SCRATCH/data'"
		judge_run "$c, a stale-if-error refresh that succeeds" "sie-ok-$free" data 0
		cf_to "hit-$free" -t 1h -k tmp-hit --cache-failures -- sh -c "cat '$SCRATCH/data'; exit 3"
		judge_run "$c, a hit" "hit-$free" data 3
		cf_to "get-$free" get tmp-hit
		judge_get "$c, get" "get-$free" data
		unset TMPDIR
	done
	problems_report
}

# --- 6. stdout on /dev/full -------------------------------------------------------------------

@test "stdout on /dev/full: a miss, a hit, a stale hit, get, inspect, list, stats, ping, invalidate, --version and --help exit non-zero with one line" {
	cmd=$(counter_cmd full 'echo "full output $n"')
	cf -t 1h -k full-hit -- "$cmd" >/dev/null
	cf -t 1s -s 1h --beta 0 -k full-stale -- "$cmd" >/dev/null
	cf -t 1h -k full-listed -- "$cmd" >/dev/null
	sleep 1.5
	calls=("-t 1h -k full-miss -- $cmd" "-t 1h -k full-hit -- $cmd" "-t 1h -s 1h -k full-stale -- $cmd"
		"get full-hit" "inspect full-hit" "inspect --json full-hit" "list" "list --json" "stats" "stats --json"
		"stats --prometheus" "ping" "invalidate full-listed" "--version" "--help")
	for call in "${calls[@]}"; do
		status=0
		timeout -s KILL "$CF_TIMEOUT" "$CACHEFENCE_BIN" $call >/dev/full 2>dev-full.err || status=$?
		label="cachefence ${call%% -- *} >/dev/full"
		if ((status == 0 || status >= 128)); then
			problem "$label: exit $status, expected a non-zero exit below 128"
		fi
		one_line dev-full.err || problem "$label: stderr $(show dev-full.err), expected one line"
	done
	problems_report
}
