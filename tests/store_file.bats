#!/usr/bin/env bats
# The local store (file:///DIR) through the real binary: its files, kernel
# locks, permissions, and what it does with junk, a read-only directory and a
# full file system. The behaviour it shares with Redis is in core.bats and
# freshness.bats, which run against both stores.
#
# Files of the namespace directory $STORE_DIR/NS for a key whose SHA-256 is H:
# H.entry, H.lock (flock target, holds the leader's token), H.done, H.TOKEN.tmp
# and commit.lock. Timing is only ever bounded generously.

load lib/common

setup_file() { store_start; }
teardown_file() { store_stop; }
setup() {
	require_file
	common_setup
	NS_DIR=$STORE_DIR/cachefence
}
teardown() { common_teardown; }

# fail if DIR holds a temporary (*.tmp) file
assert_no_tmp_files() {
	local left
	left=$(find "$1" -name '*.tmp' 2>/dev/null)
	[[ -z $left ]] && return 0
	echo "temporary files left behind:" >&2
	echo "$left" >&2
	return 1
}

# fail unless PATH has the octal permission bits MODE
assert_mode() {
	assert_eq "$(stat -c %a "$1")" "$2" "mode of $1"
}

# show how often each stderr line of FILES... occurred (for a failure report)
stderr_digest() {
	echo "stderr lines of the callers, by count:" >&2
	cat "$@" | sort | uniq -c | sort -rn | head -20 >&2
}

# --- the files ------------------------------------------------------------------

@test "the entry is the file NS/SHA256(KEY).entry: a cachefence-entry header, the stored bytes, then the user key; the lock is free after the run" {
	cmd=$(counter_cmd layout 'printf "stored bytes"')

	cf_to run -n myns -t 1m -k "my key" -- "$cmd"
	assert_status 0 run
	assert_empty run.err

	h=$(key_hash "my key")
	entry=$STORE_DIR/myns/$h.entry
	[[ -f $entry ]] || { echo "no $entry; the store holds:" >&2; find "$STORE_DIR" >&2; false; }
	assert_eq "$(head -n 1 "$entry")" cachefence-entry "first line of the entry"
	grep -qx 'v=1' "$entry"
	grep -qx 'st=0' "$entry"
	grep -qx 'ttl=60000' "$entry"
	grep -qx 'olen=12' "$entry"
	# after the header's blank line: the stdout, then the user key
	sed '1,/^$/d' "$entry" >body
	assert_bytes body 'stored bytesmy key'

	[[ ! -e $STORE_DIR/cachefence ]] || { echo "files outside the namespace" >&2; false; }
	assert_no_tmp_files "$STORE_DIR"
	flock -n "$STORE_DIR/myns/$h.lock" true || { echo "the lock is still held" >&2; false; }
}

@test "with no URL the local store is \$XDG_CACHE_HOME/cachefence, else ~/.cache/cachefence" {
	cmd=$(counter_cmd dflt 'echo "default store"')
	h=$(key_hash dflt)
	unset CACHEFENCE_URL REDIS_URL

	XDG_CACHE_HOME=$SCRATCH/xdg cf_to xdg -t 1m -k dflt -- "$cmd"
	assert_status 0 xdg
	assert_bytes xdg.out 'default store\n'
	[[ -f $SCRATCH/xdg/cachefence/cachefence/$h.entry ]]

	(
		unset XDG_CACHE_HOME
		HOME=$SCRATCH/home cf_to home -t 1m -k dflt -- "$cmd"
		assert_status 0 home
	)
	assert_bytes home.out 'default store\n'
	[[ -f $SCRATCH/home/.cache/cachefence/cachefence/$h.entry ]]
	assert_eq "$(runs dflt)" 2 "runs of COMMAND (one per store)"

	XDG_CACHE_HOME=$SCRATCH/xdg cf_to again -t 1m -k dflt -- "$cmd"
	assert_bytes again.out 'default store\n'
	assert_eq "$(runs dflt)" 2 "runs of COMMAND after a hit"
}

# --- single flight with kernel locks ------------------------------------------------

@test "200 concurrent callers of a cold key run COMMAND once, all print identical bytes, and no temporary file is left" {
	cmd=$(counter_cmd slow 'sleep 1; echo "computed by $$ at $(date +%s%N)"')

	gate_close
	for i in $(seq 200); do
		cf_bg "c$i" -t 1m -k cold -- "$cmd"
	done
	sleep 1
	gate_open

	for i in $(seq 200); do
		assert_eq "$(bg_status "c$i" 120)" 0 "status of caller $i"
	done
	assert_eq "$(runs slow)" 1 "runs of COMMAND" || { stderr_digest c*.err; false; }
	[[ -s c1.out ]]
	for i in $(seq 200); do
		cmp c1.out "c$i.out"
		assert_empty "c$i.err"
	done
	assert_no_tmp_files "$STORE_DIR"
}

@test "a SIGKILLed leader is replaced at once: the waiters finish in about COMMAND's own time, not a lease" {
	cmd=$(counter_cmd job 'if [ $n -eq 1 ]; then touch started; exec sleep 60; fi; sleep 1; echo "result of run $n"')

	cf_bg leader -t 1m -k job --lock-lease 60s -- "$cmd"
	wait_for_file started 30
	for i in 1 2 3; do
		cf_bg "waiter$i" -t 1m -k job --lock-lease 60s -- "$cmd"
	done
	sleep 1
	assert_eq "$(runs job)" 1 "runs of COMMAND before the kill"
	kill -KILL "$(bg_pid leader)"
	SECONDS=0

	for i in 1 2 3; do
		assert_eq "$(bg_status "waiter$i" 60)" 0 "status of waiter $i"
		assert_bytes "waiter$i.out" 'result of run 2\n'
	done
	# COMMAND takes 1 s; the lease is 60 s
	((SECONDS < 15)) || { echo "takeover took ${SECONDS}s" >&2; false; }
	assert_eq "$(bg_status leader)" 137 "status of the killed leader"
	assert_eq "$(runs job)" 2 "runs of COMMAND"
}

@test "a crashed leader's temporary file is removed by the next leader" {
	h=$(key_hash crashed)
	token=0123456789abcdef0123456789abcdef
	mkdir -p -m 700 "$STORE_DIR" "$NS_DIR"
	echo "$token host=elsewhere pid=1" >"$NS_DIR/$h.lock"
	printf 'cachefence-entry\nv=1\nst=0\n' >"$NS_DIR/$h.$token.tmp"
	head -c 4096 /dev/urandom >>"$NS_DIR/$h.$token.tmp"
	chmod 600 "$NS_DIR/$h.lock" "$NS_DIR/$h.$token.tmp"
	cmd=$(counter_cmd next 'echo "next leader"')

	cf_to run -t 1m -k crashed -- "$cmd"
	assert_status 0 run
	assert_bytes run.out 'next leader\n'
	assert_empty run.err
	[[ ! -e $NS_DIR/$h.$token.tmp ]] || { echo "the crashed leader's $h.$token.tmp is still there" >&2; false; }
	assert_no_tmp_files "$STORE_DIR"
	[[ -f $NS_DIR/$h.entry ]]
}

@test "invalidate while the leader runs: nothing is stored, get exits 1 and no temporary file is left" {
	cmd=$(counter_cmd inv "touch started; $(hold_until "$SCRATCH/release"); echo 'leader result'")
	h=$(key_hash inv)

	cf_bg leader -t 1m -k inv -- "$cmd"
	wait_for_file started 30
	cf_to invalidated invalidate inv
	touch release
	assert_status 0 invalidated

	assert_eq "$(bg_status leader 60)" 0 "status of the leader"
	assert_bytes leader.out 'leader result\n'
	assert_at_most_one_line leader.err
	cf_to got get inv
	assert_status 1 got
	assert_empty got.out
	[[ ! -e $NS_DIR/$h.entry ]] || { echo "the fenced-out result was stored" >&2; false; }
	assert_no_tmp_files "$STORE_DIR"

	cf_to again -t 1m -k inv -- "$cmd"
	assert_status 0 again
	assert_eq "$(runs inv)" 2 "runs of COMMAND"
}

# --- permissions --------------------------------------------------------------------

@test "the store directories are created 0700 and its files 0600, even with umask 000" {
	cmd=$(counter_cmd perms 'echo private')

	umask 000
	cf_to run -t 1m -k perms -- "$cmd"
	cf_to other -n otherns -t 1m -k perms -- "$cmd"
	umask 022
	assert_status 0 run
	assert_status 0 other

	h=$(key_hash perms)
	assert_mode "$STORE_DIR" 700
	for ns in cachefence otherns; do
		assert_mode "$STORE_DIR/$ns" 700
		assert_mode "$STORE_DIR/$ns/$h.entry" 600
		assert_mode "$STORE_DIR/$ns/$h.lock" 600
		assert_mode "$STORE_DIR/$ns/commit.lock" 600
	done
	# nothing in the store is readable or writable by group or others
	loose=$(find "$STORE_DIR" -perm /077)
	assert_eq "$loose" "" "files open to group or others"
}

@test "a group- or world-writable store directory is refused with 125 and one line naming chmod, without running COMMAND" {
	cmd=$(counter_cmd loose 'echo ran')

	mkdir -p "$STORE_DIR"
	for mode in 770 707 777; do
		chmod "$mode" "$STORE_DIR"
		cf_to "top$mode" -t 1m -k loose -- "$cmd"
		assert_usage_error "top$mode"
		grep -q chmod "top$mode.err" || { echo "no chmod in: $(cat "top$mode.err")" >&2; false; }
	done

	# the namespace directory inside a private store directory, too
	chmod 700 "$STORE_DIR"
	mkdir -p "$NS_DIR"
	chmod 775 "$NS_DIR"
	cf_to ns -t 1m -k loose -- "$cmd"
	assert_usage_error ns
	grep -q chmod ns.err

	# and with --fail-closed, and for the operator subcommands
	cf_to closed -t 1m -k loose --fail-closed -- "$cmd"
	assert_usage_error closed
	cf_to got get loose
	assert_usage_error got
	assert_eq "$(runs loose)" 0 "runs of COMMAND"
}

@test "a store directory owned by another user is refused with 125 and one line, without running COMMAND" {
	id nobody >/dev/null 2>&1 || skip "no user 'nobody' to own the directory"
	[[ $(id -u) != "$(id -u nobody)" ]] || skip "running as nobody"
	cmd=$(counter_cmd foreign 'echo ran')

	mkdir -p -m 700 "$STORE_DIR"
	chown nobody "$STORE_DIR"
	cf_to top -t 1m -k foreign -- "$cmd"
	assert_usage_error top

	# a namespace directory owned by another user inside one's own store
	chown "$(id -u)" "$STORE_DIR"
	mkdir -p -m 700 "$NS_DIR"
	chown nobody "$NS_DIR"
	cf_to ns -t 1m -k foreign -- "$cmd"
	assert_usage_error ns
	assert_eq "$(runs foreign)" 0 "runs of COMMAND"
}

@test "a store directory that is a symbolic link is refused with 125 and one line, without running COMMAND" {
	cmd=$(counter_cmd linked 'echo ran')

	mkdir -m 700 "$SCRATCH/real"
	mkdir -p "$(dirname "$STORE_DIR")"
	ln -s "$SCRATCH/real" "$STORE_DIR"
	cf_to run -t 1m -k linked -- "$cmd"
	assert_usage_error run
	assert_eq "$(runs linked)" 0 "runs of COMMAND"
	assert_eq "$(find "$SCRATCH/real" -mindepth 1)" "" "files written through the link"
}

# --- junk in the store -----------------------------------------------------------------

@test "a corrupt, truncated, foreign-keyed, future-version or wrongly checksummed entry file is a miss: COMMAND runs and prints the right bytes" {
	cmd=$(counter_cmd real 'printf "%s\n" "real output, long enough to be cut in the middle of its bytes"')
	expected='real output, long enough to be cut in the middle of its bytes\n'
	key=junk
	h=$(key_hash $key)
	entry=$NS_DIR/$h.entry

	# a sound entry of another key, to plant under this key's name
	cf_to other -t 1m -k other -- "$cmd"
	cp "$NS_DIR/$(key_hash other).entry" "$SCRATCH/other.entry"

	# each case damages a sound entry of this key in its own way
	cases=(random empty header-only bad-number no-blank-line truncated-in-stdout truncated-in-key future-version unsealed other-key)
	for c in "${cases[@]}"; do
		before=$(runs real)
		cf_to "sound-$c" -t 1m -k $key -- "$cmd"
		assert_status 0 "sound-$c"
		cp "$entry" sound.entry
		size=$(stat -c %s sound.entry)
		case $c in
		random) head -c 600 /dev/urandom >"$entry" ;;
		empty) : >"$entry" ;;
		header-only) printf 'cachefence-entry\n' >"$entry" ;;
		bad-number) sed 's/^olen=.*/olen=banana/' sound.entry >"$entry" && reseal_entry "$entry" ;;
		no-blank-line) sed '/^$/d' sound.entry >"$entry" ;;
		truncated-in-stdout) head -c $((size - ${#key} - 30)) sound.entry >"$entry" ;;
		truncated-in-key) head -c $((size - 2)) sound.entry >"$entry" ;;
		future-version) sed 's/^v=1$/v=99/' sound.entry >"$entry" && reseal_entry "$entry" ;;
		unsealed) sed 's/^sum=.*/sum=0000000000000000/' sound.entry >"$entry" ;;
		other-key) cp "$SCRATCH/other.entry" "$entry" ;;
		esac
		cmp -s sound.entry "$entry" && { echo "case $c did not change the entry" >&2; false; }

		cf_to "get-$c" get $key
		assert_status 1 "get-$c" || { echo "case $c: get" >&2; false; }
		assert_empty "get-$c.out"

		cf_to "$c" -t 1m -k $key -- "$cmd"
		assert_status 0 "$c" || { echo "case $c" >&2; false; }
		assert_bytes "$c.out" "$expected"
		assert_at_most_one_line "$c.err"
		assert_eq "$(runs real)" $((before + 2)) "runs of COMMAND in case $c"

		# the miss stored a sound entry again
		cf_to "hit-$c" -t 1m -k $key -- "$cmd"
		assert_bytes "hit-$c.out" "$expected"
		assert_eq "$(runs real)" $((before + 2)) "runs of COMMAND after the miss in case $c"
		rm "$entry"
	done
	assert_no_tmp_files "$STORE_DIR"
}

# --- a read-only directory, a full file system -------------------------------------------

@test "a read-only store directory fails open: COMMAND runs with one warning and intact output; --fail-closed exits 125 without running it" {
	mount_tmpfs "$STORE_DIR" size=1m,mode=0700
	kept=$(counter_cmd kept 'echo "stored before"')
	cmd=$(counter_cmd ro 'echo "ro output"; exit 3')
	cf_to before -t 1h -k kept -- "$kept"
	assert_status 0 before
	remount_ro "$STORE_DIR"

	cf_to first -t 1m -k ro -- "$cmd"
	assert_status 3 first
	assert_bytes first.out 'ro output\n'
	assert_one_line first.err "cachefence: warning:"
	assert_eq "$(runs ro)" 1 "runs of COMMAND"

	cf_to closed -t 1m -k ro --fail-closed -- "$cmd"
	assert_usage_error closed
	assert_eq "$(runs ro)" 1 "runs of COMMAND after --fail-closed"

	# what was stored before is still served
	cf_to hit -t 1h -k kept -- "$kept"
	assert_status 0 hit
	assert_bytes hit.out 'stored before\n'
	assert_eq "$(runs kept)" 1 "runs of the stored COMMAND"
	cf_to got get kept
	assert_status 0 got
	assert_bytes got.out 'stored before\n'
}

@test "a full file system: 1 MiB of output reaches the caller intact, exit 0, one warning, nothing stored, no temporary file left, the refused stores counted" {
	mount_tmpfs "$STORE_DIR" size=64k,mode=0700
	head -c 1048576 /dev/urandom >data
	cmd=$(counter_cmd big "cat '$SCRATCH/data'")

	cf_to first -t 1m -k big -- "$cmd"
	assert_status 0 first
	cmp first.out data
	assert_one_line first.err "cachefence: warning:"
	assert_no_tmp_files "$STORE_DIR"

	cf_to got get big
	assert_status 1 got
	cf_to second -t 1m -k big -- "$cmd"
	assert_status 0 second
	cmp second.out data
	assert_eq "$(runs big)" 2 "runs of COMMAND"
	assert_no_tmp_files "$STORE_DIR"

	# room is left for small results: the store still works
	small=$(counter_cmd small 'echo small')
	cf_to s1 -t 1m -k small -- "$small"
	cf_to s2 -t 1m -k small -- "$small"
	assert_bytes s2.out 'small\n'
	assert_empty s2.err
	assert_eq "$(runs small)" 1 "runs of the small COMMAND"

	# both refused stores are counted (the counters were made on the first
	# lookup, while there was room)
	cf_to stats stats
	grep -Eqx 'stores_failed +2' stats.out
}
