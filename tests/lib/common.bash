# tests/lib/common.bash: the harness every bats suite loads with `load lib/common`.
#
# A suite starts one private store for the whole file and gives each test an
# empty store and a fresh scratch directory:
#
#   setup_file()    { store_start; }
#   teardown_file() { store_stop; }
#   setup()         { common_setup; }
#   teardown()      { common_teardown; }
#
# CACHEFENCE_TEST_STORE picks the store: "redis" (the default) starts a
# redis-server on a free loopback port, never 6379; "tls" makes the loopback
# TLS fixture (tests/lib/tls_fixture.sh) and starts a redis-server that speaks
# only TLS on such a port, with CACHEFENCE_URL at rediss://127.0.0.1:PORT and
# CACHEFENCE_TLS_CA_FILE at the fixture's CA; "acl" is a redis-server whose
# default user is off, and cachefence runs as the ACL user cf with exactly
# the man page's rules (tests/lib/acl_rules), the password in
# CACHEFENCE_PASSWORD (rcli is an admin); "file" points CACHEFENCE_URL at
# file://$STORE_DIR, a directory under the suite's temporary directory that
# every test starts without (cachefence creates it). Tests that look inside
# Redis call require_redis first (both Redis stores pass it) and talk to the
# server through rcli or redis_cli_at, which speak TLS on the tls store; a URL
# a test makes for a Redis port starts with $REDIS_SCHEME (redis or rediss).
# Tests of the local store's files call require_file.
#
# Background jobs must not keep bats's fd 3 open, or bats waits for them:
# everything started here with & closes it (3>&-).

bats_require_minimum_version 1.5.0

CACHEFENCE_BIN=${CACHEFENCE_BIN:-$BATS_TEST_DIRNAME/../build/cachefence}
CACHEFENCE_TEST_STORE=${CACHEFENCE_TEST_STORE:-redis}
# Upper bound in seconds on any one foreground cachefence call.
CF_TIMEOUT=${CF_TIMEOUT:-60}

# --- the store -------------------------------------------------------------

# start the suite's store and point CACHEFENCE_URL at it (from setup_file)
store_start() {
	unset REDIS_URL CACHEFENCE_NAMESPACE CACHEFENCE_PASSWORD CACHEFENCE_TLS_CA_FILE \
		CACHEFENCE_TLS_CA_DIR CACHEFENCE_TLS_CERT CACHEFENCE_TLS_KEY \
		CACHEFENCE_TLS_SERVER_NAME CACHEFENCE_TLS_INSECURE CACHEFENCE_SENTINEL_PASSWORD
	export REDIS_SCHEME=redis REDIS_USERINFO=
	[[ $CACHEFENCE_TEST_STORE == tls ]] && REDIS_SCHEME=rediss
	unset CACHEFENCE_SIGN_KEY_FILE CACHEFENCE_SIGN_OLD_KEY_FILE
	# CACHEFENCE_TEST_SIGN=1: every call signs and checks entries
	if [[ ${CACHEFENCE_TEST_SIGN:-} == 1 ]]; then
		export CACHEFENCE_SIGN_KEY_FILE=$BATS_FILE_TMPDIR/sign.key
		head -c 32 /dev/urandom | base64 >"$CACHEFENCE_SIGN_KEY_FILE"
		chmod 600 "$CACHEFENCE_SIGN_KEY_FILE"
	fi
	case $CACHEFENCE_TEST_STORE in
	redis) redis_start ;;
	tls) tls_store_start ;;
	acl) acl_store_start ;;
	cluster) cluster_store_start ;;
	sentinel) sentinel_store_start ;;
	file) file_store_start ;;
	*) echo "unknown CACHEFENCE_TEST_STORE=$CACHEFENCE_TEST_STORE" >&2; return 1 ;;
	esac
}

# stop what store_start started (from teardown_file)
store_stop() {
	case $CACHEFENCE_TEST_STORE in
	redis | tls | acl) redis_stop ;;
	cluster) "$BATS_TEST_DIRNAME/lib/cluster_fixture.sh" stop "$BATS_FILE_TMPDIR/cluster" ;;
	sentinel) "$BATS_TEST_DIRNAME/lib/sentinel_fixture.sh" stop "$BATS_FILE_TMPDIR/sentinel" ;;
	file) file_store_stop ;;
	esac
}

# empty the store (from common_setup)
store_flush() {
	case $CACHEFENCE_TEST_STORE in
	redis | tls | acl) [[ $(rcli FLUSHALL) == OK ]] ;;
	cluster)
		local port
		# a loaded machine can make a primary miss the 2 s node timeout
		# and its replica take over (a test of 200 callers did, and every
		# test after it failed here): the first three primaries again
		for port in $CLUSTER_PRIMARIES; do
			redis-cli -p "$port" ROLE 2>/dev/null | head -n 1 | grep -qx master && continue
			"$BATS_TEST_DIRNAME/lib/cluster_fixture.sh" heal "$BATS_FILE_TMPDIR/cluster" >&2 ||
				return 1
			break
		done
		for port in $CLUSTER_PRIMARIES; do
			[[ $(redis-cli -p "$port" FLUSHALL) == OK ]] || return 1
		done
		;;
	sentinel) [[ $(rcli FLUSHALL) == OK ]] ;; # on the primary, the replica follows
	file) file_store_flush ;;
	esac
}

# true when the suite's store is a redis-server (plain TCP or TLS, or as
# an ACL user), a cluster or a primary behind sentinels
store_is_redis() {
	[[ $CACHEFENCE_TEST_STORE == redis || $CACHEFENCE_TEST_STORE == tls ||
		$CACHEFENCE_TEST_STORE == acl || $CACHEFENCE_TEST_STORE == cluster ||
		$CACHEFENCE_TEST_STORE == sentinel ]]
}

# skip the current test on the acl store, whose server has no default user:
# what a test of requirepass (the default user's password) sets is not
# what cachefence authenticates with there
require_default_user() {
	[[ $CACHEFENCE_TEST_STORE != acl ]] || skip "the acl store's server has no default user"
}

# skip the current test on a Redis Cluster or behind sentinels (it restarts
# or relays one server: REDIS_PID is not set there)
require_standalone() {
	[[ $CACHEFENCE_TEST_STORE != cluster ]] || skip "needs one server, not a cluster"
	[[ $CACHEFENCE_TEST_STORE != sentinel ]] || skip "needs one server, not sentinels"
}

# the cluster store: 3 primaries and 3 replicas (tests/lib/cluster_fixture.sh);
# the URL names two primaries as seeds, the slot map is cached in the suite's
# own XDG_CACHE_HOME; REDIS_PORT is the first primary's, and rcli follows
# redirections (redis-cli -c)
cluster_store_start() {
	local dir=$BATS_FILE_TMPDIR/cluster
	"$BATS_TEST_DIRNAME/lib/cluster_fixture.sh" start "$dir" || return 1
	mapfile -t ports <"$dir/ports"
	export REDIS_PORT=${ports[0]} CACHEFENCE_URL=$(<"$dir/url")
	export XDG_CACHE_HOME=$BATS_FILE_TMPDIR/xdg
	export CLUSTER_PRIMARIES="${ports[*]:0:3}" CLUSTER_SUITE_PID=$BASHPID
	# nodes do not outlive a suite killed before its teardown
	local pid
	while read -r pid; do
		redis_watchdog "$BASHPID" "$pid"
	done <"$dir/pids"
}

# the sentinel store: a primary, a replica and three sentinels watching the
# service cfmaster (tests/lib/sentinel_fixture.sh); the URL names the three
# sentinels. With SENTINEL_PASSWORD set the sentinels require it, and
# CACHEFENCE_SENTINEL_PASSWORD gives it. REDIS_PORT is the first primary's;
# rcli asks the sentinels for the primary at each call (sentinel_primary), so
# it follows failovers. SENTINEL_DIR is the fixture's directory.
sentinel_store_start() {
	local dir=$BATS_FILE_TMPDIR/sentinel ports
	# sentinels with a password, as in production: every run proves that
	# CACHEFENCE_SENTINEL_PASSWORD reaches them
	export SENTINEL_PASSWORD=${SENTINEL_PASSWORD-"sentinel secret $RANDOM"}
	"$BATS_TEST_DIRNAME/lib/sentinel_fixture.sh" start "$dir" || return 1
	mapfile -t ports <"$dir/ports"
	# the primary a run keeps, in the suite's own cache
	export XDG_CACHE_HOME=$BATS_FILE_TMPDIR/xdg
	export SENTINEL_DIR=$dir REDIS_PORT=${ports[0]} CACHEFENCE_URL
	CACHEFENCE_URL=$(<"$dir/url")
	[[ -z ${SENTINEL_PASSWORD:-} ]] || export CACHEFENCE_SENTINEL_PASSWORD=$SENTINEL_PASSWORD
	export SENTINEL_SUITE_PID=$BASHPID
	# servers do not outlive a suite killed before its teardown
	local pid
	while read -r pid; do
		redis_watchdog "$BASHPID" "$pid"
	done <"$dir/pids"
}

# the port of the sentinel store's primary, as the first sentinel that
# answers within 1 s names it (one may be frozen by a test)
sentinel_primary() {
	local s p auth=()
	# an empty REDISCLI_AUTH would be sent (and refused): set only when given
	[[ -z ${SENTINEL_PASSWORD:-} ]] || auth=(env "REDISCLI_AUTH=$SENTINEL_PASSWORD")
	while read -r s; do
		p=$("${auth[@]}" timeout 1 redis-cli -p "$s" \
			SENTINEL get-master-addr-by-name cfmaster 2>/dev/null | sed -n 2p) || true
		[[ $p =~ ^[0-9]+$ ]] && { echo "$p"; return 0; }
	done < <(sed -n '3,5p' "$SENTINEL_DIR/ports")
	echo "no sentinel in $SENTINEL_DIR names a primary" >&2
	return 1
}

# skip the current test unless the suite runs against Redis (plain or TLS)
require_redis() {
	store_is_redis || skip "needs a Redis store"
}

# skip the current test unless the suite runs against Redis over TLS
require_tls() {
	[[ $CACHEFENCE_TEST_STORE == tls ]] || skip "needs the tls store"
}

# skip the current test unless the suite runs against the local (file) store
require_file() {
	[[ $CACHEFENCE_TEST_STORE == file ]] || skip "needs the local (file) store"
}

# --- the acl store -----------------------------------------------------------

# the admin of the acl store's servers (rcli, redis_cli_at, replication)
ACL_ADMIN=cfadmin
ACL_ADMIN_PASSWORD="admin secret"
# the password of the acl store's user cf (tests/lib/acl_rules)
ACL_PASSWORD="cf secret"
# The namespaces other than the default that the suites run on the acl
# store use: for each, the man page's rule for more namespaces (~NS:* and
# &NS:*) is added to cf's. A test with a namespace missing here fails on
# the acl store with a line that names the keys.
ACL_NAMESPACES=(myns emptyns bulk bulk2 other otherns app app2 app:sub prom.ns)

# the words of the man page's ACL SETUSER line (tests/lib/acl_rules), one
# per line, the password placeholder as it is (docs.bats compares them)
acl_rule_words() {
	tr -s ' \t' '\n\n' <"$BATS_TEST_DIRNAME/lib/acl_rules" | sed '/^$/d'
}

# set ACL_USER to the redis-server options that make the user cf of the
# man page's line (its rules after "ACL SETUSER cf", as the line "user cf
# RULES..." of redis.conf takes them), with ACL_PASSWORD for PASSWORD, and
# the rules of ACL_NAMESPACES. A server has the user from its start, also
# when a test restarts it under runs that reconnect.
acl_user_options() {
	local words ns
	mapfile -t words < <(acl_rule_words)
	[[ ${words[*]:0:3} == "ACL SETUSER cf" ]] || {
		echo "tests/lib/acl_rules does not start with ACL SETUSER cf" >&2
		return 1
	}
	words=("${words[@]:3}")
	ACL_USER=(--user cf "${words[@]/#>PASSWORD/>$ACL_PASSWORD}")
	for ns in "${ACL_NAMESPACES[@]}"; do
		ACL_USER+=("~$ns:*" "&$ns:*")
	done
}

# the acl store: redis_start, whose server has the admin and cf and no
# default user (see redis_listen); cachefence authenticates as cf through
# CACHEFENCE_PASSWORD and the user in the URL (REDIS_USERINFO)
acl_store_start() {
	redis_start || return 1
	export REDIS_USERINFO=cf@ CACHEFENCE_PASSWORD=$ACL_PASSWORD
	export CACHEFENCE_URL=redis://cf@127.0.0.1:$REDIS_PORT
}

# a URL of the suite's store for a server on loopback PORT (a relay, a
# replica), as the suite's user on the acl store
redis_url() {
	echo "$REDIS_SCHEME://${REDIS_USERINFO:-}127.0.0.1:$1"
}

# --- the local store ---------------------------------------------------------

# point CACHEFENCE_URL at a private directory; exports STORE_DIR (the -u
# directory: the default namespace's files are in $STORE_DIR/cachefence)
file_store_start() {
	export STORE_DIR=$BATS_FILE_TMPDIR/store
	export CACHEFENCE_URL=file://$STORE_DIR
	file_store_unmount
	rm -rf "$STORE_DIR"
}

# remove the store directory: every test starts without one
file_store_flush() {
	file_store_unmount
	[[ ! -e $STORE_DIR ]] || chmod -R u+rwx "$STORE_DIR" 2>/dev/null || true
	rm -rf "$STORE_DIR"
	[[ ! -e $STORE_DIR ]] || { echo "cannot empty $STORE_DIR" >&2; return 1; }
}

file_store_stop() {
	[[ -n ${STORE_DIR:-} ]] || return 0
	file_store_flush
	unset STORE_DIR
}

# unmount whatever a test mounted under bats's temporary directory and left
# mounted (deepest first), so that nothing outlives the suite
file_store_unmount() {
	local m top=${BATS_RUN_TMPDIR:-${BATS_FILE_TMPDIR:-}}
	[[ -n $top ]] || return 0
	while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done < <(awk -v d="$top" 'index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r)
}

# sha256 hex of the user key KEY: the stem of its local store file names
key_hash() {
	printf '%s' "$1" | sha256sum | cut -d' ' -f1
}

# give the local store's entry FILE the checksum of its header as it now
# is, as cachefence would have written it (see entry_header_write): a test
# that edits a header reseals it to reach the checks behind the checksum
reseal_entry() {
	python3 - "$1" <<-'EOF'
		import hashlib, sys
		path = sys.argv[1]
		b = open(path, "rb").read()
		i = b.index(b"\nsum=") + 1
		j = b.index(b"\n", i)
		sum = hashlib.sha256(b[:i]).hexdigest()[:16].encode()
		open(path, "wb").write(b[:i] + b"sum=" + sum + b[j:])
	EOF
}

# flip one bit of byte POS (negative: from the end) of the stored FIELD
# (out or err) of user key KEY's entry, in Redis or in the local store's
# file, as a writer without the signing key could (tests/lib/entry_edit.py)
flip_byte() {
	if store_is_redis; then
		"$BATS_TEST_DIRNAME/lib/entry_edit.py" redis "$REDIS_PORT" "cachefence:{$1}" "$2" "$3"
	else
		"$BATS_TEST_DIRNAME/lib/entry_edit.py" file \
			"$STORE_DIR/cachefence/$(key_hash "$1").entry" "$2" "$3"
	fi
}

# --- the TLS fixture -----------------------------------------------------------

# make the loopback TLS fixture (see tests/lib/tls_fixture.sh for the files)
# in DIR, by default the suite's temporary directory; exports TLS_DIR
tls_fixture() {
	local dir=${1:-$BATS_FILE_TMPDIR/tls}
	command -v openssl >/dev/null || { echo "openssl not found (Debian package openssl)" >&2; return 1; }
	"$BATS_TEST_DIRNAME/lib/tls_fixture.sh" "$dir" ||
		{ echo "could not make the TLS fixture in $dir" >&2; return 1; }
	export TLS_DIR=$dir
}

# the tls store: the fixture, then a TLS-only redis-server trusted through
# CACHEFENCE_TLS_CA_FILE (as a managed Redis would be, by its CA alone)
tls_store_start() {
	tls_fixture || return 1
	redis_start || return 1
	export CACHEFENCE_TLS_CA_FILE=$TLS_DIR/ca.crt
}

# --- the private redis-server ----------------------------------------------

# true if nothing accepts connections on 127.0.0.1:PORT
port_is_free() {
	! (exec 9<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# the names of the Redis keys that match PATTERN (SCAN; on every primary
# of the cluster store)
redis_names() {
	local port
	if [[ $CACHEFENCE_TEST_STORE == cluster ]]; then
		for port in $CLUSTER_PRIMARIES; do
			redis-cli -p "$port" --scan --pattern "$1"
		done | sort
	else
		rcli --scan --pattern "$1" | sort
	fi
}

# the default namespace's counter NAME: the sum over its slots' counters
# (cachefence:{%W}:stats, one hash per slot in use), 0 when unset
stat_value() {
	local name sum=0 v
	while read -r name; do
		v=$(rcli HGET "$name" "$1")
		sum=$((sum + ${v:-0}))
	done < <(redis_names 'cachefence:{%*}:stats')
	echo "$sum"
}

# a loopback port nothing listens on (never 6379)
free_port() {
	local port
	for _ in $(seq 20); do
		port=$((20000 + (RANDOM * 32768 + RANDOM) % 40001))
		port_is_free "$port" && { echo "$port"; return 0; }
	done
	return 1
}

# set REDIS_LISTEN to the redis-server options that make it listen on
# 127.0.0.1:PORT for the suite's store: plain TCP; on the tls store TLS only
# (no plain port) with the fixture's server certificate, client certificates
# not asked for, and replication over TLS. Options given after these win, so
# a test can swap the certificate or ask for client certificates.
redis_listen() {
	REDIS_LISTEN=(--bind 127.0.0.1)
	if [[ $CACHEFENCE_TEST_STORE == tls ]]; then
		REDIS_LISTEN+=(--port 0 --tls-port "$1"
			--tls-cert-file "$TLS_DIR/server.crt" --tls-key-file "$TLS_DIR/server.key"
			--tls-ca-cert-file "$TLS_DIR/ca.crt" --tls-auth-clients no --tls-replication yes)
	else
		REDIS_LISTEN+=(--port "$1")
	fi
	# the acl store: nothing runs as the default user; the admin (rcli)
	# also replicates; cachefence is cf
	if [[ $CACHEFENCE_TEST_STORE == acl ]]; then
		acl_user_options
		REDIS_LISTEN+=(--user default off
			--user "$ACL_ADMIN" on ">$ACL_ADMIN_PASSWORD" '~*' '&*' +@all
			--masteruser "$ACL_ADMIN" --masterauth "$ACL_ADMIN_PASSWORD" "${ACL_USER[@]}")
	fi
}

# redis-cli against the server on loopback PORT, over TLS on the tls store
# (trusting the fixture's CA, showing its client certificate)
redis_cli_at() {
	local port=$1
	shift
	if [[ $CACHEFENCE_TEST_STORE == tls ]]; then
		redis-cli --tls --cacert "$TLS_DIR/ca.crt" --cert "$TLS_DIR/client.crt" \
			--key "$TLS_DIR/client.key" -p "$port" "$@"
	elif [[ $CACHEFENCE_TEST_STORE == cluster ]]; then
		redis-cli -c -p "$port" "$@"
	elif [[ $CACHEFENCE_TEST_STORE == acl ]]; then
		redis-cli --user "$ACL_ADMIN" --pass "$ACL_ADMIN_PASSWORD" --no-auth-warning -p "$port" "$@"
	else
		redis-cli -p "$port" "$@"
	fi
}

# start a redis-server with ARGS on a free loopback port, its log in
# DIR/NAME.log; sets SPAWNED_PORT and SPAWNED_PID once our server (not some
# other one) answers PING. A port found free can be taken before the server
# binds it (other suites run at the same time), so it tries up to 10 ports.
# Call it directly, not in $(...): the server is a job of this shell.
# On the tls store the PING skips verification: a test may have given the
# server a certificate that is bad on purpose.
redis_spawn() {
	local dir=$1 name=$2 port pid _ i insecure=
	shift 2
	[[ $CACHEFENCE_TEST_STORE == tls ]] && insecure=--insecure
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		port=$((20000 + (RANDOM * 32768 + RANDOM) % 40001)) # never 6379
		port_is_free "$port" || continue
		redis_listen "$port"
		redis-server "${REDIS_LISTEN[@]}" --save '' --appendonly no \
			--dir "$dir" --logfile "$dir/$name.log" "$@" \
			</dev/null >/dev/null 2>&1 3>&- &
		pid=$!
		# bounded wait (~5 s)
		for i in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			if [[ $(redis_cli_at "$port" $insecure ping 2>/dev/null) == PONG ]]; then
				SPAWNED_PORT=$port SPAWNED_PID=$pid
				return 0
			fi
			sleep 0.1
		done
		# the server may be gone already (a port taken under it): under
		# bats's errexit a failing kill would end the retries here
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	echo "could not start redis-server; its log:" >&2
	cat "$dir/$name.log" >&2 2>/dev/null
	return 1
}

# start redis-server on a free loopback port; exports REDIS_PORT (the TLS
# port on the tls store), REDIS_PID, REDIS_SOCK (empty when the path would be
# too long; a plain unix socket on every store) and CACHEFENCE_URL
redis_start() {
	command -v redis-server >/dev/null || { echo "redis-server not found" >&2; return 1; }
	local dir=$BATS_FILE_TMPDIR sock=
	(( ${#dir} < 90 )) && sock=$dir/redis.sock
	redis_spawn "$dir" redis --pidfile "$dir/redis.pid" \
		${sock:+--unixsocket "$sock" --unixsocketperm 700} || return 1
	export REDIS_PORT=$SPAWNED_PORT REDIS_PID=$SPAWNED_PID REDIS_SOCK=$sock
	export CACHEFENCE_URL=$REDIS_SCHEME://127.0.0.1:$SPAWNED_PORT
	redis_watchdog "$BASHPID" "$SPAWNED_PID"
}

# kill redis-server PID if bats (OWNER) dies before teardown_file runs
redis_watchdog() {
	local owner=$1 pid=$2
	(
		while kill -0 "$owner" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do
			sleep 1
		done
		kill -KILL "$pid" 2>/dev/null
	) </dev/null >/dev/null 2>&1 3>&- &
	export REDIS_WATCHDOG=$!
}

# true while process PID runs (a zombie does not count)
proc_alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != Z ]]
}

# true while the suite's redis-server runs
redis_alive() {
	proc_alive "$REDIS_PID"
}

# stop the suite's redis-server at once (SHUTDOWN NOSAVE, then SIGTERM, then
# SIGKILL): every connection breaks and, without persistence, every key is
# gone (faults.bats, survive.bats)
redis_down() {
	local sig i
	kill -CONT "$REDIS_PID" 2>/dev/null
	rcli SHUTDOWN NOSAVE >/dev/null 2>&1
	for sig in TERM KILL; do
		for i in $(seq 50); do
			redis_alive || return 0
			sleep 0.02
		done
		kill "-$sig" "$REDIS_PID" 2>/dev/null
	done
	for i in $(seq 250); do
		redis_alive || return 0
		sleep 0.02
	done
	echo "redis-server $REDIS_PID would not stop" >&2
	return 1
}

# start a new redis-server on the suite's port with the suite's options
# (TLS on the tls store), watched like the first
redis_up() {
	local dir=$BATS_FILE_TMPDIR sock= i
	((${#dir} < 90)) && sock=$dir/redis.sock
	for i in $(seq 250); do
		port_is_free "$REDIS_PORT" && break
		sleep 0.02
	done
	redis_listen "$REDIS_PORT"
	redis-server "${REDIS_LISTEN[@]}" --save '' --appendonly no \
		--dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
		${sock:+--unixsocket "$sock" --unixsocketperm 700} \
		</dev/null >/dev/null 2>&1 3>&- &
	REDIS_PID=$!
	echo "$REDIS_PID" >"$dir/redis.pid"
	redis_watchdog "$(<"$dir/owner")" "$REDIS_PID"
	for i in $(seq 500); do
		[[ $(rcli PING 2>/dev/null) == PONG ]] && return 0
		redis_alive || break
		sleep 0.02
	done
	echo "could not start redis-server again on port $REDIS_PORT; its log:" >&2
	tail -20 "$dir/redis.log" >&2
	return 1
}

# stop the server: SHUTDOWN NOSAVE, then SIGTERM, then SIGKILL
redis_stop() {
	[[ -n ${REDIS_PID:-} ]] || return 0
	redis_down || return 1
	wait "$REDIS_PID" 2>/dev/null
	[[ -n ${REDIS_WATCHDOG:-} ]] && kill "$REDIS_WATCHDOG" 2>/dev/null
	unset REDIS_PID
	return 0
}

# redis-cli against the suite's server (over TLS on the tls store; the
# current primary on the sentinel store)
rcli() {
	if [[ $CACHEFENCE_TEST_STORE == sentinel ]]; then
		local port
		port=$(sentinel_primary) || return 1
		redis_cli_at "$port" "$@"
	else
		redis_cli_at "$REDIS_PORT" "$@"
	fi
}

# --- per test ----------------------------------------------------------------

# empty the store, cd into a fresh scratch directory ($SCRATCH)
common_setup() {
	[[ -x $CACHEFENCE_BIN ]] || { echo "no binary at $CACHEFENCE_BIN" >&2; return 1; }
	store_flush
	SCRATCH=$BATS_TEST_TMPDIR/scratch
	mkdir -p "$SCRATCH"
	cd "$SCRATCH" || return
}

# --- file systems of a test's own --------------------------------------------------

# mount a tmpfs with OPTIONS on DIR (created 0700 if missing), or skip the
# test when this sandbox does not allow it; common_teardown unmounts it
mount_tmpfs() {
	local dir=$1 opts=$2 why
	mkdir -p -m 700 "$dir"
	if ! why=$(mount -t tmpfs -o "$opts" tmpfs "$dir" 2>&1); then
		skip "cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): $why"
	fi
	echo "$dir" >>"$BATS_TEST_TMPDIR/mounts"
}

# remount DIR (from mount_tmpfs) read-only
remount_ro() {
	mount -o remount,ro "$1"
}

# unmount what mount_tmpfs mounted, last first
unmount_all() {
	local m
	[[ -f $BATS_TEST_TMPDIR/mounts ]] || return 0
	while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done < <(tac "$BATS_TEST_TMPDIR/mounts")
	rm -f "$BATS_TEST_TMPDIR/mounts"
}

# kill what the test started in the background and may have left running:
# the pids in *.pid and *.runs, if they still run in the scratch directory;
# unmount what it mounted
common_teardown() {
	unmount_all
	[[ -n ${REDIS_PID:-} ]] && kill -CONT "$REDIS_PID" 2>/dev/null
	local f pid
	for f in "$SCRATCH"/*.pid "$SCRATCH"/*.runs; do
		[[ -f $f ]] || continue
		while read -r pid; do
			[[ $pid =~ ^[0-9]+$ && $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$SCRATCH" ]] &&
				kill -KILL "$pid" 2>/dev/null
		done <"$f"
	done
	return 0
}

# --- running cachefence --------------------------------------------------------

# cachefence ARGS..., killed (status 137) if it runs longer than CF_TIMEOUT
cf() {
	timeout -s KILL "$CF_TIMEOUT" "$CACHEFENCE_BIN" "$@"
}

# cf ARGS... with stdout in NAME.out, stderr in NAME.err; sets $status
cf_to() {
	local name=$1
	shift
	status=0
	cf "$@" >"$name.out" 2>"$name.err" || status=$?
}

# start cachefence ARGS... in the background: its pid goes to NAME.pid,
# stdout to NAME.out, stderr to NAME.err and, when it ends, its status to
# NAME.status (read it with bg_status NAME). Like every asynchronous command
# of a non-interactive shell, it starts with SIGINT and SIGQUIT ignored.
cf_bg() {
	local name=$1
	shift
	(
		[[ -e $SCRATCH/gate ]] && flock -s -w 60 "$SCRATCH/gate" true
		"$CACHEFENCE_BIN" "$@" >"$name.out" 2>"$name.err" &
		# renamed into place: bg_pid must never read an empty file
		echo $! >"$name.pid.tmp"
		mv "$name.pid.tmp" "$name.pid"
		st=0
		wait $! || st=$? # bats runs tests under set -e
		echo $st >"$name.status.tmp"
		mv "$name.status.tmp" "$name.status"
	) </dev/null 3>&- 8>&- &
}

# pid of background job NAME (waits up to 10 s for it to start)
bg_pid() {
	wait_for_file "$1.pid" 10 && cat "$1.pid"
}

# hold the cf_bg jobs started from now on at a gate, so they start together
gate_close() {
	exec 8>"$SCRATCH/gate"
	flock -x 8
}

# let the jobs held at the gate go
gate_open() {
	flock -u 8
	exec 8>&-
}

# wait up to SECONDS (default 60) for background job NAME to end; print its status
bg_status() {
	wait_for_file "$1.status" "${2:-60}" || { echo "$1 still running" >&2; return 1; }
	cat "$1.status"
}

# --- commands for cachefence to run -------------------------------------------------

# counter_cmd NAME [BODY]: write an executable sh script ./NAME that appends
# its pid to NAME.runs each time it runs, sets $n to its run number (1, 2,
# ...; meaningful for runs that do not overlap), then runs BODY (default:
# print "NAME ran"). Prints the script's path.
counter_cmd() {
	local name=$1 body=${2:-"echo \"$1 ran\""}
	cat >"$SCRATCH/$name" <<-EOF
		#!/bin/sh
		echo \$\$ >>"$SCRATCH/$name.runs"
		n=\$(wc -l <"$SCRATCH/$name.runs")
		n=\$((n))
		$body
	EOF
	chmod +x "$SCRATCH/$name"
	echo "$SCRATCH/$name"
}

# how many times the counter_cmd NAME ran
runs() {
	local n=0
	[[ -f $SCRATCH/$1.runs ]] && n=$(wc -l <"$SCRATCH/$1.runs")
	echo $((n))
}

# sh code that waits (at most 60 s) until file FILE exists: lets a test hold
# COMMAND mid-run and then release it with `touch FILE`
hold_until() {
	echo "i=0; while [ ! -e '$1' ] && [ \$i -lt 600 ]; do sleep 0.1; i=\$((i+1)); done"
}

# --- waiting and asserting -------------------------------------------------------------

# wait up to SECONDS (default 30) until FILE exists; 1 on timeout
wait_for_file() {
	local i
	for ((i = 0; i < ${2:-30} * 10; i++)); do
		[[ -e $1 ]] && return 0
		sleep 0.1
	done
	return 1
}

# wait up to SECONDS (default 30) until FILE contains the fixed string TEXT
wait_for_text() {
	local i
	for ((i = 0; i < ${3:-30} * 10; i++)); do
		grep -qF -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# fail unless the integer ACTUAL equals EXPECTED, saying WHAT was counted
assert_eq() {
	[[ $1 == "$2" ]] && return 0
	echo "${3:-value}: expected '$2', got '$1'" >&2
	return 1
}

# fail unless the last cf_to/run status is EXPECTED; shows NAME.err if given
assert_status() {
	[[ $status == "$1" ]] && return 0
	echo "exit status: expected $1, got $status" >&2
	[[ -n ${2:-} && -f $2.err ]] && { echo "stderr was:" >&2; cat "$2.err" >&2; }
	return 1
}

# fail unless FILE holds exactly the bytes printf '%b' TEXT gives
assert_bytes() {
	local file=$1
	printf '%b' "$2" >"$file.expected"
	cmp -s "$file" "$file.expected" && return 0
	echo "$file: expected bytes:" >&2
	od -c "$file.expected" | head -20 >&2
	echo "got:" >&2
	od -c "$file" | head -20 >&2
	return 1
}

# wait up to SECONDS (default 30) until counter NAME is at least N
wait_for_stat() {
	local i
	for ((i = 0; i < ${3:-30} * 10; i++)); do
		(($(stat_value "$1") >= $2)) && return 0
		sleep 0.1
	done
	echo "counter $1 stayed at $(stat_value "$1"), below $2" >&2
	return 1
}

# the connections the server on loopback PORT has taken so far (this
# reading is one of them; REDISCLI_AUTH, if set, is its password)
connections_taken() {
	redis-cli -p "$1" INFO stats | tr -d '\r' | sed -n 's/^total_connections_received://p'
}

# fail unless, between two readings of "PORT COUNT" lines (files BEFORE and
# AFTER, from connections_taken), the server on port TARGET took exactly
# one connection besides the reading and every other server none
assert_one_connection_to() {
	local port c0 c1 want
	while read -r port c0 c1; do
		want=0
		[[ $port == "$3" ]] && want=1
		assert_eq $((c1 - c0 - 1)) "$want" "connections made to the server on port $port" ||
			return 1
	done < <(join "$1" "$2")
}

# fail unless the number A is at most B; WHAT names it in the message
assert_le() {
	(($1 <= $2)) && return 0
	echo "$3: expected at most $2, got $1" >&2
	return 1
}

# fail unless the last cf_to status is 125, stdout is empty and stderr (NAME.err)
# is one line starting "cachefence: "
assert_usage_error() {
	assert_status 125 "$1"
	assert_empty "$1.out"
	assert_one_line "$1.err"
}

# fail unless FILE is empty or one line starting "cachefence: "
assert_at_most_one_line() {
	[[ ! -s $1 ]] || assert_one_line "$1"
}

# fail unless FILE is empty
assert_empty() {
	[[ ! -s $1 ]] && return 0
	echo "$1: expected empty, got:" >&2
	head -c 2000 "$1" >&2
	return 1
}

# fail unless FILE is exactly one line starting with PREFIX (default "cachefence: ")
assert_one_line() {
	local file=$1 prefix=${2:-"cachefence: "} lines
	lines=$(awk 'END { print NR }' "$file")
	if [[ $lines == 1 && $(head -c "${#prefix}" "$file") == "$prefix" ]]; then
		return 0
	fi
	echo "$file: expected one line starting '$prefix', got $lines line(s):" >&2
	head -c 2000 "$file" >&2
	return 1
}
