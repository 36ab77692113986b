#!/usr/bin/env bats
# rediss:// against real TLS redis-servers on loopback, with the certificate
# fixture tests/lib/tls_fixture.sh makes for this suite: a certificate from an
# unknown CA, for the wrong name, expired, or a server that wants a client
# certificate. Each failed handshake is one line naming its cause, then a
# fail-open run (COMMAND's output and status reach the caller) or 125 with
# --fail-closed; the options and variables that make each case connect; and a
# 64 MiB value both ways through TLS in bounded memory.
#
# Store 'tls' only: the suite's own server (CACHEFENCE_URL, trusted through
# CACHEFENCE_TLS_CA_FILE) has the good certificate; setup_file starts one more
# server per bad case, each on its own free loopback port.

load lib/common

# start one more TLS redis-server NAME with ARGS (a certificate swapped in,
# or client certificates asked for) and a watchdog that kills it if bats
# dies; exports NAME_PORT (upper case); the pids of both go to servers.pid
# for teardown_file
tls_server() {
	local name=$1 var main_watchdog=$REDIS_WATCHDOG
	shift
	redis_spawn "$BATS_FILE_TMPDIR" "$name" "$@" || return 1
	var=${name^^}_PORT
	export "$var=$SPAWNED_PORT"
	redis_watchdog "$BASHPID" "$SPAWNED_PID"
	echo "$SPAWNED_PID $REDIS_WATCHDOG" >>"$BATS_FILE_TMPDIR/servers.pid"
	export REDIS_WATCHDOG=$main_watchdog
}

setup_file() {
	[[ $CACHEFENCE_TEST_STORE == tls ]] || skip "the TLS suite runs on the tls store only"
	store_start
	local d=$TLS_DIR
	tls_server unknown --tls-cert-file "$d/unknown.crt" --tls-key-file "$d/unknown.key" &&
		tls_server wrongname --tls-cert-file "$d/wrongname.crt" --tls-key-file "$d/wrongname.key" &&
		tls_server expired --tls-cert-file "$d/expired.crt" --tls-key-file "$d/expired.key" &&
		tls_server authclients --tls-auth-clients yes &&
		tls_server authclients12 --tls-auth-clients yes --tls-protocols TLSv1.2
}

teardown_file() {
	local pid watchdog
	if [[ -f $BATS_FILE_TMPDIR/servers.pid ]]; then
		while read -r pid watchdog; do
			kill -TERM "$pid" "$watchdog" 2>/dev/null
		done <"$BATS_FILE_TMPDIR/servers.pid"
	fi
	store_stop
}

# empty every server of the suite (the bad ones too, which some tests reach
# with --tls-insecure) and forget COMMAND's runs
flush_all() {
	local port
	for port in "$REDIS_PORT" "$UNKNOWN_PORT" "$WRONGNAME_PORT" "$EXPIRED_PORT" "$AUTHCLIENTS_PORT"; do
		[[ $(redis_cli_at "$port" --insecure FLUSHALL) == OK ]] || return
	done
	rm -f "$SCRATCH"/*.runs
}

setup() {
	common_setup
	flush_all
}
teardown() { common_teardown; }

# the rediss:// URL of the loopback server on PORT
url() {
	echo "rediss://127.0.0.1:$1"
}

# fail unless FILE is one line starting PREFIX that names CAUSE (a
# case-insensitive fixed string)
assert_cause() {
	local file=$1 prefix=$2 cause=$3
	assert_one_line "$file" "$prefix" || return
	grep -qiF -- "$cause" "$file" && return 0
	echo "$file: the line does not name the cause '$cause':" >&2
	cat "$file" >&2
	return 1
}

# The helpers below say "|| return" after each step: a caller may use them
# in a || list, where bash suspends errexit inside the function.

# the failed-handshake contract for the server at URL, with extra options
# ARGS... given before the subcommand: one warning line naming CAUSE and a
# fail-open run (COMMAND's output and exit status 3), then with --fail-closed
# 125 and one line naming CAUSE, COMMAND not run; ping too is 125 with CAUSE
assert_handshake_fails() {
	local url=$1 cause=$2 cmd
	shift 2
	cmd=$(counter_cmd open 'printf "uncached\nrun %s" "$n"; exit 3') || return

	cf_to open -u "$url" "$@" -t 1m -k case -- "$cmd"
	assert_status 3 open || return
	assert_bytes open.out 'uncached\nrun 1' || return
	assert_cause open.err "cachefence: warning:" "$cause" || return

	cf_to closed -u "$url" "$@" -t 1m -k case --fail-closed -- "$cmd"
	assert_usage_error closed || return
	assert_cause closed.err "cachefence: " "$cause" || return
	assert_eq "$(runs open)" 1 "runs of COMMAND (the fail-closed call must not run it)" || return

	cf_to ping -u "$url" "$@" ping
	assert_usage_error ping || return
	assert_cause ping.err "cachefence: " "$cause"
}

# fail unless a run against URL with ARGS... connects: the first call stores
# (COMMAND runs), the second is a hit (it does not), both print the same
# bytes; stderr of each is empty, or with WARN=1 one warning line
assert_connects() {
	local url=$1 warn=${WARN:-0} name cmd
	shift
	cmd=$(counter_cmd good 'printf "cached %s" "$n"') || return
	for name in first second; do
		cf_to "$name" -u "$url" "$@" -t 1m -k good -- "$cmd"
		assert_status 0 "$name" || return
		assert_bytes "$name.out" 'cached 1' || return
		if ((warn)); then
			assert_one_line "$name.err" "cachefence: warning:" || return
		else
			assert_empty "$name.err" || return
		fi
	done
	assert_eq "$(runs good)" 1 "runs of COMMAND: the second call must be a hit"
}

# --- the fixture itself -------------------------------------------------------------

@test "the fixture: each server presents the certificate its case needs (checked with redis-cli and openssl s_client)" {
	local d=$TLS_DIR

	# the suite's server: trusted through the CA, for 127.0.0.1 and localhost
	assert_eq "$(redis-cli --tls --cacert "$d/ca.crt" -p "$REDIS_PORT" PING)" PONG "PING over TLS"
	for check in "-verify_ip 127.0.0.1" "-verify_hostname localhost"; do
		# shellcheck disable=SC2086
		openssl s_client -connect "127.0.0.1:$REDIS_PORT" -CAfile "$d/ca.crt" $check \
			-verify_return_error -brief </dev/null >good.txt 2>&1 ||
			{ cat good.txt >&2; false; }
		grep -q 'Verification: OK' good.txt
	done
	# no plain TCP on that port
	run redis-cli -p "$REDIS_PORT" PING
	[[ $output != PONG ]] || { echo "plain PONG from the TLS port" >&2; false; }

	# unknown CA and expired: redis-cli refuses them, and s_client says why
	for case in unknown:"unable to get local issuer certificate" expired:"certificate has expired" \
		wrongname:"IP address mismatch"; do
		name=${case%%:*} reason=${case#*:}
		var=${name^^}_PORT
		run ! openssl s_client -connect "127.0.0.1:${!var}" -CAfile "$d/ca.crt" -verify_ip 127.0.0.1 \
			-verify_return_error -brief </dev/null
		[[ $output == *"$reason"* ]] || { echo "$name: s_client said: $output" >&2; false; }
	done
	run ! redis-cli --tls --cacert "$d/ca.crt" -p "$UNKNOWN_PORT" PING
	[[ $output == *"certificate verify failed"* ]] || { echo "unknown CA: $output" >&2; false; }
	run ! redis-cli --tls --cacert "$d/ca.crt" -p "$EXPIRED_PORT" PING
	[[ $output == *"certificate verify failed"* ]] || { echo "expired: $output" >&2; false; }
	# redis-cli does not check names: the wrong-name server is otherwise good
	assert_eq "$(redis-cli --tls --cacert "$d/ca.crt" -p "$WRONGNAME_PORT" PING)" PONG "PING to the wrong-name server"
	openssl s_client -connect "127.0.0.1:$WRONGNAME_PORT" -CAfile "$d/ca.crt" -verify_hostname other.example \
		-verify_return_error -brief </dev/null >other.txt 2>&1 || { cat other.txt >&2; false; }

	# the server that asks for client certificates: none, no PONG; the fixture's, PONG
	run redis-cli --tls --cacert "$d/ca.crt" -p "$AUTHCLIENTS_PORT" PING
	[[ $output != PONG ]] || { echo "PONG without a client certificate" >&2; false; }
	assert_eq "$(redis-cli --tls --cacert "$d/ca.crt" --cert "$d/client.crt" --key "$d/client.key" \
		-p "$AUTHCLIENTS_PORT" PING)" PONG "PING with the client certificate"
}

# --- handshakes that fail, and what makes them pass -------------------------------------------

@test "a server certificate from an unknown CA: one line naming the unknown CA, fail-open, 125 with --fail-closed" {
	assert_handshake_fails "$(url "$UNKNOWN_PORT")" "unknown CA"
}

@test "the suite's good server with another CA given by --tls-ca-file (over the variable): unknown CA" {
	assert_handshake_fails "$CACHEFENCE_URL" "unknown CA" --tls-ca-file "$TLS_DIR/other-ca.crt"
}

@test "a certificate for another name: one line naming the name mismatch, fail-open, 125 with --fail-closed" {
	assert_handshake_fails "$(url "$WRONGNAME_PORT")" "name mismatch"
}

@test "a certificate for another name connects with --tls-server-name naming it, or CACHEFENCE_TLS_SERVER_NAME" {
	assert_connects "$(url "$WRONGNAME_PORT")" --tls-server-name other.example
	flush_all
	CACHEFENCE_TLS_SERVER_NAME=other.example assert_connects "$(url "$WRONGNAME_PORT")"
}

@test "--tls-server-name with a name the certificate lacks is a name mismatch even against the good server" {
	assert_handshake_fails "$CACHEFENCE_URL" "name mismatch" --tls-server-name other.example
}

@test "an expired certificate: one line naming the expired certificate, fail-open, 125 with --fail-closed" {
	assert_handshake_fails "$(url "$EXPIRED_PORT")" "certificate expired"
}

@test "a server that wants a client certificate and gets none: one line saying it is required, fail-open, 125 with --fail-closed" {
	assert_handshake_fails "$(url "$AUTHCLIENTS_PORT")" "client certificate required"
}

@test "a server that wants a client certificate accepts the one given by --tls-cert and --tls-key, or by the variables" {
	assert_connects "$(url "$AUTHCLIENTS_PORT")" --tls-cert "$TLS_DIR/client.crt" --tls-key "$TLS_DIR/client.key"
	flush_all
	CACHEFENCE_TLS_CERT=$TLS_DIR/client.crt CACHEFENCE_TLS_KEY=$TLS_DIR/client.key \
		assert_connects "$(url "$AUTHCLIENTS_PORT")"
}

@test "a client key that is not the certificate's, or a CA file that is not PEM: 125 naming the option or the variable it came from" {
	cmd=$(counter_cmd badfile)
	cf_to opt -u "$(url "$AUTHCLIENTS_PORT")" --tls-cert "$TLS_DIR/client.crt" \
		--tls-key "$TLS_DIR/server.key" -t 1m -- "$cmd"
	assert_usage_error opt
	grep -q -- '^cachefence: --tls-key: .*server.key: is not the key of the certificate' opt.err
	CACHEFENCE_TLS_CERT=$TLS_DIR/client.crt CACHEFENCE_TLS_KEY=$TLS_DIR/server.key \
		cf_to env -u "$(url "$AUTHCLIENTS_PORT")" -t 1m -- "$cmd"
	assert_usage_error env
	grep -q '^cachefence: CACHEFENCE_TLS_KEY: .*server.key: is not the key of the certificate' env.err
	CACHEFENCE_TLS_CA_FILE=$TLS_DIR/client.key cf_to ca -t 1m -- "$cmd"
	assert_usage_error ca
	grep -q '^cachefence: CACHEFENCE_TLS_CA_FILE: .*client.key: holds no CA certificate in PEM' ca.err
	assert_eq "$(runs badfile)" 0 "runs of COMMAND"
}

@test "--tls-insecure connects to the unknown-CA, wrong-name and expired servers, with a warning line" {
	for port in "$UNKNOWN_PORT" "$WRONGNAME_PORT" "$EXPIRED_PORT"; do
		flush_all
		WARN=1 assert_connects "$(url "$port")" --tls-insecure ||
			{ echo "on port $port: $(cat first.err)" >&2; false; }
		grep -qi 'insecure\|verif' first.err || { echo "the warning does not say what is off: $(cat first.err)" >&2; false; }
	done
}

@test "--tls-insecure against a server that wants a client certificate names the missing certificate, not a CA" {
	# TLS 1.2: the refusal ends the handshake itself (1.3 sends it after)
	cf_to open -u "$(url "$AUTHCLIENTS12_PORT")" --tls-insecure -t 1m -k case -- sh -c 'printf ran; exit 3'
	assert_status 3 open
	assert_bytes open.out 'ran'
	grep -qi "client certificate required" open.err || { cat open.err >&2; false; }
	! grep -qi "unknown CA" open.err || { cat open.err >&2; false; }
}

@test "with no CA option, the system's directory or OpenSSL's SSL_CERT_DIR is where the CA is looked up" {
	mkdir cadir
	cp "$TLS_DIR/ca.crt" cadir/
	openssl rehash cadir
	unset CACHEFENCE_TLS_CA_FILE
	# the system's directory does not hold the fixture's CA
	assert_handshake_fails "$CACHEFENCE_URL" "unknown CA"
	SSL_CERT_DIR=$SCRATCH/cadir assert_connects "$CACHEFENCE_URL"
}

@test "CACHEFENCE_TLS_INSECURE=1 works like --tls-insecure" {
	CACHEFENCE_TLS_INSECURE=1 WARN=1 assert_connects "$(url "$EXPIRED_PORT")"
}

@test "the CA comes from --tls-ca-dir or CACHEFENCE_TLS_CA_DIR (a hashed directory) as well as from the file" {
	mkdir cadir
	cp "$TLS_DIR/ca.crt" cadir/
	openssl rehash cadir
	unset CACHEFENCE_TLS_CA_FILE
	assert_connects "$CACHEFENCE_URL" --tls-ca-dir "$SCRATCH/cadir"
	flush_all
	CACHEFENCE_TLS_CA_DIR=$SCRATCH/cadir assert_connects "$CACHEFENCE_URL"

	# a directory without the CA: the server's CA is unknown
	mkdir emptydir
	CACHEFENCE_TLS_CA_DIR=$SCRATCH/emptydir assert_handshake_fails "$CACHEFENCE_URL" "unknown CA"
}

@test "the CA file comes from --tls-ca-file as well as from CACHEFENCE_TLS_CA_FILE, and the option wins" {
	unset CACHEFENCE_TLS_CA_FILE
	assert_connects "$CACHEFENCE_URL" --tls-ca-file "$TLS_DIR/ca.crt"
	flush_all
	CACHEFENCE_TLS_CA_FILE=$TLS_DIR/other-ca.crt assert_connects "$CACHEFENCE_URL" --tls-ca-file "$TLS_DIR/ca.crt"
}

@test "a rediss:// port that never answers the handshake: fail-open with one line within --redis-timeout, 125 with --fail-closed" {
	# a listener that never accepts: the kernel completes the TCP handshake,
	# the ClientHello is never read
	python3 -c '
import os, socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(s.getsockname()[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(120)' "$SCRATCH/hole.port" </dev/null >/dev/null 2>&1 3>&- &
	echo $! >hole.pid
	wait_for_file hole.port 10
	cmd=$(counter_cmd open 'echo uncached; exit 3')

	SECONDS=0
	cf_to open -u "$(url "$(<hole.port)")" --redis-timeout 500ms -t 1m -k hole -- "$cmd"
	elapsed=$SECONDS
	assert_status 3 open
	assert_bytes open.out 'uncached\n'
	assert_one_line open.err "cachefence: warning:"
	((elapsed < 10)) || { echo "took ${elapsed}s with --redis-timeout 500ms" >&2; false; }

	cf_to closed -u "$(url "$(<hole.port)")" --redis-timeout 500ms -t 1m -k hole --fail-closed -- "$cmd"
	assert_usage_error closed
	assert_eq "$(runs open)" 1 "runs of COMMAND"
}

# --- large values ----------------------------------------------------------------------

# run cachefence ARGS... with stdout in NAME.out and stderr in NAME.err; sets
# $status, and RSS_KIB to the peak resident set size (KiB) of cachefence and
# the children it waited for (COMMAND: cat, which stays small), measured as
# bench/run does, with /usr/bin/time -f %M: a parent that forks must be
# small, as a child's peak counts what it shared with its parent before exec
cf_rss() {
	local name=$1
	shift
	[[ -x /usr/bin/time ]] || { echo "/usr/bin/time not found (Debian package time)" >&2; return 1; }
	status=0
	/usr/bin/time -f %M -o "$name.rss" timeout -s KILL "$CF_TIMEOUT" "$CACHEFENCE_BIN" "$@" \
		>"$name.out" 2>"$name.err" || status=$?
	RSS_KIB=$(tail -n 1 "$name.rss")
}

# fail unless RSS_KIB is at most MIB mebibytes, for WHAT (skipped, with a
# note, in a sanitizer build, whose shadow memory says nothing of ours)
assert_rss_at_most() {
	if nm -D "$CACHEFENCE_BIN" 2>/dev/null | grep -q __asan_init; then
		echo "# $2: peak RSS not bounded in a sanitizer build ($((RSS_KIB / 1024)) MiB)" >&3
		return 0
	fi
	((RSS_KIB <= $1 * 1024)) && return 0
	echo "$2: peak RSS $((RSS_KIB / 1024)) MiB, more than $1 MiB" >&2
	return 1
}

@test "a 64 MiB value with NUL bytes and no final newline is stored and served over TLS byte for byte, in bounded memory (16 MiB storing, 8 MiB serving)" {
	head -c $((64 * 1024 * 1024 - 4)) /dev/urandom >value
	printf '\000NUL' >>value
	cmd=$(counter_cmd big "cat '$SCRATCH/value'")
	opts=(--redis-timeout 20s --max-size 100M -t 1h -k big)

	cf_rss store "${opts[@]}" -- "$cmd"
	assert_status 0 store
	cmp store.out value
	assert_empty store.err
	assert_rss_at_most 16 "the leader storing 64 MiB over TLS"

	cf_rss hit "${opts[@]}" -- "$cmd"
	assert_status 0 hit
	cmp hit.out value
	assert_empty hit.err
	assert_eq "$(runs big)" 1 "runs of COMMAND: the second call must be a hit"
	assert_rss_at_most 8 "a 64 MiB hit over TLS"

	cf_rss got --redis-timeout 20s get big
	assert_status 0 got
	cmp got.out value
	assert_rss_at_most 8 "get of 64 MiB over TLS"
}
