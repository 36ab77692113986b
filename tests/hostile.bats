#!/usr/bin/env bats
# Hostile input through the real binary, on both stores: keys of every byte
# but NUL and as long as the kernel lets one argument be, commands of 10,000
# arguments, empty output, and stored entries that lie about their sizes or
# come from a future version. Each is a clean run, a miss, or a one-line 125:
# never a crash, never bytes of another entry.

load lib/common

setup_file() { store_start; }
teardown_file() { store_stop; }
setup() { common_setup; }
teardown() { common_teardown; }

# the file of the local store that holds user KEY's entry
entry_file() {
	echo "$STORE_DIR/cachefence/$(printf '%s' "$1" | sha256sum | cut -d' ' -f1).entry"
}

# the Redis name of user KEY's entry (its % and } escaped)
entry_name() {
	local k=${1//%/%25}
	echo "cachefence:{${k//\}/%7D}}"
}

# fail unless the last cf_to NAME ended cleanly: no signal (status below
# 128), and stderr empty or one line starting "cachefence: "
assert_clean() {
	((status < 128)) || { echo "$1: killed by signal $((status - 128))" >&2; cat "$1.err" >&2; return 1; }
	assert_at_most_one_line "$1.err"
}

# run cf with ARGS twice: a miss that exits 0 printing exactly BYTES (with
# printf's escapes) and nothing on stderr, then a hit that prints them again
miss_then_hit() {
	local bytes=$1
	shift
	cf_to miss "$@"
	assert_status 0 miss
	assert_bytes miss.out "$bytes"
	assert_empty miss.err
	cf_to hit "$@"
	assert_bytes hit.out "$bytes"
}

# --- keys -----------------------------------------------------------------------------

@test "a key of every byte from 1 to 255 is stored, replayed, read, inspected and invalidated as itself" {
	key=$(printf "$(printf '\\%03o' $(seq 1 255))")
	assert_eq "$(printf '%s' "$key" | wc -c)" 255 "bytes in the key"
	cmd=$(counter_cmd bytes 'echo "all bytes, run $n"')

	miss_then_hit 'all bytes, run 1\n' -t 1m -k "$key" -- "$cmd"
	assert_eq "$(runs bytes)" 1 "runs of COMMAND"

	# neighbours: the key without its last byte, and with one more
	cf_to shorter -t 1m -k "${key%?}" -- "$cmd"
	assert_bytes shorter.out 'all bytes, run 2\n'
	cf_to longer -t 1m -k "${key}x" -- "$cmd"
	assert_bytes longer.out 'all bytes, run 3\n'

	cf_to got get "$key"
	assert_status 0 got
	assert_bytes got.out 'all bytes, run 1\n'
	cf_to inspected inspect --json "$key"
	assert_status 0 inspected
	jq -e --arg k "$key" '.state == "fresh" and .size == 17' inspected.out >/dev/null
	cf_to listed list --json
	assert_status 0 listed
	assert_eq "$(wc -l <listed.out)" 3 "entries listed"

	cf_to invalidated invalidate "$key"
	assert_status 0 invalidated
	assert_eq "$(cat invalidated.out)" 1 "entries invalidated"
	cf_to gone get "$key"
	assert_status 1 gone
	cf_to kept get "${key%?}"
	assert_bytes kept.out 'all bytes, run 2\n'
}

@test "keys that differ only where the Redis names escape them (%, }, %7D, %25) are kept apart" {
	cmd=$(counter_cmd esc 'echo "entry of [$1]"')
	keys=('a}b' 'a%7Db' 'a%257Db' 'a%b' 'a%25b' '}' '%7D' '{}' '{' '%' '}}{{')

	for k in "${keys[@]}"; do
		cf_to "miss" -t 1m -k "$k" -- "$cmd" "$k"
		assert_status 0 miss
	done
	assert_eq "$(runs esc)" "${#keys[@]}" "runs of COMMAND"
	for k in "${keys[@]}"; do
		cf_to hit -t 1m -k "$k" -- "$cmd" "$k"
		assert_eq "$(cat hit.out)" "entry of [$k]" "the entry of key $k"
		cf_to got get "$k"
		assert_eq "$(cat got.out)" "entry of [$k]" "get of key $k"
	done
	assert_eq "$(runs esc)" "${#keys[@]}" "runs of COMMAND after the hits"
	if [[ $CACHEFENCE_TEST_STORE == redis ]]; then
		assert_eq "$(rcli EXISTS "$(entry_name 'a}b')")" 1 "the Redis name of a}b"
		assert_eq "$(rcli HGET 'cachefence:{a%7Db}' out)" "entry of [a}b]" "the entry at cachefence:{a%7Db}"
	fi
}

@test "keys of up to 131071 bytes (the kernel's limit on one argument) are stored and kept apart; a longer one cannot be passed at all" {
	# 131070 bytes of anything but NUL, and a fixed last byte, inside the
	# command substitution (which drops trailing newlines: the random part
	# ended in one about once in 256 runs)
	long=$(
		head -c 300000 /dev/urandom | tr -d '\000' | head -c 131070
		printf Z
	)
	assert_eq "$(printf '%s' "$long" | wc -c)" 131071 "bytes in the key"
	other=${long%Z}Y
	cmd=$(counter_cmd long 'echo "long key run $n"')

	miss_then_hit 'long key run 1\n' -t 1m -k "$long" -- "$cmd"
	cf_to other -t 1m -k "$other" -- "$cmd"
	assert_bytes other.out 'long key run 2\n'
	cf_to got get "$long"
	assert_bytes got.out 'long key run 1\n'
	cf_to listed list
	assert_status 0 listed
	assert_eq "$(wc -l <listed.out)" 2 "entries listed"
	cf_to invalidated invalidate "$other"
	assert_eq "$(cat invalidated.out)" 1 "entries invalidated"
	assert_eq "$(runs long)" 2 "runs of COMMAND"

	# Linux refuses one argument of 128 KiB or more (MAX_ARG_STRLEN) at
	# exec: cachefence never starts, so its 1 MiB key limit cannot be
	# reached from a command line
	toolong=${long}x
	status=0
	"$CACHEFENCE_BIN" -t 1m -k "$toolong" -- "$cmd" >toolong.out 2>toolong.err || status=$?
	assert_status 126 toolong
	grep -q 'Argument list too long' toolong.err
	assert_eq "$(runs long)" 2 "runs of COMMAND after the refused exec"

	# the empty key is refused by cachefence itself
	cf_to empty -t 1m -k '' -- "$cmd"
	assert_usage_error empty
}

# --- commands, outputs ---------------------------------------------------------------------

@test "a COMMAND of 10,000 arguments is keyed on all of them, run once and replayed; another last argument is another key" {
	cmd=$(counter_cmd many 'echo "run $n: $# arguments"; printf "%s\0" "$@" | sha256sum')
	args=()
	for i in $(seq 10000); do
		args+=("argument-$i")
	done
	args[4999]=''
	args[5999]='with space'
	args[6999]=$'new\nline'
	sum=$(printf '%s\0' "${args[@]}" | sha256sum)

	miss_then_hit "run 1: 10000 arguments\n$sum\n" -t 1m -- "$cmd" "${args[@]}"
	assert_eq "$(runs many)" 1 "runs of COMMAND"

	args[9999]='changed'
	cf_to changed -t 1m -- "$cmd" "${args[@]}"
	assert_status 0 changed
	grep -q '^run 2: 10000 arguments$' changed.out
	# dropping the empty argument is another key too
	cf_to dropped -t 1m -- "$cmd" "${args[@]:0:4999}" "${args[@]:5000}"
	grep -q '^run 3: 9999 arguments$' dropped.out

	cf_to keyed -t 1m -k many -- "$cmd" "${args[@]}"
	grep -q '^run 4: 10000 arguments$' keyed.out
	cf_to keyed-hit -t 1m -k many -- "$cmd" a b
	cmp keyed-hit.out keyed.out
	assert_eq "$(runs many)" 4 "runs of COMMAND"
}

@test "empty output is stored: a hit returns it empty with the stored exit status" {
	ok=$(counter_cmd ok 'exit 0')
	fails=$(counter_cmd fails 'exit 3')

	cf_to first -t 1m -k empty -- "$ok"
	assert_status 0 first
	assert_empty first.out
	assert_empty first.err
	cf_to hit -t 1m -k empty -- "$ok"
	assert_status 0 hit
	assert_empty hit.out
	assert_empty hit.err
	assert_eq "$(runs ok)" 1 "runs of COMMAND"
	cf_to got get empty
	assert_status 0 got
	assert_empty got.out
	cf_to inspected inspect --json empty
	jq -e '.state == "fresh" and .size == 0 and .exit_status == 0' inspected.out >/dev/null

	cf_to ffirst -t 1m -k empty-failure --cache-failures -- "$fails"
	assert_status 3 ffirst
	cf_to fhit -t 1m -k empty-failure --cache-failures -- "$fails"
	assert_status 3 fhit
	assert_empty fhit.out
	assert_empty fhit.err
	assert_eq "$(runs fails)" 1 "runs of the failing COMMAND"
	if [[ $CACHEFENCE_TEST_STORE == redis ]]; then
		assert_eq "$(rcli HGET 'cachefence:{empty}' olen)" 0 "olen"
		assert_eq "$(rcli HSTRLEN 'cachefence:{empty}' out)" 0 "bytes of out"
	fi
}

# --- entries that lie --------------------------------------------------------------------------

# Damage the entry of user key KEY with LIE: a size field of its header set
# to another value (Redis: HSET; the local store: its olen= or elen= line).
# LIE is FIELD=VALUE, FIELD+N or FIELD-N. On the local store the header is
# then resealed with a checksum that matches the lie, so what stands between
# the lie and the caller is the check of the sizes against the bytes; with
# SEAL "keep-sum" the old checksum stays and has to catch it.
lie_about_sizes() {
	local key=$1 lie=$2 seal=${3:-reseal} field value cur file
	field=${lie%%[=+-]*}
	value=${lie#"$field"}
	if [[ $CACHEFENCE_TEST_STORE == redis ]]; then
		cur=$(rcli HGET "$(entry_name "$key")" "$field")
	else
		file=$(entry_file "$key")
		cur=$(sed -n "s/^$field=//p" "$file")
	fi
	[[ $cur =~ ^[0-9]+$ ]] || { echo "no $field in the entry of $key" >&2; return 1; }
	case $value in
	=*) value=${value#=} ;;
	+*) value=$((cur + ${value#+})) ;;
	-*) value=$((cur - ${value#-})) ;;
	esac
	if [[ $CACHEFENCE_TEST_STORE == redis ]]; then
		rcli HSET "$(entry_name "$key")" "$field" "$value" >/dev/null
	else
		sed -i "s/^$field=.*/$field=$value/" "$file"
		[[ $seal == keep-sum ]] || reseal_entry "$file"
	fi
}

@test "an entry whose header lies about its sizes is a miss, never bytes of another entry" {
	other=$(counter_cmd other 'head -c 3000 /dev/zero | tr "\0" O; echo')
	cmd=$(counter_cmd real 'echo "real output of run $n, long enough to cut"')
	cf_to other -t 1h -k other -- "$other"
	assert_status 0 other

	lies=(olen+1 olen-1 olen=0 olen+3000 olen=2000000 olen=99999999999999999999 elen+1 elen=5000)
	for lie in "${lies[@]}"; do
		before=$(runs real)
		cf_to "sound-$lie" -t 1h -k liar -- "$cmd"
		assert_status 0 "sound-$lie"
		lie_about_sizes liar "$lie"

		cf_to "get-$lie" get liar
		assert_clean "get-$lie"
		[[ $status == 1 || $status == 125 ]] || { echo "$lie: get exited $status" >&2; cat "get-$lie.out" >&2; false; }
		assert_empty "get-$lie.out"

		cf_to "$lie" -t 1h -k liar -- "$cmd"
		assert_status 0 "$lie"
		assert_clean "$lie"
		assert_bytes "$lie.out" "real output of run $((before + 2)), long enough to cut\n"
		! grep -q O "$lie.out" || { echo "$lie: bytes of another entry" >&2; false; }

		# the miss stored a sound entry again
		cf_to "hit-$lie" -t 1h -k liar -- "$cmd"
		cmp "hit-$lie.out" "$lie.out"
		assert_eq "$(runs real)" $((before + 2)) "runs of COMMAND after $lie"
		cf_to "drop-$lie" invalidate liar
	done
	cf_to still get other
	assert_eq "$(tr -d O <still.out | wc -c)" 1 "bytes of the other entry that are not O"
	assert_eq "$(runs other)" 1 "runs of the other COMMAND"
}

@test "an entry whose sizes lie but still add up (stdout shorter, stderr longer by as much) is a miss, not a torn hit" {
	# Redis keeps stdout and stderr in fields of their own and checks each
	# size against its field. The local store keeps them back to back in one
	# file, so only the sizes say where stdout ends: the header's checksum is
	# what makes this edit a miss (a header resealed to match its lie would be
	# trusted, as any store trusts what its owner wrote on purpose).
	cmd=$(counter_cmd real 'echo "real output of run $n"')

	cf_to sound -t 1h -k shifted -- "$cmd"
	assert_status 0 sound
	lie_about_sizes shifted olen-3 keep-sum
	lie_about_sizes shifted elen+3 keep-sum

	cf_to shifted -t 1h -k shifted -- "$cmd"
	assert_status 0 shifted
	assert_bytes shifted.out 'real output of run 2\n'
	assert_clean shifted
	assert_eq "$(runs real)" 2 "runs of COMMAND"
}

@test "an entry written by a future version is a miss, and this version's entry replaces it" {
	cmd=$(counter_cmd real 'echo "real output of run $n"')

	cf_to sound -t 1h -k future -- "$cmd"
	if [[ $CACHEFENCE_TEST_STORE == redis ]]; then
		rcli HSET "$(entry_name future)" v 2 out 'FUTURE BYTES' olen 12 layout new >/dev/null
	else
		file=$(entry_file future)
		sed -i 's/^v=1$/v=2/' "$file"
		grep -qx 'v=2' "$file"
		reseal_entry "$file"
	fi

	cf_to got get future
	assert_status 1 got
	assert_empty got.out
	cf_to inspected inspect future
	assert_clean inspected
	cf_to miss -t 1h -k future -- "$cmd"
	assert_status 0 miss
	assert_clean miss
	assert_bytes miss.out 'real output of run 2\n'

	cf_to hit -t 1h -k future -- "$cmd"
	assert_bytes hit.out 'real output of run 2\n'
	assert_eq "$(runs real)" 2 "runs of COMMAND"
	if [[ $CACHEFENCE_TEST_STORE == redis ]]; then
		assert_eq "$(rcli HGET "$(entry_name future)" v)" 1 "format version of the new entry"
	else
		grep -qx 'v=1' "$(entry_file future)"
	fi
}

@test "redis store: an entry the server's check accepts but the client cannot decode (st 300, times past 2^52, a 300-byte host) is a miss, not a fail-open run on every call" {
	require_redis
	cmd=$(counter_cmd real 'echo "real output of run $n"')
	bad=("st 300" "ttl 9007199254740993" "ct 99999999999999999999" "host $(head -c 300 /dev/zero | tr '\0' h)")

	for i in "${!bad[@]}"; do
		key=undecodable$i
		cf_to "sound$i" -t 1h -k "$key" -- "$cmd"
		before=$(runs real)
		rcli HSET "$(entry_name "$key")" ${bad[$i]} >/dev/null

		cf_to "get$i" get "$key"
		assert_clean "get$i"
		assert_empty "get$i.out"
		cf_to "miss$i" -t 1h -k "$key" -- "$cmd"
		assert_status 0 "miss$i"
		assert_clean "miss$i"
		assert_bytes "miss$i.out" "real output of run $((before + 1))\n"
		# the miss replaced the entry: the next call is a hit
		cf_to "hit$i" -t 1h -k "$key" -- "$cmd"
		assert_empty "hit$i.err" || { echo "after HSET ${bad[$i]:0:30}" >&2; false; }
		assert_bytes "hit$i.out" "real output of run $((before + 1))\n"
		assert_eq "$(runs real)" $((before + 1)) "runs of COMMAND after HSET ${bad[$i]:0:30}"
	done
}
