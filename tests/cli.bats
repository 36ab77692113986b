#!/usr/bin/env bats
# The command line: help and version, option and URL validation (every
# refusal is exit 125 with one line on stderr and nothing on stdout), the
# exit statuses of a COMMAND that cannot run, and where the URL comes from.

load lib/common

setup_file() { store_start; }
teardown_file() { store_stop; }
setup() { common_setup; }
teardown() {
	# undo the password test, whatever happened in it
	if [[ -n ${REDIS_PORT:-} ]]; then
		REDISCLI_AUTH=s3cret rcli ACL SETUSER default nopass >/dev/null 2>&1
		rcli ACL DELUSER cfuser >/dev/null 2>&1
	fi
	common_teardown
}

# --- help and version ------------------------------------------------------------

@test "--help prints usage on stdout and exits 0" {
	cf_to help --help
	assert_status 0 help
	grep -q 'cachefence' help.out
	grep -q -- '--ttl' help.out
	assert_empty help.err
}

@test "--version prints the version from meson.build and exits 0" {
	version=$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" "$BATS_TEST_DIRNAME/../meson.build" | head -1)
	[[ -n $version ]]
	cf_to version --version
	assert_status 0 version
	grep -qF -- "$version" version.out
	assert_eq "$(awk 'END { print NR }' version.out)" 1 "lines of --version"
	assert_empty version.err
}

# --- refusals: 125 ----------------------------------------------------------------

@test "an unknown option exits 125 with one line on stderr, before or after run" {
	cmd=$(counter_cmd never)
	cf_to global --no-such-option -t 1m -- "$cmd"
	assert_usage_error global
	cf_to short -Z -t 1m -- "$cmd"
	assert_usage_error short
	cf_to run run --frobnicate -t 1m -- "$cmd"
	assert_usage_error run
	assert_eq "$(runs never)" 0 "runs of COMMAND"
}

@test "a missing --ttl exits 125 without running COMMAND" {
	cmd=$(counter_cmd never)
	cf_to nottl -k some -- "$cmd"
	assert_usage_error nottl
	assert_eq "$(runs never)" 0 "runs of COMMAND"
}

@test "a missing COMMAND exits 125" {
	cf_to nothing -t 1m
	assert_usage_error nothing
	cf_to dashdash -t 1m --
	assert_usage_error dashdash
	cf_to run run -t 1m -k x
	assert_usage_error run
}

@test "an option that needs a value and has none exits 125" {
	cf_to ttl -t
	assert_usage_error ttl
	cf_to key -t 1m -k
	assert_usage_error key
}

@test "every bad duration value exits 125 with one line on stderr and COMMAND does not run" {
	cmd=$(counter_cmd never)
	bad=(banana "" -5 -5s 5x 5y 5months s 1.2.3 "1 s" 1h30 "1h 30m" 0x10 inf nan 99999999999999999999d)
	opts=(--ttl --lock-lease --wait --redis-timeout)
	for opt in "${opts[@]}"; do
		for value in "${bad[@]}"; do
			args=(-t 1m)
			[[ $opt == --ttl ]] && args=()
			cf_to bad "$opt" "$value" "${args[@]}" -- "$cmd"
			assert_usage_error bad || { echo "for: $opt '$value'" >&2; false; }
		done
	done
	cf_to lease0 -t 1m --lock-lease 0 -- "$cmd"
	assert_usage_error lease0
	assert_eq "$(runs never)" 0 "runs of COMMAND"
}

@test "good duration values are accepted: 250ms, 30, 5m, 1.5h, 2d, and systemd's 1h30m, 90min, 1w, 10sec" {
	cmd=$(counter_cmd ok 'echo fine')
	for value in 250ms 30 5m 1.5h 2d 1h30m 90min 1w 10sec 2hours 3days; do
		cf_to good -t "$value" -k "dur-$value" --lock-lease 10s -w "$value" -- "$cmd"
		assert_status 0 good || { echo "for: $value" >&2; false; }
		assert_bytes good.out 'fine\n'
	done
}

@test "every bad URL exits 125 with one line on stderr, from -u or from CACHEFENCE_URL" {
	cmd=$(counter_cmd never)
	bad=(
		"" garbage http://127.0.0.1:1 redis:/127.0.0.1:1
		redis://127.0.0.1:notaport redis://127.0.0.1:70000 redis://127.0.0.1:-1
		redis://127.0.0.1:1/notadb redis://127.0.0.1:1/-1
		unix:// "unix:///tmp/s.sock?db=x"
	)
	for url in "${bad[@]}"; do
		cf_to flag -u "$url" -t 1m -- "$cmd"
		assert_usage_error flag || { echo "for: -u '$url'" >&2; false; }
	done
	for url in "${bad[@]:1}"; do
		CACHEFENCE_URL=$url cf_to env -t 1m -- "$cmd"
		assert_usage_error env || { echo "for: CACHEFENCE_URL='$url'" >&2; false; }
	done
	assert_eq "$(runs never)" 0 "runs of COMMAND"
}

@test "rediss:// to a port that does not speak TLS fails open with one line naming the handshake, and 125 with --fail-closed" {
	cmd=$(counter_cmd once)
	cf_to tls -u "rediss://127.0.0.1:$REDIS_PORT" --redis-timeout 300ms -t 1m -- "$cmd"
	assert_status 0 tls
	assert_one_line tls.err 'cachefence: warning: '
	grep -q 'TLS handshake failed' tls.err
	assert_eq "$(runs once)" 1 "runs of COMMAND"
	cf_to closed -u "rediss://127.0.0.1:$REDIS_PORT" --redis-timeout 300ms -t 1m --fail-closed -- "$cmd"
	assert_usage_error closed
	grep -q 'TLS handshake failed' closed.err
	assert_eq "$(runs once)" 1 "runs of COMMAND"
}

@test "a --tls-* option with a store that is not rediss:// is refused with exit 125; the same variable is ignored" {
	cmd=$(counter_cmd tlsopt)
	cf_to opt -u "redis://127.0.0.1:$REDIS_PORT" --tls-insecure -t 1m -- "$cmd"
	assert_usage_error opt
	grep -q -- '--tls-insecure: only means something with a rediss:// URL' opt.err
	CACHEFENCE_TLS_CA_FILE=/nonexistent CACHEFENCE_TLS_INSECURE=yes \
		cf_to env -u "redis://127.0.0.1:$REDIS_PORT" -t 1m -- "$cmd"
	assert_status 0 env
	assert_eq "$(runs tlsopt)" 1 "runs of COMMAND"
}

@test "an unreadable --tls-ca-file, or a --tls-ca-dir that is not a directory, is refused with exit 125 before COMMAND runs" {
	cmd=$(counter_cmd tlsbad)
	cf_to file -u "rediss://127.0.0.1:$REDIS_PORT" --tls-ca-file "$BATS_TEST_TMPDIR/none.pem" -t 1m -- "$cmd"
	assert_usage_error file
	grep -q -- '--tls-ca-file: .*none.pem: No such file' file.err
	: >"$BATS_TEST_TMPDIR/empty.pem"
	CACHEFENCE_TLS_CA_DIR=$BATS_TEST_TMPDIR/empty.pem cf_to dir -u "rediss://127.0.0.1:$REDIS_PORT" -t 1m -- "$cmd"
	assert_usage_error dir
	grep -q 'CACHEFENCE_TLS_CA_DIR: .* is not a directory' dir.err
	cf_to pem -u "rediss://127.0.0.1:$REDIS_PORT" --tls-ca-file "$BATS_TEST_TMPDIR/empty.pem" -t 1m -- "$cmd"
	assert_usage_error pem
	grep -q -- '--tls-ca-file: .*empty.pem: holds no CA certificate' pem.err
	assert_eq "$(runs tlsbad)" 0 "runs of COMMAND"
}

# --- a COMMAND that cannot run: 126, 127 ----------------------------------------

@test "a COMMAND that is not found exits 127 with one line on stderr" {
	cf_to path -t 1m -- "$SCRATCH/no-such-command"
	assert_status 127 path
	assert_empty path.out
	assert_one_line path.err

	cf_to search -t 1m -- no-such-command-on-PATH
	assert_status 127 search
	assert_empty search.out
	assert_one_line search.err
}

@test "a COMMAND that is not executable exits 126 with one line on stderr" {
	printf '#!/bin/sh\necho should not run\n' >notexec
	chmod 644 notexec
	cf_to notexec -t 1m -- "$SCRATCH/notexec"
	assert_status 126 notexec
	assert_empty notexec.out
	assert_one_line notexec.err
}

# --- the command line's shape ----------------------------------------------------------

@test "options after the first non-option word belong to COMMAND" {
	cf_to dashdash -t 1m -k a -- printf '%s|' --ttl -k -v
	assert_status 0 dashdash
	assert_bytes dashdash.out '--ttl|-k|-v|'

	cf_to bare -t 1m -k b printf '%s|' -n --url
	assert_status 0 bare
	assert_bytes bare.out '-n|--url|'
	assert_empty bare.err
}

@test "run is the default subcommand: cachefence run -t and cachefence -t share an entry" {
	cmd=$(counter_cmd shared 'echo shared')
	cf_to explicit run -t 1m -k same -- "$cmd"
	assert_status 0 explicit
	cf_to implicit -t 1m -k same -- "$cmd"
	assert_status 0 implicit
	assert_bytes implicit.out 'shared\n'
	assert_eq "$(runs shared)" 1 "runs of COMMAND"
}

@test "get prints the stored bytes and exits 0, or prints nothing and exits 1 when absent" {
	cf_to absent get nothing-here
	assert_status 1 absent
	assert_empty absent.out

	cf_to store -t 1m -k present -- printf 'kept'
	cf_to present get present
	assert_status 0 present
	assert_bytes present.out 'kept'
}

@test "invalidate deletes the entries, prints how many, and the next run runs COMMAND" {
	cmd=$(counter_cmd again 'echo "run $n"')
	cf_to one -t 1m -k gone -- "$cmd"
	cf_to inval invalidate gone never-stored
	assert_status 0 inval
	[[ $(cat inval.out) =~ (^|[^0-9])1([^0-9]|$) ]] || { echo "invalidate said: $(cat inval.out)" >&2; false; }
	cf_to absent get gone
	assert_status 1 absent
	cf_to two -t 1m -k gone -- "$cmd"
	assert_bytes two.out 'run 2\n'
}

@test "-v reports a hit on stderr with the cachefence: prefix and leaves stdout alone" {
	cf_to miss -t 1m -k verbose -- printf 'out'
	cf_to hit -v -t 1m -k verbose -- printf 'out'
	assert_status 0 hit
	assert_bytes hit.out 'out'
	grep -q '^cachefence: hit' hit.err
	! grep -qv '^cachefence: ' hit.err
}

@test "-q silences the fail-open warning" {
	cf_to quiet -q -u redis://127.0.0.1:1 -t 1m -k q -- printf 'uncached'
	assert_status 0 quiet
	assert_bytes quiet.out 'uncached'
	assert_empty quiet.err
}

# --- where the store is --------------------------------------------------------------

@test "REDIS_URL is used when CACHEFENCE_URL is unset, and -u wins over both" {
	require_redis
	good=$CACHEFENCE_URL
	(
		unset CACHEFENCE_URL
		REDIS_URL=$good cf_to fromenv -t 1m -k viaenv -- printf 'x'
		assert_status 0 fromenv
		assert_empty fromenv.err
	)
	assert_eq "$(rcli EXISTS 'cachefence:{viaenv}')" 1 "entries stored through REDIS_URL"

	CACHEFENCE_URL=redis://127.0.0.1:1 REDIS_URL=redis://127.0.0.1:1 \
		cf_to flag -u "$good" -t 1m -k viaflag -- printf 'x'
	assert_status 0 flag
	assert_empty flag.err
	assert_eq "$(rcli EXISTS 'cachefence:{viaflag}')" 1 "entries stored through -u"
}

@test "-n and CACHEFENCE_NAMESPACE choose the prefix of the keys" {
	require_redis
	cf_to flag -n flagns -t 1m -k k -- printf 'x'
	CACHEFENCE_NAMESPACE=envns cf_to env -t 1m -k k -- printf 'x'
	assert_eq "$(rcli EXISTS 'flagns:{k}')" 1 "entries under flagns"
	assert_eq "$(rcli EXISTS 'envns:{k}')" 1 "entries under envns"
	assert_eq "$(rcli EXISTS 'cachefence:{k}')" 0 "entries under the default namespace"
}

@test "a redis:// URL with /DB stores in that database" {
	require_redis
	cf_to db -u "redis://127.0.0.1:$REDIS_PORT/3" -t 1m -k indb -- printf 'x'
	assert_status 0 db
	assert_empty db.err
	assert_eq "$(rcli -n 3 EXISTS 'cachefence:{indb}')" 1 "entries in db 3"
	assert_eq "$(rcli -n 0 EXISTS 'cachefence:{indb}')" 0 "entries in db 0"
}

@test "a unix:// URL with ?db= reaches the server over its socket" {
	require_redis
	[[ -n $REDIS_SOCK ]] || skip "the socket path would be too long"
	cf_to sock -u "unix://$REDIS_SOCK?db=2" -t 1m -k oversock -- printf 'x'
	assert_status 0 sock
	assert_empty sock.err
	assert_eq "$(rcli -n 2 EXISTS 'cachefence:{oversock}')" 1 "entries in db 2"
}

@test "a password in the URL, a user and password, or CACHEFENCE_PASSWORD authenticate" {
	require_redis
	rcli ACL SETUSER cfuser on '>pw2' '~*' '&*' '+@all' >/dev/null
	rcli ACL SETUSER default resetpass '>s3cret' >/dev/null
	export REDISCLI_AUTH=s3cret

	cf_to noauth -t 1m -k none -- printf 'x'
	assert_one_line noauth.err
	assert_eq "$(rcli EXISTS 'cachefence:{none}')" 0 "entries stored without a password"

	cf_to inurl -u "redis://:s3cret@127.0.0.1:$REDIS_PORT" -t 1m -k inurl -- printf 'x'
	assert_status 0 inurl
	assert_empty inurl.err
	cf_to user -u "redis://cfuser:pw2@127.0.0.1:$REDIS_PORT" -t 1m -k user -- printf 'x'
	assert_status 0 user
	assert_empty user.err
	CACHEFENCE_PASSWORD=s3cret cf_to env -t 1m -k env -- printf 'x'
	assert_status 0 env
	assert_empty env.err

	assert_eq "$(rcli EXISTS 'cachefence:{inurl}' 'cachefence:{user}' 'cachefence:{env}')" 3 "entries stored"
	rcli ACL SETUSER default nopass >/dev/null
	rcli ACL DELUSER cfuser >/dev/null
}

@test "a mistyped subcommand or 'help' as the first word is refused with the subcommand meant, and nothing runs" {
	cmd=$(counter_cmd inpsect)
	PATH=$SCRATCH:$PATH
	for word in inpsect lsit pnig invaldate statss; do
		cf_to typo "$word" foo
		assert_usage_error typo || { echo "for: $word" >&2; false; }
	done
	cf_to typo inpsect foo
	grep -q 'did you mean inspect?' typo.err
	cf_to typo lsit
	grep -q 'did you mean list?' typo.err
	cf_to help help
	assert_usage_error help
	grep -q -- 'cachefence --help' help.err
	# with a default TTL from the environment too
	CACHEFENCE_TTL=5m cf_to typo inpsect foo
	assert_usage_error typo
	# what the message offers runs the command of that name
	cf_to ran -t 5m -- inpsect
	assert_status 0 ran
	assert_bytes ran.out 'inpsect ran\n'
	assert_eq "$(runs inpsect)" 1 "runs of COMMAND"
}

@test "a mistyped long option is refused with the option meant" {
	cmd=$(counter_cmd never)
	cf_to typo --tll 5m -- "$cmd"
	assert_usage_error typo
	grep -q 'did you mean --ttl?' typo.err
	cf_to typo -t 5m --stale-if-eror 1m -- "$cmd"
	grep -q 'did you mean --stale-if-error?' typo.err
	cf_to typo stats --jsno
	assert_usage_error typo
	grep -q 'did you mean --json?' typo.err
	# no option of another subcommand is offered
	cf_to typo get --prometeus k
	assert_usage_error typo
	! grep -q 'did you mean' typo.err
	assert_eq "$(runs never)" 0 "runs of COMMAND"
}

@test "CACHEFENCE_TTL gives the TTL when -t is not given, -t wins, and a bad value is one line and 125" {
	cmd=$(counter_cmd ttl 'echo "run $n"')
	CACHEFENCE_TTL=1m cf_to first -k envttl -- "$cmd"
	assert_status 0 first
	assert_bytes first.out 'run 1\n'
	cf_to inspected inspect --json envttl
	jq -e '.ttl_ms > 50000 and .ttl_ms <= 60000' inspected.out >/dev/null
	CACHEFENCE_TTL=1m cf_to second -t 2h -k envttl2 -- "$cmd"
	cf_to inspected inspect --json envttl2
	jq -e '.ttl_ms > 3600000' inspected.out >/dev/null
	for bad in banana 0 -5s; do
		CACHEFENCE_TTL=$bad cf_to bad -k envttl3 -- "$cmd"
		assert_usage_error bad || { echo "for: $bad" >&2; false; }
		grep -q CACHEFENCE_TTL bad.err
	done
	assert_eq "$(runs ttl)" 2 "runs of COMMAND"
}

@test "a COMMAND that reads standard input that is not in the key gets one warning; one that does not read it, or --stdin=ignore, gets none" {
	# the pipe is full before cachefence starts: no race with the writer
	seq 1 70 | { sleep 0.3; cf -t 1h -k piped -- wc -l >piped.out 2>piped.err; }
	assert_bytes piped.out '70\n'
	assert_one_line piped.err "cachefence: warning: "
	grep -q -- '--stdin' piped.err
	# the trap the warning is about: other input, the same key, a hit
	seq 1 700 | { sleep 0.3; cf -t 1h -k piped -- wc -l >again.out 2>again.err; }
	assert_bytes again.out '70\n'
	seq 1 70 | { sleep 0.3; cf -t 1h -k unread -- echo hi >unread.out 2>unread.err; }
	assert_bytes unread.out 'hi\n'
	assert_empty unread.err
	seq 1 70 | { sleep 0.3; cf -t 1h -k ignored --stdin=ignore -- wc -l >ignored.out 2>ignored.err; }
	assert_bytes ignored.out '70\n'
	assert_empty ignored.err
	seq 1 5 >file
	cf -t 1h -k file -- wc -l <file >file.out 2>file.err
	assert_bytes file.out '5\n'
	assert_one_line file.err "cachefence: warning: "
	cf -t 1h -k null -- wc -l </dev/null >null.out 2>null.err
	assert_bytes null.out '0\n'
	assert_empty null.err
}

@test "--stdin takes no value but ignore: anything else is one line and 125" {
	cmd=$(counter_cmd never)
	cf_to bad -t 1h --stdin=yes -- "$cmd"
	assert_usage_error bad
	grep -q -- '--stdin=ignore' bad.err
	assert_eq "$(runs never)" 0 "runs of COMMAND"
}

@test "-v names the command it runs, quoted as a shell reads it back, not the word COMMAND" {
	cf_to lead -v -t 1m -k vname -- printf '%s\n' 'a b' "it's"
	assert_status 0 lead
	grep -qF "lead key=vname: running printf '%s\\n' 'a b' 'it'\\''s'" lead.err ||
		{ cat lead.err >&2; false; }
	! grep -q 'running COMMAND' lead.err
}
