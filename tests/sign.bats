#!/usr/bin/env bats
# Signed entries (--sign-key-file, issue 18): with a key, only entries
# signed with it (or with --sign-old-key-file's) are served; anything else
# a writer without the key put there is a miss, or, for an entry too large
# to hold back, a line and exit 125 once its end shows the forgery. Runs on
# the redis and file stores: entries are edited in place the way a writer
# without the key could (tests/lib/entry_edit.py).

load lib/common

setup_file() { store_start; }
teardown_file() { store_stop; }
setup() {
	common_setup
	unset CACHEFENCE_SIGN_KEY_FILE CACHEFENCE_SIGN_OLD_KEY_FILE
	new_key k1
	new_key k2
}
teardown() { common_teardown; }

# a key file NAME in SCRATCH: 32 random bytes in base64, private
new_key() {
	head -c 32 /dev/urandom | base64 >"$SCRATCH/$1"
	chmod 600 "$SCRATCH/$1"
}

# the counter NAME as `stats` prints it
stat_of() {
	cf stats | awk -v n="$1" '$1 == n { print $2 }'
}

# a COMMAND that counts its runs (NAME.runs) and prints FILE's bytes
cat_cmd() {
	counter_cmd "$1" "cat '$SCRATCH/$2'"
}

@test "an entry stored without the key is never served to a caller with one: COMMAND runs, one warning, the counter, and the new entry is signed" {
	cmd=$(counter_cmd plain 'printf "run %s" "$n"')
	cf_to unsigned -t 1m -k plain -- "$cmd"
	assert_bytes unsigned.out 'run 1'
	cf_to signed --sign-key-file k1 -t 1m -k plain -- "$cmd"
	assert_status 0 signed
	assert_bytes signed.out 'run 2'
	assert_one_line signed.err
	grep -q 'not authentic (unsigned): treated as a miss' signed.err
	assert_eq "$(stat_of entries_not_authentic)" 1 "entries_not_authentic"
	# what it stored in its place is signed, and served
	cf_to hit --sign-key-file k1 -t 1m -k plain -- "$cmd"
	assert_bytes hit.out 'run 2'
	assert_empty hit.err
	assert_eq "$(runs plain)" 2 "runs of COMMAND"
	# -q silences the warning, not the check
	cf_to plain3 -t 1m -k plain --refresh -- "$cmd"
	cf_to quiet -q --sign-key-file k1 -t 1m -k plain -- "$cmd"
	assert_bytes quiet.out 'run 4'
	assert_empty quiet.err
}

@test "redis-cli HSET of a well-formed entry with a made-up signature is a miss; so is a signed entry copied under another key or namespace" {
	require_redis
	require_standalone
	cmd=$(counter_cmd forged 'printf "real %s" "$n"')
	cf_to first --sign-key-file k1 -t 1m -k victim -- "$cmd"
	sig=$(rcli HGET 'cachefence:{victim}' sig)
	[[ $sig =~ ^[0-9a-f]{8}:[0-9a-f]{64}$ ]] || { echo "sig field: $sig" >&2; false; }
	# same sizes, same key id, the attacker's bytes and a guessed MAC
	now=$(rcli TIME | head -n 1)
	rcli HSET 'cachefence:{victim}' out 'evil 1' ct "${now}000" \
		sig "${sig:0:9}$(printf '%064d' 0)" >/dev/null
	cf_to forged --sign-key-file k1 -t 1m -k victim -- "$cmd"
	assert_bytes forged.out 'real 2'
	grep -q 'its signature does not match' forged.err
	# a real signature, under another key: not this key's
	[[ $(rcli COPY 'cachefence:{victim}' 'cachefence:{other}') == 1 ]]
	cf_to moved --sign-key-file k1 -t 1m -k other -- "$cmd"
	assert_bytes moved.out 'real 3'
	# and in another namespace
	[[ $(rcli COPY 'cachefence:{victim}' 'elsewhere:{victim}') == 1 ]]
	cf_to ns -n elsewhere --sign-key-file k1 -t 1m -k victim -- "$cmd"
	assert_bytes ns.out 'real 4'
	# the status is signed too
	cf_to good --sign-key-file k1 -t 1m -k status -- sh -c 'printf ok; exit 0'
	rcli HSET 'cachefence:{status}' st 3 >/dev/null
	cf_to status --sign-key-file k1 -t 1m -k status -- sh -c 'printf again; exit 0'
	assert_status 0 status
	assert_bytes status.out 'again'
	assert_eq "$(stat_of entries_not_authentic)" 3 "entries_not_authentic"
	assert_eq "$(cf stats -n elsewhere | awk '$1 == "entries_not_authentic" { print $2 }')" 1 \
		"entries_not_authentic in the other namespace"
}

@test "key rotation: an entry signed with the old key is served while --sign-old-key-file names it, and not after" {
	cmd=$(counter_cmd rot 'printf "run %s" "$n"')
	cf_to old --sign-key-file k1 -t 1m -k rot -- "$cmd"
	cf_to both --sign-key-file k2 --sign-old-key-file k1 -t 1m -k rot -- "$cmd"
	assert_bytes both.out 'run 1'
	assert_empty both.err
	# the same through the variables
	CACHEFENCE_SIGN_KEY_FILE=$SCRATCH/k2 CACHEFENCE_SIGN_OLD_KEY_FILE=$SCRATCH/k1 \
		cf_to env -t 1m -k rot -- "$cmd"
	assert_bytes env.out 'run 1'
	assert_eq "$(runs rot)" 1 "runs of COMMAND"
	cf_to new --sign-key-file k2 -t 1m -k rot -- "$cmd"
	assert_bytes new.out 'run 2'
	grep -q 'not authentic' new.err
	cf_to get --sign-key-file k2 get rot
	assert_status 0 get
	assert_bytes get.out 'run 2'
}

@test "a flipped bit anywhere in an entry of 1 MiB (its first byte, the middle, its last, stderr) is caught before a byte is written: the caller gets COMMAND's output, exit 0" {
	head -c $((1024 * 1024 - 4096)) /dev/urandom >data
	cmd=$(counter_cmd mib "cat '$SCRATCH/data'; echo 'to stderr' >&2")
	n=0
	for pos in 0 524288 -1; do
		cf_to "store$pos" --sign-key-file k1 --cache-stderr -t 1m -k mib -- "$cmd"
		flip_byte mib out "$pos"
		cf_to "read$pos" --sign-key-file k1 --cache-stderr -t 1m -k mib -- "$cmd"
		n=$((n + 2)) # the store, and the run in place of the flipped entry
		assert_status 0 "read$pos"
		cmp "read$pos.out" data
		grep -q 'not authentic' "read$pos.err"
		assert_eq "$(runs mib)" "$n" "runs of COMMAND after the flip at $pos"
		cf_to "clean$pos" invalidate mib
	done
	cf_to store --sign-key-file k1 --cache-stderr -t 1m -k mib -- "$cmd"
	flip_byte mib err 2
	cf_to read --sign-key-file k1 --cache-stderr -t 1m -k mib -- "$cmd"
	cmp read.out data
	grep -q 'not authentic' read.err
	cf_to get --sign-key-file k1 get mib
	assert_status 0 get
	cmp get.out data
}

@test "a flipped bit in a 48 MiB entry: the bytes stream, the end shows it, exit 125 with one line, the entry deleted; the next call computes it anew" {
	head -c $((48 * 1024 * 1024)) /dev/urandom >big
	cmd=$(cat_cmd bigcmd big)
	cf_to store --sign-key-file k1 -t 1m -k big -- "$cmd"
	cmp store.out big
	cf_to hit --sign-key-file k1 -t 1m -k big -- "$cmd"
	cmp hit.out big
	assert_empty hit.err
	flip_byte big out 30000000
	cf_to forged --sign-key-file k1 -t 1m -k big -- "$cmd"
	assert_status 125 forged
	assert_one_line forged.err
	grep -q 'is not authentic (its signature does not match, checked at its end): do not trust what was printed' forged.err
	cf_to get --sign-key-file k1 get big
	assert_status 1 get
	cf_to again --sign-key-file k1 -t 1m -k big -- "$cmd"
	assert_status 0 again
	cmp again.out big
	assert_eq "$(runs bigcmd)" 2 "runs of COMMAND"
	# get of a forged large entry says so too
	flip_byte big out -1
	cf_to get2 --sign-key-file k1 get big
	assert_status 125 get2
	assert_one_line get2.err
	grep -q 'not authentic' get2.err
}

@test "an unsigned entry of 2 MiB, too large to hold back, prints nothing to a caller with a key: it is known not to check before its first byte" {
	head -c $((2 * 1024 * 1024)) /dev/urandom >two
	cmd=$(counter_cmd twocmd "cat '$SCRATCH/two'")
	cf_to unsigned -t 1m -k two -- "$cmd"
	cf_to signed --sign-key-file k1 -t 1m -k two -- "$cmd"
	assert_status 0 signed
	cmp signed.out two
	assert_one_line signed.err
	grep -q 'not authentic (unsigned): treated as a miss' signed.err
	assert_eq "$(runs twocmd)" 2 "runs of COMMAND"
	# signed with a key we do not have: the same
	cf_to other --sign-key-file k2 -t 1m -k two -- "$cmd"
	assert_status 0 other
	cmp other.out two
	assert_eq "$(runs twocmd)" 3 "runs of COMMAND"
}

@test "without a key every entry is served as before, signed or not" {
	cf_to signed --sign-key-file k1 -t 1m -k any -- printf stored
	cf_to plain -t 1m -k any -- printf recomputed
	assert_bytes plain.out 'stored'
	assert_empty plain.err
}

@test "a key file that is not private, too short, missing, or an old key alone: exit 125 with one line, COMMAND not run" {
	cmd=$(counter_cmd never)
	chmod 640 k1
	cf_to open --sign-key-file k1 -t 1m -- "$cmd"
	assert_usage_error open
	grep -q -- '--sign-key-file: k1 must be private to you' open.err
	chmod 600 k1
	printf 'short\n' >k3
	chmod 600 k3
	cf_to short --sign-key-file k3 -t 1m -- "$cmd"
	assert_usage_error short
	grep -q 'holds 5 bytes; a key needs at least 16' short.err
	CACHEFENCE_SIGN_KEY_FILE=$SCRATCH/nothing cf_to missing -t 1m -- "$cmd"
	assert_usage_error missing
	grep -q '^cachefence: CACHEFENCE_SIGN_KEY_FILE: cannot open' missing.err
	cf_to alone --sign-old-key-file k1 -t 1m -- "$cmd"
	assert_usage_error alone
	grep -q 'give --sign-key-file too' alone.err
	cf_to dir --sign-key-file "$SCRATCH" get x
	assert_usage_error dir
	assert_eq "$(runs never)" 0 "runs of COMMAND"
}
