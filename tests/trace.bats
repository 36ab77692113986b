#!/usr/bin/env bats
# Tracing entries back to the command lines that made them (issue #12): the
# command stored with each entry and shown by list and inspect (text and
# JSON), `cachefence key` printing the key a command line derives, and
# `invalidate -- COMMAND` deleting that key's entry; entries stored before
# the command was kept still hit, with the command unknown. Both stores.
# JSON is parsed with jq, never matched as text.

load lib/common

setup_file() {
	store_start
	command -v jq >/dev/null || { echo "jq not found (Debian package jq)" >&2; return 1; }
}
teardown_file() { store_stop; }
setup() { common_setup; }
teardown() { common_teardown; }

# the store server's clock, in milliseconds
server_ms() {
	local t
	mapfile -t t < <(rcli TIME)
	echo $((t[0] * 1000 + t[1] / 1000))
}

# column N (1-based) of the line of list's text output FILE whose command
# (the last column) is CMD; fails unless exactly one line has it
list_column_of() {
	local file=$1 n=$2 cmd=$3 got
	got=$(awk -F'\t' -v c="$cmd" -v n="$n" '$NF == c { print $n }' "$file")
	[[ -n $got && $(wc -l <<<"$got") == 1 ]] ||
		{ echo "$file: not exactly one line with command $cmd:" >&2; cat "$file" >&2; return 1; }
	printf '%s\n' "$got"
}

# fail unless the words the shell reads back from DISPLAY (a command as list
# shows it) are exactly the words given after it
assert_reads_back() {
	local display=$1 back
	shift
	eval "back=($display)"
	[[ $(printf '%s\0' "${back[@]}" | od -An -tx1) == $(printf '%s\0' "$@" | od -An -tx1) ]] && return 0
	echo "bash reads back from: $display" >&2
	printf '  [%q]\n' "${back[@]}" >&2
	echo "instead of:" >&2
	printf '  [%q]\n' "$@" >&2
	return 1
}

# the local store's one entry file
the_entry_file() {
	local f
	f=$(find "$STORE_DIR/cachefence" -name '*.entry')
	[[ -n $f && $(wc -l <<<"$f") == 1 ]] || { echo "entry files: '$f'" >&2; return 1; }
	echo "$f"
}

# --- the command, in list and inspect ------------------------------------------------

@test "list and inspect show a derived key's command line, quoted so a shell reads back the same words" {
	args=(printf '%s|' 'a b' "it's" $'two\nlines' $'\xff\xfe\x01' 'café' 'x=y' '' '$HOME' 'back\slash')
	read -r want <<'EOF'
printf '%s|' 'a b' 'it'\''s' $'two\nlines' $'\xff\xfe\x01' $'caf\xc3\xa9' x=y '' '$HOME' 'back\slash'
EOF
	cf_to run -t 1m -- "${args[@]}"
	assert_status 0 run run
	cf_to key key -- "${args[@]}"
	assert_status 0 key key

	cf_to txt list
	assert_status 0 txt txt
	assert_eq "$(awk 'END { print NR }' txt.out)" 1 "lines of list"
	assert_eq "$(cut -f6- txt.out)" "$want" "command column of list"
	assert_eq "$(cut -f1 txt.out)" "$(cat key.out)" "key column of list"
	assert_reads_back "$(cut -f6- txt.out)" "${args[@]}"

	cf_to js list --json
	assert_status 0 js js
	assert_eq "$(jq -r .command js.out)" "$want" "command of list --json"

	cf_to ins inspect "$(cat key.out)"
	assert_status 0 ins ins
	assert_eq "$(awk 'END { print NR }' ins.out)" 12 "lines of inspect"
	assert_eq "$(sed -n 's/^command: *//p' ins.out)" "$want" "command line of inspect"
	cf_to insjs inspect --json "$(cat key.out)"
	assert_status 0 insjs insjs
	assert_eq "$(jq -r .command insjs.out)" "$want" "command of inspect --json"

	if [[ $CACHEFENCE_TEST_STORE == redis ]]; then
		# one more field of the hash, for HGETALL readers
		assert_eq "$(rcli HGET "cachefence:{$(cat key.out)}" cmd)" "$want" "the entry's cmd field"
	else
		grep -qxF "cmd=$want" "$(the_entry_file)"
	fi
}

@test "an entry stored under -k KEY shows its command line too" {
	cf_to run -t 1m -k report -- sh -c 'echo "hello world"'
	assert_status 0 run run
	cf_to txt list
	assert_eq "$(cut -f1,6 txt.out)" "report	sh -c 'echo \"hello world\"'" "key and command in list"
	cf_to ins inspect report
	grep -qxF "command:     sh -c 'echo \"hello world\"'" ins.out
	cf_to js inspect --json report
	assert_eq "$(jq -r .command js.out)" "sh -c 'echo \"hello world\"'" "command of inspect --json"
	cf_to ljs list --json
	assert_eq "$(jq -r .command ljs.out)" "sh -c 'echo \"hello world\"'" "command of list --json"
}

@test "a command line of 10,000 arguments is shown cut at 1 KiB with ..., and key still finds its entry" {
	mapfile -t many < <(seq 10000)
	cf_to run -t 1m -- printf '' "${many[@]}"
	assert_status 0 run run
	cf_to txt list
	assert_status 0 txt txt
	cmd=$(cut -f6- txt.out)
	((${#cmd} <= 1024 && ${#cmd} > 1000)) || { echo "command of ${#cmd} bytes: $cmd" >&2; false; }
	[[ $cmd == "printf '' 1 2 3 4 5 "* && $cmd == *... ]] || { echo "command: $cmd" >&2; false; }

	cf_to key key -- printf '' "${many[@]}"
	assert_status 0 key key
	assert_eq "$(cut -f1 txt.out)" "$(cat key.out)" "key of the long command"
	cf_to ins inspect --json "$(cat key.out)"
	assert_eq "$(jq -r .command ins.out)" "$cmd" "command of inspect --json"
	cf_to js list --json
	assert_eq "$(jq -r .command js.out)" "$cmd" "command of list --json"
}

# --- key ------------------------------------------------------------------------------

@test "key prints exactly the key list shows for a command's entry, with every scope option and --stdin" {
	echo one >conf
	mkdir -p sub
	V=blue cf_to r-env -t 1m --scope-env V -- printf '%s' env
	cf_to r-file -t 1m --scope-file conf -- printf '%s' file
	(cd sub && cf_to ../r-cwd -t 1m --scope-cwd -- printf '%s' cwd)
	printf 'piped bytes' | cf_to r-stdin -t 1m --stdin -- cat
	assert_bytes r-stdin.out 'piped bytes'
	cf_to r-plain -t 1m -- printf '%s' plain
	cf_to r-all -t 1m --scope-env V --scope-file conf --scope-cwd --stdin -- printf '%s' all </dev/null
	cf_to txt list
	assert_status 0 txt txt
	assert_eq "$(awk 'END { print NR }' txt.out)" 6 "entries listed"

	V=blue cf_to k-env key --scope-env V -- printf '%s' env
	cf_to k-file key --scope-file conf -- printf '%s' file
	(cd sub && cf_to ../k-cwd key --scope-cwd -- printf '%s' cwd)
	printf 'piped bytes' | cf_to k-stdin key --stdin -- cat
	cf_to k-plain key -- printf '%s' plain
	cf_to k-all key --scope-env V --scope-file conf --scope-cwd --stdin -- printf '%s' all </dev/null
	for v in env file cwd plain all; do
		assert_status 0 "k-$v"
		assert_empty "k-$v.err"
		assert_eq "$(awk 'END { print NR }' "k-$v.out")" 1 "lines printed by key ($v)"
		assert_eq "$(cat "k-$v.out")" "$(list_column_of txt.out 1 "printf %s $v")" "key with scope $v"
	done
	assert_eq "$(cat k-stdin.out)" "$(list_column_of txt.out 1 cat)" "key with --stdin"

	# each scope is in the key: another value gives another key
	V=red cf_to o-env key --scope-env V -- printf '%s' env
	echo longer >conf
	cf_to o-file key --scope-file conf -- printf '%s' file
	cf_to o-cwd key --scope-cwd -- printf '%s' cwd
	printf 'other bytes' | cf_to o-stdin key --stdin -- cat
	for v in env file cwd stdin; do
		[[ $(cat "o-$v.out") =~ ^cmd:[0-9a-f]{64}$ && $(cat "o-$v.out") != "$(cat "k-$v.out")" ]] ||
			{ echo "scope $v: $(cat "o-$v.out") vs $(cat "k-$v.out")" >&2; false; }
	done
	cf_to o-plain key -- printf '%s' env
	[[ $(cat o-plain.out) != "$(cat k-env.out)" ]]
}

@test "key -k KEY prints KEY escaped as list prints keys, and opens no store" {
	cf_to plain key -k 'my key'
	assert_status 0 plain plain
	assert_bytes plain.out 'my key\n'
	k=$'tab\there\x01\\'
	cf_to run -t 1m -k "$k" -- printf x
	cf_to odd key -k "$k" -- printf x
	assert_status 0 odd odd
	cf_to txt list
	assert_eq "$(cat odd.out)" "$(cut -f1 txt.out)" "key -k of bytes outside printable ASCII"
	assert_bytes odd.out 'tab\\x09here\\x01\\x5c\n'

	# nothing is run and no store is opened: an unreachable store is no matter
	cf_to away -u redis://127.0.0.1:1 key -- sh -c 'touch ran'
	assert_status 0 away away
	assert_empty away.err
	[[ $(cat away.out) =~ ^cmd:[0-9a-f]{64}$ ]]
	[[ ! -e ran ]]
}

@test "key with bad options, or none of COMMAND and -k, is one line on stderr and exit 125" {
	cf_to empty key -k '' -- echo x
	assert_usage_error empty
	grep -q -- '--key' empty.err
	cf_to both key -k k --scope-cwd -- echo x
	assert_usage_error both
	grep -q -- '--key' both.err
	cf_to stdin key -k k --stdin -- echo x
	assert_usage_error stdin
	cf_to none key
	assert_usage_error none
	grep -q 'no COMMAND' none.err
	cf_to nodash key --
	assert_usage_error nodash
	cf_to env key --scope-env '' -- echo x
	assert_usage_error env
	cf_to unknown key --ttl 1m -- echo x
	assert_usage_error unknown
	cf_to typo key --scope-ccwd -- echo x
	assert_usage_error typo
	grep -q -- '--scope-cwd' typo.err
}

# --- invalidate -- COMMAND -------------------------------------------------------------

@test "invalidate -- COMMAND ARGS deletes that command line's entry and only it, and prints 1 then 0" {
	cf_to a -t 1m -- printf '%s-' a b
	cf_to b -t 1m -- printf '%s-' a c
	cf_to c -t 1m -- printf '%s-' 'a b'
	V=1 cf_to d -t 1m --scope-env V -- printf '%s-' a b
	cf_to ka key -- printf '%s-' a b
	cf_to before list
	assert_eq "$(awk 'END { print NR }' before.out)" 4 "entries before"
	cut -f1 before.out | grep -vxF "$(cat ka.out)" | sort >want

	cf_to gone invalidate -- printf '%s-' a b
	assert_status 0 gone gone
	assert_bytes gone.out '1\n'
	cf_to after list
	cut -f1 after.out | sort >got
	cmp -s want got || { echo "entries left:" >&2; cat after.out >&2; false; }
	cf_to get get "$(cat ka.out)"
	assert_status 1 get

	cf_to again invalidate -- printf '%s-' a b
	assert_status 0 again again
	assert_bytes again.out '0\n'

	# with a scope, the scoped entry
	V=1 cf_to scoped invalidate --scope-env V -- printf '%s-' a b
	assert_status 0 scoped scoped
	assert_bytes scoped.out '1\n'
	cf_to last list
	assert_eq "$(cut -f6 last.out | sort | tr '\n' '|')" "printf %s- 'a b'|printf %s- a c|" "commands left"
}

@test "invalidate -- COMMAND fences out a leader running that command line" {
	cmd=$(counter_cmd slow "$(hold_until "$SCRATCH/release"); echo \"run \$n\"")
	cf_bg lead -t 1m -- "$cmd" arg
	wait_for_file slow.runs 30
	cf_to inval invalidate -- "$cmd" arg
	assert_status 0 inval inval
	touch release
	assert_eq "$(bg_status lead)" 0 "status of the fenced leader"
	assert_bytes lead.out 'run 1\n'
	cf_to after -t 1m -- "$cmd" arg
	assert_bytes after.out 'run 2\n'
	assert_eq "$(runs slow)" 2 "runs"
}

@test "invalidate with scope options but no -- COMMAND, or with -- and another form, is a usage error" {
	cf_to scope invalidate --scope-cwd somekey
	assert_usage_error scope
	grep -q -- '--' scope.err
	cf_to mixed invalidate --match 'x*' -- echo x
	assert_usage_error mixed
	cf_to empty invalidate --
	assert_usage_error empty
	grep -q 'no COMMAND' empty.err
}

# --- entries from before the command was kept ------------------------------------------

@test "an entry stored without the command field still hits, and list and inspect show the command as unknown" {
	cmd=$(counter_cmd legacy 'echo "legacy ran"')
	cf_to key key -- "$cmd"
	key=$(cat key.out)
	if [[ $CACHEFENCE_TEST_STORE == redis ]]; then
		# the fields of an entry as an older cachefence wrote them
		rcli HSET "cachefence:{$key}" v 1 st 0 ct "$(server_ms)" ttl 60000 sw 0 se 0 dt 5 \
			olen 8 elen 0 host oldhost out $'old one\n' err '' >/dev/null
		rcli PEXPIRE "cachefence:{$key}" 60000 >/dev/null
		assert_eq "$(rcli HEXISTS "cachefence:{$key}" cmd)" 0 "cmd field"
		want='old one\n'
		ran=0
	else
		cf_to first -t 1m -- "$cmd"
		assert_bytes first.out 'legacy ran\n'
		f=$(the_entry_file)
		grep -q '^cmd=' "$f"
		python3 - "$f" <<-'EOF'
			import sys
			path = sys.argv[1]
			b = open(path, "rb").read()
			end = b.index(b"\n\n") + 2
			lines = [l for l in b[:end].split(b"\n") if not l.startswith(b"cmd=")]
			open(path, "wb").write(b"\n".join(lines) + b[end:])
		EOF
		reseal_entry "$f"
		assert_eq "$(grep -c '^cmd=' "$f")" 0 "cmd lines left"
		want='legacy ran\n'
		ran=1
	fi

	cf_to hit -v -t 1m -- "$cmd"
	assert_status 0 hit hit
	assert_bytes hit.out "$want"
	grep -q 'hit key=' hit.err
	assert_eq "$(runs legacy)" "$ran" "runs of COMMAND"

	cf_to ins inspect "$key"
	assert_status 0 ins ins
	grep -qx 'state: *fresh' ins.out
	grep -qx 'command: *(unknown)' ins.out
	cf_to insjs inspect --json "$key"
	assert_eq "$(jq -c '[.state, .command]' insjs.out)" '["fresh",null]' "state and command of inspect --json"
	cf_to txt list
	assert_eq "$(cut -f1,6 txt.out)" "$key	(unknown)" "key and command in list"
	cf_to js list --json
	assert_eq "$(jq -c '[.key, .command]' js.out)" "[\"$key\",null]" "key and command in list --json"
	cf_to inval invalidate -- "$cmd"
	assert_bytes inval.out '1\n'
}

@test "local store: a command line edited in an entry file without its checksum makes the entry a miss" {
	require_file
	cmd=$(counter_cmd edited 'echo "run $n"')
	cf_to first -t 1m -- "$cmd"
	assert_bytes first.out 'run 1\n'
	f=$(the_entry_file)
	sed -i "s|^cmd=.*|cmd=rm -rf /|" "$f"
	cf_to second -t 1m -- "$cmd"
	assert_bytes second.out 'run 2\n'
	cf_to txt list
	assert_eq "$(cut -f6 txt.out)" "$cmd" "command listed after the rerun"
}
