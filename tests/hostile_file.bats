#!/usr/bin/env bats
# The local store (file:///DIR) under hostile conditions: a file system that
# fills up at every step of a store, a read-only one, a clock that was set
# back, a caller with SIGALRM blocked or ignored, no HOME, and invalidations
# that race a first computation. Each is COMMAND's own output and status with
# at most one warning, or a one-line 125: never a signal, never a wrong
# answer, never an entry that escapes its invalidation.

load lib/common

setup_file() { store_start; }
teardown_file() { store_stop; }
setup() {
	require_file
	common_setup
	NS_DIR=$STORE_DIR/cachefence
}
teardown() { common_teardown; }

# fill the file system of DIR, leaving exactly PAGES 4 KiB pages free
# (tmpfs counts file data in pages): pads of one page each are written
# first, then a filler until the disk is full, then the pads go
fill_leaving() {
	local dir=$1 pages=$2 i
	for ((i = 0; i < pages; i++)); do
		head -c 4096 /dev/zero >"$dir/pad$i" || return 1
	done
	head -c 100M /dev/zero >"$dir/filler" 2>/dev/null || true
	for ((i = 0; i < pages; i++)); do
		rm -f "$dir/pad$i"
	done
}

# fail unless the last cf_to NAME ended cleanly: no signal (status below
# 128), and stderr empty or one line starting "cachefence: "
assert_clean() {
	((status < 128)) || { echo "$1: killed by signal $((status - 128))" >&2; cat "$1.err" >&2; return 1; }
	assert_at_most_one_line "$1.err"
}

# milliseconds since the epoch
now_ms() {
	date +%s%3N
}

# run cachefence ARGS... with SIGALRM's disposition set to HOW ("block" or
# "ignore") as it execs, the way a parent's mask or SIG_IGN survives exec;
# stdout and stderr in NAME.out and NAME.err, the status in $status
cf_sigalrm() {
	local how=$1 name=$2
	shift 2
	status=0
	timeout -s KILL "$CF_TIMEOUT" python3 -c '
import os, signal, sys
if sys.argv[1] == "block":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
else:
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
os.execv(sys.argv[2], sys.argv[2:])
' "$how" "$CACHEFENCE_BIN" "$@" >"$name.out" 2>"$name.err" || status=$?
}

# --- tags on a full disk (finding 7) ------------------------------------------------

@test "a tag record the full disk would cut short leaves no entry behind: invalidate --tag removes every entry filed before and after it" {
	mount_tmpfs "$STORE_DIR" size=64k,mode=0700
	cmd=$(counter_cmd tagged 'echo "tagged run $n"')
	# a first key whose record ends 10 bytes short of the tag file's first
	# page ("4080=" or "4080:", 4080 bytes, a newline)
	long=$(head -c 4080 /dev/zero | tr '\0' a)
	cf_to first -t 1h -k "$long" --tag batch -- "$cmd"
	assert_status 0 first
	assert_eq "$(stat -c %s "$NS_DIR/tag-$(key_hash batch)")" 4086 "bytes in the tag file"

	# room for the second key's lock file and entry, none for the next
	# page of the tag file: the record would be cut after 10 bytes
	fill_leaving "$STORE_DIR" 2
	cf_to second -t 1h -k second-key-2 --tag batch -- "$cmd"
	assert_status 0 second
	assert_bytes second.out 'tagged run 2\n'
	assert_at_most_one_line second.err

	rm -f "$STORE_DIR/filler"
	cf_to third -t 1h -k third-key-3 --tag batch -- "$cmd"
	assert_status 0 third
	assert_empty third.err

	cf_to inval invalidate --tag batch
	assert_status 0 inval
	assert_empty inval.err
	for k in "$long" second-key-2 third-key-3; do
		cf_to got get "$k"
		assert_status 1 got || { echo "an entry filed under the tag survived: ${k:0:20}" >&2; false; }
	done
}

@test "a tag file with a damaged record: invalidate --tag removes the entries of every record that reads, then exits 125 naming the damage" {
	cmd=$(counter_cmd tagged 'echo "tagged run $n"')
	for k in key1 key3; do
		cf_to "$k" -t 1h -k "$k" --tag batch -- "$cmd"
		assert_status 0 "$k"
	done
	# the way cachefence 0.1 wrote records (LEN:KEY), with the middle one
	# cut short by a crash
	printf '4:key1\n12:second-\n4:key3\n' >"$NS_DIR/tag-$(key_hash batch)"

	cf_to inval invalidate --tag batch
	assert_status 125 inval
	assert_empty inval.out
	assert_one_line inval.err
	grep -q 'could not be read' inval.err
	for k in key1 key3; do
		cf_to got get "$k"
		assert_status 1 got || { echo "the entry of $k survived" >&2; false; }
	done
	# reported once: the damaged record is gone with the others
	cf_to again invalidate --tag batch
	assert_status 0 again
	assert_bytes again.out '0\n'
}

# --- fencing a first computation (finding 8) ------------------------------------------

# start a leader for KEY (extra cachefence ARGS after it) whose COMMAND
# holds until $SCRATCH/go exists, and wait until COMMAND runs
start_held_leader() {
	local name=$1 key=$2
	shift 2
	local cmd
	cmd=$(counter_cmd "$name" "$(hold_until "$SCRATCH/go"); echo \"$name computed\"")
	cf_bg "$name" -t 1h -k "$key" "$@" -- "$cmd"
	wait_for_file "$SCRATCH/$name.runs" 30
}

@test "invalidate --match during a first computation (a lock, no entry yet): its result is not stored, its caller still gets it" {
	start_held_leader user1 user:1
	start_held_leader other other:1

	cf_to inval invalidate --match 'user:*'
	assert_status 0 inval
	assert_bytes inval.out '0\n'
	touch go
	assert_eq "$(bg_status user1)" 0 "status of the fenced leader"
	assert_bytes user1.out 'user1 computed\n'
	assert_eq "$(bg_status other)" 0 "status of the other leader"

	cf_to got get user:1
	assert_status 1 got
	assert_empty got.out
	# a key that does not match is stored as usual
	cf_to kept get other:1
	assert_status 0 kept
	assert_bytes kept.out 'other computed\n'
}

@test "invalidate --tag during a first computation filed under that tag: its result is not stored, its caller still gets it" {
	start_held_leader tagged report:1 --tag reports --tag daily
	start_held_leader untagged report:2 --tag weekly

	cf_to inval invalidate --tag daily
	assert_status 0 inval
	assert_bytes inval.out '0\n'
	touch go
	assert_eq "$(bg_status tagged)" 0 "status of the fenced leader"
	assert_bytes tagged.out 'tagged computed\n'
	assert_eq "$(bg_status untagged)" 0 "status of the other leader"

	cf_to got get report:1
	assert_status 1 got
	cf_to kept get report:2
	assert_status 0 kept
	assert_bytes kept.out 'untagged computed\n'
	# the fenced key runs again next time, and is filed under its tags then
	cf_to rerun -t 1h -k report:1 --tag daily -- "$SCRATCH/tagged"
	assert_bytes rerun.out 'tagged computed\n'
	assert_eq "$(runs tagged)" 2 "runs of the fenced COMMAND"
	cf_to inval2 invalidate --tag daily
	assert_bytes inval2.out '1\n'
}

@test "a caller that finds the lock held for an instant by a reader (inspect) does not replay the failure of a round that ended before it came" {
	fails=$(counter_cmd fails 'echo "old failure"; exit 3')
	ok=$(counter_cmd ok 'echo "new result"')
	# a failure is not cached, but left for the waiters of its round
	cf_to old -t 1m -k racy -- "$fails"
	assert_status 3 old

	# a reader's shared lock, as inspect (or a waiter looking) takes one
	flock -s "$NS_DIR/$(key_hash racy).lock" sleep 2 </dev/null >/dev/null 2>&1 3>&- &
	sleep 0.3
	cf_to new -t 1m -k racy -- "$ok"
	assert_status 0 new
	assert_bytes new.out 'new result\n'
	assert_empty new.err
	assert_eq "$(runs ok)" 1 "runs of the new COMMAND"
	wait
}

# --- the clock (finding 9) ---------------------------------------------------------------

@test "an entry written while the clock was 30 days ahead is a miss once it is set right, and inspect says it comes from the future" {
	command -v faketime >/dev/null || skip "faketime is not installed"
	cmd=$(counter_cmd clock 'echo "clock run $n"')

	status=0
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 \
		FAKETIME_DONT_FAKE_MONOTONIC=1 timeout -s KILL 60 faketime -f '+30d' \
		"$CACHEFENCE_BIN" -t 1h -k ahead -- "$cmd" >ahead.out 2>ahead.err || status=$?
	assert_status 0 ahead
	assert_bytes ahead.out 'clock run 1\n'

	cf_to inspected inspect --json ahead
	assert_status 0 inspected
	jq -e '.state == "future" and .age_ms < -29 * 86400000' inspected.out >/dev/null ||
		{ cat inspected.out >&2; false; }
	cf_to got get ahead
	assert_status 1 got

	cf_to now -t 1h -k ahead -- "$cmd"
	assert_status 0 now
	assert_bytes now.out 'clock run 2\n'
	assert_clean now
	# the entry written now is served as usual
	cf_to hit -t 1h -k ahead -- "$cmd"
	assert_bytes hit.out 'clock run 2\n'
	assert_eq "$(runs clock)" 2 "runs of COMMAND"
	cf_to fresh inspect --json ahead
	jq -e '.state == "fresh" and .age_ms >= 0' fresh.out >/dev/null
}

# --- waiting with SIGALRM blocked or ignored (finding 13) --------------------------------

@test "-w 1s gives up after about a second even when the caller starts with SIGALRM blocked or ignored" {
	cmd=$(counter_cmd held "$(hold_until "$SCRATCH/go"); echo held")
	cf_bg leader -t 1m -k held -- "$cmd"
	wait_for_file held.runs 30
	# whatever happens, the leader ends: a waiter that hangs on its lock
	# would hang until then
	(sleep 12; touch "$SCRATCH/go") </dev/null >/dev/null 2>&1 3>&- &

	for how in block ignore; do
		start=$(now_ms)
		cf_sigalrm "$how" "$how" -w 1s -t 1m -k held -- "$cmd"
		elapsed=$(($(now_ms) - start))
		assert_status 124 "$how"
		assert_empty "$how.out"
		assert_one_line "$how.err"
		((elapsed < 4000)) || { echo "-w 1s with SIGALRM ${how}ed took ${elapsed}ms" >&2; false; }
	done
	touch go
	assert_eq "$(bg_status leader)" 0 "status of the leader"
	assert_eq "$(runs held)" 1 "runs of COMMAND"
}

@test "a waiter with SIGALRM blocked wakes as soon as the leader finishes and replays its result" {
	cmd=$(counter_cmd quick "$(hold_until "$SCRATCH/go"); echo \"quick run \$n\"")
	cf_bg leader -t 1m -k quick -- "$cmd"
	wait_for_file quick.runs 30
	(sleep 1; touch "$SCRATCH/go") </dev/null >/dev/null 2>&1 3>&- &

	start=$(now_ms)
	cf_sigalrm block waiter -w 30s -t 1m -k quick -- "$cmd"
	elapsed=$(($(now_ms) - start))
	assert_status 0 waiter
	assert_bytes waiter.out 'quick run 1\n'
	assert_empty waiter.err
	((elapsed < 5000)) || { echo "the waiter took ${elapsed}ms" >&2; false; }
	assert_eq "$(runs quick)" 1 "runs of COMMAND"
}

# --- a full disk at every step (finding 15 and its siblings) ------------------------------

@test "on a full file system a hit, a miss and stats exit cleanly: no SIGBUS from the counters" {
	mount_tmpfs "$STORE_DIR" size=64k,mode=0700
	cmd=$(counter_cmd full 'echo "full run $n"')
	cf_to first -t 1h -k kept -- "$cmd"
	assert_status 0 first
	# counters made on a full disk: the file has no blocks behind it
	rm -f "$NS_DIR/stats"
	fill_leaving "$STORE_DIR" 0

	cf_to hit -t 1h -k kept -- "$cmd"
	assert_status 0 hit
	assert_bytes hit.out 'full run 1\n'
	assert_empty hit.err
	cf_to miss -t 1h -k new -- "$cmd"
	assert_status 0 miss
	assert_bytes miss.out 'full run 2\n'
	assert_clean miss
	cf_to stats stats
	assert_clean stats
	assert_status 0 stats
	cf_to reset stats --reset
	assert_clean reset
	cf_to got get kept
	assert_status 0 got
	assert_bytes got.out 'full run 1\n'
}

@test "a full file system at every step of a store (0 to 7 pages free, or no inode left): COMMAND's output and status, at most one warning, and the store still answers after" {
	body='head -c 3000 /dev/zero | tr "\0" x; echo " run $n"; exit 3'
	cmd=$(counter_cmd step "$body")
	xs=$(head -c 3000 /dev/zero | tr '\0' x)
	for free in 0 1 2 3 4 5 6 7 inodes; do
		unmount_all
		if [[ $free == inodes ]]; then
			mount_tmpfs "$STORE_DIR" size=64k,nr_inodes=6,mode=0700
			mkdir "$NS_DIR"
			touch "$STORE_DIR/i1" "$STORE_DIR/i2" 2>/dev/null || true
		else
			mount_tmpfs "$STORE_DIR" size=64k,mode=0700
			fill_leaving "$STORE_DIR" "$free"
		fi
		before=$(runs step)
		cf_to "miss-$free" -t 1h -k "step" --tag steps --cache-failures -s 1h -- "$cmd"
		assert_status 3 "miss-$free"
		assert_clean "miss-$free"
		[[ $(cat "miss-$free.out") == "$xs run $((before + 1))" ]] ||
			{ echo "free=$free: output of the miss is not COMMAND's" >&2; false; }
		for sub in "get step" "inspect step" "list" "stats" "invalidate --tag steps" "invalidate --match s*" "ping"; do
			# shellcheck disable=SC2086
			cf_to "sub-$free" $sub
			assert_clean "sub-$free" || { echo "free=$free: $sub" >&2; false; }
		done
		cf_to "again-$free" -t 1h -k "step" --tag steps --cache-failures -- "$cmd"
		assert_status 3 "again-$free"
		assert_clean "again-$free"
		[[ $(cat "again-$free.out") =~ ^$xs\ run\ [0-9]+$ ]] ||
			{ echo "free=$free: output of the second call is not COMMAND's" >&2; false; }
	done
}

@test "a stale entry on a read-only or full store is served as it is, without a refresh and without a warning" {
	mount_tmpfs "$STORE_DIR" size=64k,mode=0700
	cmd=$(counter_cmd stale 'echo "stale run $n"')
	cf_to first -t 1s -s 1h -k st -- "$cmd"
	assert_status 0 first
	sleep 1.2

	mount -o remount,ro "$STORE_DIR"
	cf_to ro -t 1s -s 1h -k st -- "$cmd"
	assert_status 0 ro
	assert_bytes ro.out 'stale run 1\n'
	assert_empty ro.err

	mount -o remount,rw "$STORE_DIR"
	rm -f "$NS_DIR"/*.lock
	fill_leaving "$STORE_DIR" 0
	cf_to full -t 1s -s 1h -k st -- "$cmd"
	assert_status 0 full
	assert_bytes full.out 'stale run 1\n'
	assert_empty full.err
	sleep 0.5
	assert_eq "$(runs stale)" 1 "runs of COMMAND"
}

# --- no place for the default store (finding 16) --------------------------------------------

@test "with no HOME and no XDG_CACHE_HOME, or a default directory that cannot be made, COMMAND runs uncached with one warning; --fail-closed exits 125" {
	cmd=$(counter_cmd nohome 'echo "nohome run $n"; exit 4')
	touch "$SCRATCH/a-file"
	mount_tmpfs "$SCRATCH/ro" size=64k,mode=0700
	mount -o remount,ro "$SCRATCH/ro"

	n=0
	for home in none "$SCRATCH/a-file" "$SCRATCH/ro"; do
		n=$((n + 1))
		(
			unset CACHEFENCE_URL REDIS_URL XDG_CACHE_HOME HOME
			[[ $home == none ]] || export HOME=$home
			cf_to "run$n" -t 1m -k nohome -- "$cmd"
			echo "$status" >"run$n.status"
			cf_to "closed$n" -t 1m -k nohome --fail-closed -- "$cmd"
			echo "$status" >"closed$n.status"
			cf_to "get$n" get nohome
			echo "$status" >"get$n.status"
		)
		status=$(cat "run$n.status")
		assert_status 4 "run$n"
		assert_bytes "run$n.out" "nohome run $n\n"
		assert_one_line "run$n.err" "cachefence: warning:"
		status=$(cat "closed$n.status")
		assert_usage_error "closed$n"
		status=$(cat "get$n.status")
		assert_usage_error "get$n"
	done
	assert_eq "$(runs nohome)" 3 "runs of COMMAND"
}

# --- names in the store (the local sibling of finding 3) ------------------------------------

@test "keys, tags and namespaces whose bytes look like records, file names or one another never share a file" {
	cmd=$(counter_cmd names 'printf "entry of [%s]\\n" "$1"')
	# keys hold any bytes; tags are words, here named like the keys,
	# records and files of the store
	keys=($'x\n3=abc\n' 'abc' 'a\b' $'3:abc\n' 'tag-abc' 'stats' 'commit' '../x')
	tags=('3=abc' 'abc' 'a\b' '3:abc' 'tag-abc' 'stats' 'commit.lock' '../x')
	for i in "${!keys[@]}"; do
		cf_to put -t 1h -k "${keys[$i]}" --tag "${tags[$i]}" -- "$cmd" "${keys[$i]}"
		assert_status 0 put
		assert_empty put.err
	done
	# a tag named like another namespace's counters, and that namespace
	cf_to ns1 -n a -t 1h -k k --tag b:stats -- "$cmd" ns-a
	assert_empty ns1.err
	cf_to ns2 -n a:tag:b -t 1h -k k -- "$cmd" ns-ab
	assert_empty ns2.err
	cf_to ns3 -n a:tag:b -t 1h -k k -- "$cmd" ns-ab
	assert_bytes ns3.out 'entry of [ns-ab]\n'
	cf_to st -n a:tag:b stats --json
	jq -e '.hits == 1 and .misses == 1' st.out >/dev/null

	for i in "${!keys[@]}"; do
		cf_to inval invalidate --tag "${tags[$i]}"
		assert_status 0 inval
		assert_bytes inval.out '1\n'
		cf_to gone get "${keys[$i]}"
		assert_status 1 gone
		# the keys not invalidated yet are all still there, each its own
		for k in "${keys[@]:i+1}"; do
			cf_to kept get "$k"
			assert_status 0 kept
			assert_eq "$(cat kept.out)" "entry of [$k]" "the entry of key ${k@Q}"
		done
	done
	cf_to a get -n a k
	assert_bytes a.out 'entry of [ns-a]\n'
	cf_to ab get -n a:tag:b k
	assert_bytes ab.out 'entry of [ns-ab]\n'
}
