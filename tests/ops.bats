#!/usr/bin/env bats
# The operator subcommands against a real store: get, inspect, list,
# invalidate (keys, --match, --tag), stats (text, JSON, Prometheus) and ping;
# their exit statuses (0 / 1 / 125) and output; keys holding any bytes but
# NUL; namespaces kept apart; 10,000 entries walked without KEYS.
# JSON is parsed with jq, never matched as text.

load lib/common

setup_file() {
	store_start
	command -v jq >/dev/null || { echo "jq not found (Debian package jq)" >&2; return 1; }
}
teardown_file() { store_stop; }
setup() { common_setup; }
teardown() {
	# undo the password test, whatever happened in it
	if store_is_redis && [[ -n ${REDIS_PORT:-} ]]; then
		REDISCLI_AUTH=s3cret rcli CONFIG SET requirepass '' >/dev/null 2>&1
	fi
	[[ -n ${SCRATCH:-} ]] && touch "$SCRATCH/stop" "$SCRATCH/release" 2>/dev/null
	common_teardown
}

# the store server's clock, in milliseconds
server_ms() {
	local t
	mapfile -t t < <(rcli TIME)
	echo $((t[0] * 1000 + t[1] / 1000))
}

# the counters every stats output names, in their order
STATS=(hits misses stale_served early_refreshes background_refreshes waits
	lock_takeovers fail_open_runs stores_skipped_too_large stores_skipped_lost_lock
	stores_failed lock_takeovers_holder_gone refreshes_failed entries_not_authentic)

# the fields of inspect --json, sorted
INSPECT_FIELDS='["age_ms","command","compression","compute_ms","created_at","exit_status","host","key","lock","signed","size","stale_ms","state","stored_size","ttl_ms"]'

# fail unless FILE is exactly one JSON object on one line
assert_json_object() {
	local n
	n=$(jq -s 'length' "$1") || { echo "$1 is not JSON:" >&2; head -c 2000 "$1" >&2; return 1; }
	assert_eq "$n" 1 "JSON values in $1" || return
	assert_eq "$(jq -r 'type' "$1")" object "type of the JSON in $1" || return
	assert_eq "$(awk 'END { print NR }' "$1")" 1 "lines of $1"
}

# fail unless every line of FILE is one JSON object, and (if given) there
# are N lines
assert_json_lines() {
	local types
	types=$(jq -R 'fromjson | type' "$1") ||
		{ echo "$1: a line is not one JSON value:" >&2; head -c 2000 "$1" >&2; return 1; }
	[[ -z $(grep -v '^"object"$' <<<"$types") ]] ||
		{ echo "$1: a line is not a JSON object:" >&2; head -c 2000 "$1" >&2; return 1; }
	[[ -z ${2:-} ]] || assert_eq "$(awk 'END { print NR }' "$1")" "$2" "lines of $1"
}

# fail unless FILE holds exactly the bytes of the string S
assert_same() {
	printf '%s' "$2" >"$1.want"
	cmp -s "$1" "$1.want" && return 0
	echo "$1: expected bytes:" >&2
	od -c "$1.want" | head -20 >&2
	echo "got:" >&2
	od -c "$1" | head -20 >&2
	return 1
}

# the value of counter NAME in the JSON stats of namespace NS (default: the default)
counter_of() {
	cf ${2:+-n "$2"} stats --json | jq -r --arg n "$1" '.[$n]'
}

# fail unless the stats of namespace NS ("" for the default) are exactly
# NAME=VALUE... and zero for every counter not named
assert_stats() {
	local ns=$1 want name v ok=0
	shift
	cf ${ns:+-n "$ns"} stats --json >stats.json || { echo "stats failed" >&2; return 1; }
	assert_json_object stats.json || return
	assert_eq "$(jq -c 'keys_unsorted' stats.json)" \
		"$(printf '%s\n' "${STATS[@]}" | jq -R . | jq -sc .)" "stats fields" || return
	for name in "${STATS[@]}"; do
		want=0
		for v in "$@"; do
			[[ ${v%%=*} == "$name" ]] && want=${v#*=}
		done
		assert_eq "$(jq -r --arg n "$name" '.[$n]' stats.json)" "$want" \
			"${ns:-default} namespace: $name" || ok=1
	done
	return $ok
}

# the keys of a list --json output FILE, sorted, one per line
list_keys() {
	jq -r '.key' "$1" | LC_ALL=C sort
}

# cachefence ARGS... as if on another host named otherhost: a separate
# process with the same URL and, where the kernel lets us, its own hostname
cf_other_host() {
	if unshare -u true 2>/dev/null; then
		timeout -s KILL "$CF_TIMEOUT" unshare -u sh -c 'hostname otherhost && exec "$@"' sh \
			"$CACHEFENCE_BIN" "$@"
	else
		cf "$@"
	fi
}

# Write N entries bulk-00001... (and, with EXPIRED, that many long-expired
# ones expired-1...) straight into namespace NS of the store, in the
# documented layout: fresh for an hour, stdout "out", host "crafted".
bulk_entries() {
	local ns=$1 n=$2 expired=${3:-0}
	case $CACHEFENCE_TEST_STORE in
	redis | tls | acl)
		rcli EVAL "
			local ns, n, now, old = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
			local function put(name, ct)
				redis.call('HSET', name, 'v', '1', 'st', '0', 'ct', ct, 'ttl', '3600000',
					'sw', '0', 'se', '0', 'dt', '5', 'olen', '3', 'elen', '0',
					'host', 'crafted', 'out', 'out', 'err', '')
			end
			for i = 1, n do
				local name = ns .. ':{' .. string.format('bulk-%05d', i) .. '}'
				put(name, now)
				redis.call('PEXPIRE', name, 3600000)
			end
			-- past every window but not yet evicted: never listed
			for i = 1, old do put(ns .. ':{expired-' .. i .. '}', tostring(tonumber(now) - 7200000)) end
			return n" 0 "$ns" "$n" "$(server_ms)" "$expired" >/dev/null
		;;
	cluster)
		# the same entries, each sent to the primary of its slot (CRC16 of
		# its brace tag, as Redis hashes) through redis-cli --pipe
		rcli CLUSTER SLOTS >slots.txt
		python3 - "$ns" "$n" "$expired" "$(server_ms)" "$PWD" <<-'EOF'
			import binascii, sys
			ns, n, old, now, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
			lines = open(d + "/slots.txt").read().split()
			# redis-cli's flat print: start, end, host, port, id, [replicas...]
			ranges, i = [], 0
			while i + 3 < len(lines):
			    if lines[i].isdigit() and lines[i + 1].isdigit() and lines[i + 3].isdigit():
			        ranges.append((int(lines[i]), int(lines[i + 1]), int(lines[i + 3])))
			        i += 4
			    else:
			        i += 1
			def port_of(tag):
			    s = binascii.crc_hqx(tag.encode(), 0) % 16384
			    return next(p for a, b, p in ranges if a <= s <= b)
			def resp(*args):
			    out = b"*%d\r\n" % len(args)
			    for a in args:
			        a = a.encode() if isinstance(a, str) else a
			        out += b"$%d\r\n%s\r\n" % (len(a), a)
			    return out
			files = {}
			def put(tag, ct, ttl=True):
			    name = "%s:{%s}" % (ns, tag)
			    port = port_of(tag)
			    if port not in files:
			        files[port] = open("%s/bulk.%d" % (d, port), "wb")
			    f = files[port]
			    f.write(resp("HSET", name, "v", "1", "st", "0", "ct", str(ct), "ttl", "3600000",
			                 "sw", "0", "se", "0", "dt", "5", "olen", "3", "elen", "0",
			                 "host", "crafted", "out", "out", "err", ""))
			    if ttl:
			        f.write(resp("PEXPIRE", name, "3600000"))
			for i in range(1, n + 1):
			    put("bulk-%05d" % i, now)
			for i in range(1, old + 1):
			    put("expired-%d" % i, now - 7200000, False)
			for f in files.values():
			    f.close()
			open(d + "/bulk.ports", "w").write("".join("%d\n" % p for p in files))
		EOF
		local port
		while read -r port; do
			redis-cli -p "$port" --pipe <"bulk.$port" >/dev/null || return 1
		done <bulk.ports
		;;
	file)
		# the namespace directory, created by cachefence as it likes it
		cf -n "$ns" ping >/dev/null || return
		python3 - "$STORE_DIR/$ns" "$n" "$expired" <<-'EOF'
			import hashlib, os, sys, time
			d, n, old = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
			now = int(time.time() * 1000)
			def put(key, ct):
			    k = key.encode()
			    head = (b"cachefence-entry\nv=1\nst=0\nct=%d\nttl=3600000\nsw=0\nse=0\n"
			            b"dt=5\nolen=3\nelen=0\nhost=crafted\n" % ct)
			    sum = hashlib.sha256(head).hexdigest()[:16].encode()
			    body = head + b"sum=" + sum + b"\n\nout" + k
			    fd = os.open(os.path.join(d, hashlib.sha256(k).hexdigest() + ".entry"),
			                 os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
			    os.write(fd, body)
			    os.close(fd)
			for i in range(1, n + 1):
			    put("bulk-%05d" % i, now)
			for i in range(1, old + 1):
			    put("expired-%d" % i, now - 7200000)
		EOF
		;;
	esac
}

# how many times Redis ran COMMAND so far (0 when it never did)
redis_calls() {
	local line
	line=$(rcli INFO commandstats | tr -d '\r' | grep "^cmdstat_$1:") || { echo 0; return; }
	line=${line#*calls=}
	echo "${line%%,*}"
}

# --- get ------------------------------------------------------------------------

@test "get prints the stored stdout and exits 0, or prints nothing and exits 1 when there is no entry" {
	cf_to store -t 1m -k present -- printf 'line one\nno final newline'
	assert_status 0 store

	cf_to got get present
	assert_status 0 got
	assert_bytes got.out 'line one\nno final newline'
	assert_empty got.err

	cf_to fresh get --fresh present
	assert_status 0 fresh
	assert_bytes fresh.out 'line one\nno final newline'

	cf_to absent get never-stored
	assert_status 1 absent
	assert_empty absent.out
	assert_empty absent.err
	cf_to absentf get --fresh never-stored
	assert_status 1 absentf
	assert_empty absentf.out
}

@test "get prints a stale entry but get --fresh exits 1 for it; get never prints stored stderr" {
	cf_to store -t 300ms -s 1m -k aging -- printf 'old bytes'
	assert_status 0 store
	for _ in $(seq 100); do
		cf_to fresh get --fresh aging
		[[ $status == 1 ]] && break
		sleep 0.1
	done
	assert_status 1 fresh
	assert_empty fresh.out
	assert_empty fresh.err

	cf_to stale get aging
	assert_status 0 stale
	assert_bytes stale.out 'old bytes'

	cf_to both --cache-stderr -t 1m -k both -- sh -c 'printf out; printf err >&2'
	assert_status 0 both
	cf_to gotboth get both
	assert_status 0 gotboth
	assert_bytes gotboth.out 'out'
	assert_empty gotboth.err

	# a stored failure is an entry: get exits 0 with its stdout
	cf_to failed --cache-failures -t 1m -k failed -- sh -c 'printf broken; exit 3'
	assert_status 3 failed
	cf_to gotfailed get failed
	assert_status 0 gotfailed
	assert_bytes gotfailed.out 'broken'
}

# --- usage errors and unreachable stores ------------------------------------------------

@test "every operator subcommand called wrongly exits 125 with one line on stderr and nothing on stdout" {
	i=0
	while IFS= read -r line; do
		eval "args=($line)"
		i=$((i + 1))
		cf_to "bad$i" "${args[@]}"
		assert_usage_error "bad$i" || { echo "for: cachefence $line" >&2; false; }
	done <<-'EOF'
		get
		get one two
		get ''
		inspect
		inspect one two
		inspect --json ''
		list one two
		invalidate
		invalidate --match 'x*' key
		invalidate --match 'x*' --tag t
		invalidate --tag t key
		invalidate --match ''
		invalidate --tag 'two words'
		invalidate ''
		stats --json --prometheus
		stats extra
		ping extra
		get --json key
		list --prometheus
		inspect --reset key
	EOF
}

@test "every operator subcommand exits 125 with one line when the Redis store is unreachable" {
	port=$(free_port)
	for sub in "ping" "get k" "get --fresh k" "inspect k" "inspect --json k" "list" "list --json" \
		"invalidate k" "invalidate --match *" "invalidate --tag t" "stats" "stats --json" \
		"stats --prometheus" "stats --reset"; do
		read -ra args <<<"$sub"
		cf_to down -u "$REDIS_SCHEME://127.0.0.1:$port" --redis-timeout 2s "${args[@]}"
		assert_usage_error down || { echo "for: cachefence $sub" >&2; false; }
	done
}

@test "every operator subcommand exits 125 with one line when the local store's directory is unusable" {
	printf 'not a directory' >notadir
	mkdir -p shared && chmod 777 shared
	for url in "file://$SCRATCH/notadir" "file://$SCRATCH/shared"; do
		for sub in "ping" "get k" "inspect k" "inspect --json k" "list" "list --json" \
			"invalidate k" "invalidate --match *" "invalidate --tag t" "stats" "stats --prometheus"; do
			read -ra args <<<"$sub"
			cf_to bad -u "$url" "${args[@]}"
			assert_usage_error bad || { echo "for: cachefence -u $url $sub" >&2; false; }
		done
	done
}

# --- ping -------------------------------------------------------------------------------

@test "ping exits 0 with one line naming the store, and 125 with one line for a store that is down" {
	cf_to ping ping
	assert_status 0 ping ping
	assert_empty ping.err
	case $CACHEFENCE_TEST_STORE in
	cluster)
		# a line for the cluster, then one for each primary: all slots served
		assert_eq "$(awk 'END { print NR }' ping.out)" 4 "lines of ping"
		grep -qE '^redis://.*: Redis Cluster of 3 primaries' ping.out
		for port in $CLUSTER_PRIMARIES; do
			grep -qE "^  127\.0\.0\.1:$port: Redis [0-9]+\.[0-9.]+, [0-9]+ slots .*scripts loaded, round trip" ping.out
		done
		assert_eq "$(sed -n 's/.*, \([0-9]*\) slots (.*/\1/p' ping.out | awk '{ n += $1 } END { print n }')" 16384 "slots served"
		;;
	*) assert_eq "$(awk 'END { print NR }' ping.out)" 1 "lines of ping" ;;
	esac
	case $CACHEFENCE_TEST_STORE in
	redis | tls | acl)
		grep -qF "$(redis_url "$REDIS_PORT")" ping.out
		grep -qE 'Redis [0-9]+\.[0-9]+' ping.out
		;;
	file)
		grep -qF "$STORE_DIR" ping.out
		grep -qi 'local' ping.out
		;;
	esac

	port=$(free_port)
	cf_to down -u "$REDIS_SCHEME://127.0.0.1:$port" ping
	assert_usage_error down
	grep -qF "$port" down.err || { cat down.err >&2; false; }
}

@test "a wrong Redis password is a 125 with one line that says what was wrong, for every subcommand" {
	require_redis
	require_standalone # a password is set per node
	require_default_user
	rcli CONFIG SET requirepass s3cret >/dev/null

	for sub in "ping" "get k" "inspect k" "list" "invalidate k" "invalidate --tag t" "stats"; do
		read -ra args <<<"$sub"
		CACHEFENCE_PASSWORD=wrongpw cf_to wrong "${args[@]}"
		assert_usage_error wrong || { echo "for: cachefence $sub" >&2; false; }
		! grep -q wrongpw wrong.err || { echo "the password was echoed" >&2; false; }
		cf_to inurl -u "$REDIS_SCHEME://:wrongpw@127.0.0.1:$REDIS_PORT" "${args[@]}"
		assert_usage_error inurl || { echo "for: cachefence -u $REDIS_SCHEME://:***@... $sub" >&2; false; }
		! grep -q wrongpw inurl.err || { echo "the password was echoed" >&2; false; }
		cf_to none "${args[@]}"
		assert_usage_error none || { echo "for: cachefence $sub without a password" >&2; false; }
	done
	# the line names the cause, not only the remedy
	grep -qiE 'wrongpass|invalid|denied|auth' wrong.err ||
		{ echo "the message does not say what was wrong: $(cat wrong.err)" >&2; false; }

	CACHEFENCE_PASSWORD=s3cret cf_to right ping
	assert_status 0 right right
	cf_to righturl -u "$REDIS_SCHEME://:s3cret@127.0.0.1:$REDIS_PORT" ping
	assert_status 0 righturl righturl
	! grep -q s3cret righturl.out || { echo "ping printed the password: $(cat righturl.out)" >&2; false; }

	REDISCLI_AUTH=s3cret rcli CONFIG SET requirepass '' >/dev/null
}

# --- inspect ------------------------------------------------------------------------------

@test "inspect --json gives one object with every documented field for a fresh entry, and exits 0" {
	cf_to store -t 1m -s 30s --stale-if-error 10s -k ins -- sh -c 'printf hello; printf oops >&2'
	assert_status 0 store

	cf_to js inspect --json ins
	assert_status 0 js js
	assert_empty js.err
	assert_json_object js.out
	assert_eq "$(jq -c 'keys' js.out)" "$INSPECT_FIELDS" "fields of inspect --json"
	assert_eq "$(jq -r .key js.out)" ins "key"
	assert_eq "$(jq -r .state js.out)" fresh "state"
	assert_eq "$(jq -r .size js.out)" 5 "size (stderr not stored)"
	assert_eq "$(jq -r .exit_status js.out)" 0 "exit_status"
	assert_eq "$(jq -r .stale_ms js.out)" 30000 "stale_ms (the longer of the stale and stale-if-error windows)"
	assert_eq "$(jq -r .host js.out)" "$(hostname)" "host"
	assert_eq "$(jq -c .lock js.out)" null "lock"
	jq -e '(.age_ms | type == "number") and .age_ms >= 0 and .age_ms < 60000' js.out >/dev/null
	jq -e '.ttl_ms > 0 and .ttl_ms <= 60000 and (.ttl_ms + .age_ms - 60000 | fabs) <= 1' js.out >/dev/null
	jq -e '(.compute_ms | type == "number") and .compute_ms >= 0' js.out >/dev/null
	jq -e '.created_at | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$")' js.out >/dev/null
	# created_at is now, give or take a minute
	created=$(jq -r '.created_at | sub("\\.[0-9]+Z$"; "Z") | fromdateiso8601' js.out)
	(((created - $(date +%s)) ** 2 < 3600)) || { echo "created_at $(jq -r .created_at js.out) is not now" >&2; false; }

	# a stored failure reports its status
	cf_to fail --cache-failures -t 1m -k failing -- sh -c 'printf no; exit 3'
	assert_status 3 fail
	cf_to failjs inspect --json failing
	assert_status 0 failjs
	assert_eq "$(jq -r .exit_status failjs.out)" 3 "exit_status of a stored failure"
	assert_eq "$(jq -r .size failjs.out)" 2 "size of a stored failure"
}

@test "inspect prints the entry as text: one labelled line per field, and exits 0" {
	cf_to store -t 1m -k ins -- printf hello
	cf_to txt inspect ins
	assert_status 0 txt txt
	assert_empty txt.err
	assert_eq "$(awk 'END { print NR }' txt.out)" 12 "lines of inspect"
	grep -qx 'key: *ins' txt.out
	grep -qx 'state: *fresh' txt.out
	grep -qE '^age: *[0-9.]+(ms|s)$' txt.out
	grep -qE '^ttl left: *(59\.[0-9]s|1m00s)$' txt.out
	grep -qx 'stale left: *0ms' txt.out
	grep -qx 'size: *5 bytes' txt.out
	grep -qx 'exit status: *0' txt.out
	grep -qE '^compute: *[0-9.]+(ms|s)$' txt.out
	grep -qE '^created at: *[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{3}Z$' txt.out
	grep -qx "host: *$(hostname)" txt.out
	grep -qx 'command: *printf hello' txt.out
	grep -qx 'lock: *none' txt.out
}

@test "inspect of an absent key exits 1 with state absent, in text and in JSON with null fields" {
	cf_to txt inspect nothing-here
	assert_status 1 txt
	assert_empty txt.err
	grep -qx 'key: *nothing-here' txt.out
	grep -qx 'state: *absent' txt.out
	grep -qx 'lock: *none' txt.out

	cf_to js inspect --json nothing-here
	assert_status 1 js
	assert_empty js.err
	assert_json_object js.out
	assert_eq "$(jq -c 'keys' js.out)" "$INSPECT_FIELDS" "fields of inspect --json"
	assert_eq "$(jq -r .state js.out)" absent "state"
	assert_eq "$(jq -r .key js.out)" nothing-here "key"
	assert_eq "$(jq -c '[.age_ms, .ttl_ms, .stale_ms, .size, .exit_status, .compute_ms, .created_at, .host, .command, .lock]' js.out)" \
		'[null,null,null,null,null,null,null,null,null,null]' "fields of an absent entry"
}

@test "inspect shows a key whose leader is running as locked, with the holder and its lease" {
	cmd=$(counter_cmd slow "$(hold_until "$SCRATCH/release"); echo done")
	cf_bg lead --lock-lease 10s -t 1m -k busy -- "$cmd"
	wait_for_file slow.runs 30
	pid=$(bg_pid lead)

	cf_to js inspect --json busy
	assert_status 0 js js
	assert_json_object js.out
	assert_eq "$(jq -r .state js.out)" locked "state"
	jq -e --arg pid "$pid" '.lock.holder | test("^[0-9a-f]{32} host=.+ pid=" + $pid + "( cid=[0-9]+ run=[0-9a-f-]+)?$")' js.out >/dev/null ||
		{ echo "holder: $(jq -c .lock js.out), leader pid $pid" >&2; false; }
	case $CACHEFENCE_TEST_STORE in
	redis | tls | acl) jq -e '.lock.lease_ms > 0 and .lock.lease_ms <= 10000' js.out >/dev/null ;;
	file) assert_eq "$(jq -c .lock.lease_ms js.out)" null "lease of a kernel lock" ;;
	esac

	cf_to txt inspect busy
	assert_status 0 txt
	grep -qx 'state: *locked' txt.out
	grep -qE "^lock: *[0-9a-f]{32} host=.+ pid=$pid" txt.out

	touch release
	assert_eq "$(bg_status lead)" 0 "status of the leader"
	cf_to after inspect --json busy
	assert_status 0 after
	assert_eq "$(jq -r .state after.out)" fresh "state after the leader stored"
	assert_eq "$(jq -c .lock after.out)" null "lock after the leader stored"
}

@test "inspect shows an entry past its TTL as stale, with no TTL left and the stale window left" {
	cf_to store -t 300ms -s 1m -k aging -- printf old
	for _ in $(seq 100); do
		cf_to js inspect --json aging
		[[ $(jq -r .state js.out) == stale ]] && break
		sleep 0.1
	done
	assert_status 0 js
	assert_eq "$(jq -r .state js.out)" stale "state"
	assert_eq "$(jq -r .ttl_ms js.out)" 0 "ttl_ms"
	jq -e '.stale_ms > 0 and .stale_ms <= 60000 and .age_ms >= 300' js.out >/dev/null ||
		{ echo "got $(cat js.out)" >&2; false; }
	cf_to txt inspect aging
	grep -qx 'state: *stale' txt.out
	grep -qx 'ttl left: *0ms' txt.out
}

# --- list ---------------------------------------------------------------------------------

@test "list prints one line per live entry: key, state, age, ttl, size and command, tab separated" {
	for k in alpha beta gamma; do
		cf_to "s-$k" -t 1m -k "$k" -- printf "%s-value" "$k"
	done
	cf_to s-old -t 300ms -s 1m -k old -- printf 'aged'
	cf_to s-gone -t 200ms -k gone -- printf 'expires'
	for _ in $(seq 100); do
		[[ $(cf inspect --json old | jq -r .state) == stale && $(cf inspect --json gone | jq -r .state) == absent ]] && break
		sleep 0.1
	done

	cf_to txt list
	assert_status 0 txt txt
	assert_empty txt.err
	assert_eq "$(awk 'END { print NR }' txt.out)" 4 "lines of list"
	assert_eq "$(cut -f1 txt.out | sort | tr '\n' ' ')" "alpha beta gamma old " "keys listed"
	awk -F'\t' 'NF != 6 { print "not 6 fields: " $0; bad = 1 } END { exit bad }' txt.out >&2
	dur='[0-9]+(ms|\.[0-9]s|m[0-9]{2}s|h[0-9]{2}m|d[0-9]{2}h)'
	grep -qE "^alpha	fresh	$dur	$dur	11	printf %s-value alpha$" txt.out
	grep -qE "^gamma	fresh	$dur	(5[0-9]\.[0-9]s|1m00s)	11	printf %s-value gamma$" txt.out
	grep -qE "^old	stale	$dur	0ms	4	printf aged$" txt.out

	cf_to js list --json
	assert_status 0 js js
	assert_json_lines js.out 4
	assert_eq "$(jq -c 'keys' js.out | sort -u)" '["age_ms","command","key","size","state","ttl_ms"]' "fields of list --json"
	assert_eq "$(list_keys js.out | tr '\n' ' ')" "alpha beta gamma old " "keys in list --json"
	assert_eq "$(jq -c 'select(.key == "beta") | [.state, .size]' js.out)" '["fresh",10]' "beta"
	assert_eq "$(jq -c 'select(.key == "old") | [.state, .ttl_ms, .size]' js.out)" '["stale",0,4]' "old"
	jq -se 'map(select(.key == "alpha"))[0] | .age_ms >= 0 and .ttl_ms > 0 and .ttl_ms <= 60000' js.out >/dev/null
}

@test "list GLOB filters by key, and an empty namespace lists nothing and exits 0" {
	for k in user:1 user:2 user:10 item:1 usr; do
		cf_to "s$k" -t 1m -k "$k" -- printf x
	done

	cf_to users list 'user:*'
	assert_status 0 users
	assert_eq "$(cut -f1 users.out | sort | tr '\n' ' ')" "user:1 user:10 user:2 " "list 'user:*'"
	cf_to one list --json 'user:?'
	assert_json_lines one.out 2
	assert_eq "$(list_keys one.out | tr '\n' ' ')" "user:1 user:2 " "list --json 'user:?'"
	cf_to exact list item:1
	assert_eq "$(cut -f1 exact.out)" item:1 "list item:1"
	cf_to none list 'nomatch*'
	assert_status 0 none
	assert_empty none.out
	assert_empty none.err

	cf_to empty -n emptyns list
	assert_status 0 empty empty
	assert_empty empty.out
	assert_empty empty.err
	cf_to emptyjs -n emptyns list --json
	assert_status 0 emptyjs
	assert_empty emptyjs.out
}

@test "list of 10,000 entries in the namespace returns all and only them, and on Redis runs no KEYS" {
	bulk_entries bulk 9999 5
	# a real entry beside the crafted ones, filed under a tag (a tag set or
	# file, a lock, counters: names that are not entries)
	cf_to real -n bulk -t 1m -k bulk-10000 --tag everything -- printf out
	assert_status 0 real real
	# the same keys in other namespaces, one of which shares a prefix
	for ns in cachefence bulk2 other; do
		cf_to "o-$ns" -n "$ns" -t 1m -k bulk-00001 -- printf other
		cf_to "o2-$ns" -n "$ns" -t 1m -k "only-in-$ns" -- printf other
	done
	if store_is_redis; then
		rcli SET 'bulk:{bulk-00002}:lock' "$(printf '%032d' 0) host=h pid=1" PX 60000 >/dev/null
		rcli SET 'bulk:{ghost}:lock' "$(printf '%032d' 0) host=h pid=1" PX 60000 >/dev/null
		keys_before=$(redis_calls keys)
		scans_before=$(redis_calls scan)
	fi
	seq -f 'bulk-%05g' 1 10000 | LC_ALL=C sort >want

	cf_to js -n bulk list --json
	assert_status 0 js js
	assert_empty js.err
	assert_json_lines js.out 10000
	list_keys js.out >got
	cmp -s got want || { echo "keys listed differ from the 10,000 stored:" >&2; diff want got | head -20 >&2; false; }
	assert_eq "$(jq -r 'select(.state != "fresh" or .size != 3) | .key' js.out | head -5)" "" "entries not fresh or not 3 bytes"

	cf_to txt -n bulk list
	assert_status 0 txt txt
	assert_eq "$(awk 'END { print NR }' txt.out)" 10000 "lines of list"
	cut -f1 txt.out | LC_ALL=C sort >gottxt
	cmp -s gottxt want || { echo "keys listed as text differ:" >&2; diff want gottxt | head -20 >&2; false; }

	cf_to glob -n bulk list --json 'bulk-0000?'
	assert_eq "$(list_keys glob.out | tr '\n' ' ')" \
		"bulk-00001 bulk-00002 bulk-00003 bulk-00004 bulk-00005 bulk-00006 bulk-00007 bulk-00008 bulk-00009 " \
		"list 'bulk-0000?'"

	if store_is_redis; then
		assert_eq "$(redis_calls keys)" "$keys_before" "KEYS commands run by list"
		(($(redis_calls scan) > scans_before)) || { echo "list ran no SCAN" >&2; false; }
	fi
}

@test "list and invalidate --match see every entry that stays while others come and go" {
	bulk_entries bulk 10000
	seq -f 'bulk-%05g' 1 10000 | LC_ALL=C sort >want
	# churn: entries created and invalidated beside the walk
	(
		i=0
		while [[ ! -e stop ]] && ((i < 2000)); do
			i=$((i + 1))
			"$CACHEFENCE_BIN" -n bulk -t 1m -k "churn-$i" -- true
			((i % 2)) || "$CACHEFENCE_BIN" -n bulk invalidate "churn-$((i - 1))" >/dev/null
		done
	) </dev/null >/dev/null 2>&1 3>&- &
	echo $! >churn.pid
	for _ in $(seq 50); do
		[[ $(cf -n bulk list --json 'churn-*' | wc -l) -ge 2 ]] && break
		sleep 0.1
	done

	for round in 1 2 3; do
		cf_to "walk$round" -n bulk list --json
		assert_status 0 "walk$round" "walk$round"
		assert_json_lines "walk$round.out"
		jq -r '.key' "walk$round.out" | grep -v '^churn-[0-9]*$' | LC_ALL=C sort >"got$round"
		cmp -s "got$round" want ||
			{ echo "round $round: the stable entries were not each listed once:" >&2; diff want "got$round" | head -20 >&2; false; }
	done

	cf_to inval -n bulk invalidate --match 'bulk-*'
	assert_status 0 inval inval
	assert_bytes inval.out '10000\n'
	touch stop
	wait "$(cat churn.pid)" || true
	cf_to left -n bulk list --json 'bulk-*'
	assert_status 0 left
	assert_empty left.out
}

# --- keys with any bytes --------------------------------------------------------------------

@test "keys with spaces, }, *, newlines, quotes and UTF-8 round-trip through run, get, inspect, list and invalidate" {
	keys=(
		'two words here'
		'brace}close'
		'{open brace'
		'brace%7Dclose'
		'%25'
		'x}:lock'
		'star*key'
		'star-other-key'
		$'line one\nline two'
		$'trailing newline\n'
		'naïve café 日本語 ✓ 🚀'
		'quote"and\backslash'
		$'tab\there\001ctl'
		' leading space'
	)
	n=${#keys[@]}
	for i in "${!keys[@]}"; do
		k=${keys[$i]}
		cf_to "run$i" -t 1m -k "$k" -- printf 'value %s' "$i"
		assert_status 0 "run$i" "run$i"
		assert_bytes "run$i.out" "value $i"
	done
	for i in "${!keys[@]}"; do
		k=${keys[$i]}
		cf_to "again$i" -t 1m -k "$k" -- printf 'recomputed'
		assert_bytes "again$i.out" "value $i" || { echo "key $i was not a hit: $(printf %q "$k")" >&2; false; }
		cf_to "get$i" get "$k"
		assert_status 0 "get$i"
		assert_bytes "get$i.out" "value $i"

		cf_to "ins$i" inspect --json "$k"
		assert_status 0 "ins$i"
		assert_json_object "ins$i.out"
		jq -j .key "ins$i.out" >"key$i"
		assert_same "key$i" "$k"
		assert_eq "$(jq -r .state "ins$i.out")" fresh "state of key $i"

		cf_to "txt$i" inspect "$k"
		assert_status 0 "txt$i"
		assert_eq "$(awk 'END { print NR }' "txt$i.out")" 12 "lines of inspect for key $i"
	done

	cf_to js list --json
	assert_status 0 js js
	assert_json_lines js.out "$n"
	for i in "${!keys[@]}"; do
		v="value $i"
		assert_eq "$(jq -c --arg k "${keys[$i]}" 'select(.key == $k) | .size' js.out)" "${#v}" \
			"list --json entries for key $i: $(printf %q "${keys[$i]}")"
	done
	cf_to txt list
	assert_status 0 txt
	assert_eq "$(awk 'END { print NR }' txt.out)" "$n" "lines of list (newlines in keys escaped)"
	grep -qF 'line one\x0aline two	' txt.out
	grep -qF 'trailing newline\x0a	' txt.out
	grep -qF 'na\xc3\xafve caf\xc3\xa9 ' txt.out
	grep -qF 'tab\x09here\x01ctl	' txt.out
	grep -qF 'brace}close	' txt.out
	grep -qF 'star*key	' txt.out

	# a key is a key, not a pattern: 'star*key' deletes one entry
	cf_to star invalidate 'star*key'
	assert_status 0 star
	assert_bytes star.out '1\n'
	cf_to other get star-other-key
	assert_status 0 other
	cf_to gone get 'star*key'
	assert_status 1 gone

	rest=()
	for k in "${keys[@]}"; do
		[[ $k == 'star*key' ]] || rest+=("$k")
	done
	cf_to inval invalidate "${rest[@]}"
	assert_status 0 inval inval
	assert_bytes inval.out "$((n - 1))\n"
	for i in "${!keys[@]}"; do
		cf_to "after$i" get "${keys[$i]}"
		assert_status 1 "after$i"
	done
	cf_to empty list
	assert_empty empty.out
}

@test "a key holding bytes that are not UTF-8 round-trips through get, and inspect and list still print valid JSON" {
	k=$'bin\xff\xfe key'
	cf_to run -t 1m -k "$k" -- printf 'binary key'
	assert_status 0 run
	cf_to got get "$k"
	assert_status 0 got
	assert_bytes got.out 'binary key'
	cf_to js inspect --json "$k"
	assert_status 0 js
	assert_json_object js.out
	cf_to ls list --json
	assert_json_lines ls.out 1
	cf_to txt list
	grep -qF 'bin\xff\xfe key	' txt.out
	cf_to inval invalidate "$k"
	assert_bytes inval.out '1\n'
}

@test "a GLOB matches user keys as given, whatever the store: } and % in keys match like any other byte" {
	for k in 'brace}close' 'brace%7Dclose' 'pct%25' plain; do
		cf_to "s$k" -t 1m -k "$k" -- printf x
		assert_status 0 "s$k"
	done
	check() {
		cf_to g list --json "$1"
		assert_status 0 g
		assert_eq "$(list_keys g.out | tr '\n' ' ')" "$2" "list --json '$1'"
	}
	check 'brace?close' 'brace}close '
	check '*}*' 'brace}close '
	check '*7D*' 'brace%7Dclose '
	check '*%*' 'brace%7Dclose pct%25 '
	check '*25*' 'pct%25 '
	check 'brace*' 'brace%7Dclose brace}close '

	cf_to inval invalidate --match '*7D*'
	assert_bytes inval.out '1\n'
	cf_to kept get 'brace}close'
	assert_status 0 kept
}

# --- invalidate --------------------------------------------------------------------------------

@test "invalidate KEY... prints how many it deleted and exits 0, also when none existed" {
	for k in a b c; do cf_to "s$k" -t 1m -k "$k" -- printf x; done
	cf_to two invalidate a b never
	assert_status 0 two two
	assert_bytes two.out '2\n'
	assert_empty two.err
	cf_to zero invalidate a never
	assert_status 0 zero
	assert_bytes zero.out '0\n'
	cf_to kept get c
	assert_status 0 kept
}

@test "invalidate --match deletes the matching entries of this namespace only and prints how many" {
	for k in user:1 user:2 user:3 item:1; do
		cf_to "s$k" -t 1m -k "$k" -- printf x
	done
	cf_to other -n otherns -t 1m -k user:1 -- printf other

	cf_to inval invalidate --match 'user:*'
	assert_status 0 inval inval
	assert_bytes inval.out '3\n'
	assert_empty inval.err
	cf_to left list
	assert_eq "$(cut -f1 left.out)" item:1 "entries left"
	cf_to kept -n otherns get user:1
	assert_status 0 kept
	assert_bytes kept.out other

	cf_to none invalidate --match 'user:*'
	assert_status 0 none
	assert_bytes none.out '0\n'
}

@test "invalidate --tag removes exactly the tagged entries, including ones another host wrote" {
	cf_to t1 -t 1m -k t1 --tag users -- printf one
	cf_other_host -t 10m -k t2 --tag users --tag feed -- printf two >t2.out 2>t2.err
	cf_to t3 -t 1m -k t3 --tag feed -- printf three
	cf_to t4 -t 1m -k t4 -- printf four
	cf_to t5 -n otherns -t 1m -k t5 --tag users -- printf five
	if unshare -u true 2>/dev/null; then
		assert_eq "$(cf inspect --json t2 | jq -r .host)" otherhost "host of the entry written elsewhere"
	fi
	for k in t1 t2 t3 t4; do
		cf_to "got$k" get "$k"
		assert_status 0 "got$k"
	done

	if store_is_redis; then
		# each slot's tag set lives exactly as long as its longest-lived
		# entry; the longest of them as long as the longest entry
		e1=$(rcli PTTL 'cachefence:{t1}')
		e2=$(rcli PTTL 'cachefence:{t2}')
		redis_names 'cachefence:{%*}:tag:users' >sets
		assert_eq "$(wc -l <sets)" 2 "tag sets of users (t1 and t2 are in two slots)"
		longest=0
		while read -r set; do
			tag=$(rcli PTTL "$set")
			((tag > 0)) || { echo "tag set $set has no expiry (PTTL $tag)" >&2; false; }
			((tag <= e2)) || { echo "tag set outlives its entries: PTTL $tag > $e2" >&2; false; }
			((tag > longest)) && longest=$tag
			assert_eq "$(rcli TYPE "$set")" set "type of the tag"
		done <sets
		((longest > e1)) || { echo "tag sets die with the shortest-lived entry: PTTL $longest <= $e1" >&2; false; }
	fi

	cf_to users invalidate --tag users
	assert_status 0 users users
	assert_bytes users.out '2\n'
	assert_empty users.err
	for k in t1 t2; do
		cf_to "gone$k" get "$k"
		assert_status 1 "gone$k"
	done
	for k in t3 t4; do
		cf_to "kept$k" get "$k"
		assert_status 0 "kept$k"
	done
	cf_to t5kept -n otherns get t5
	assert_status 0 t5kept

	cf_to again invalidate --tag users
	assert_status 0 again
	assert_bytes again.out '0\n'
	cf_to feed invalidate --tag feed
	assert_status 0 feed
	assert_bytes feed.out '1\n'
	cf_to never invalidate --tag never-used
	assert_status 0 never
	assert_bytes never.out '0\n'
	cf_to last get t4
	assert_status 0 last
	if store_is_redis; then
		assert_eq "$(redis_names 'cachefence:{%*}:tag:*')" "" "tag sets left after invalidate --tag"
	fi
}

@test "a tag whose entries all expired is gone from Redis too" {
	require_redis
	# 2 s: a loaded CI machine once took the whole of a 300 ms TTL to get
	# from the store to the PTTL
	cf_to short -t 2s -k brief --tag ephemeral -- printf x
	assert_status 0 short
	set=$(redis_names 'cachefence:{%*}:tag:ephemeral')
	[[ -n $set ]] || { echo "no tag set for ephemeral" >&2; false; }
	pttl=$(rcli PTTL "$set")
	((pttl > 0 && pttl <= 2000)) || { echo "tag PTTL $pttl, entry TTL 2000 ms" >&2; false; }
	for _ in $(seq 100); do
		[[ $(rcli EXISTS "$set") == 0 ]] && break
		sleep 0.1
	done
	assert_eq "$(rcli EXISTS "$set" 'cachefence:{brief}')" 0 "tag and entry left"
}

@test "list --tags prints each tag of the namespace once, sorted; GLOB and --json; invalidate --tag and expiry remove it" {
	cf_to a -t 1m -k ka --tag web --tag 'odd%}tag' -- printf a
	cf_to b -t 1m -k kb --tag web --tag db -- printf b
	cf_to brief -t 2s -k kc --tag ephemeral -- printf c
	cf_to other -n otherns -t 1m -k kd --tag elsewhere -- printf d
	cf_to tags list --tags
	assert_status 0 tags
	assert_bytes tags.out 'db\nephemeral\nodd%}tag\nweb\n'
	assert_empty tags.err
	cf_to glob list --tags 'o*'
	assert_bytes glob.out 'odd%}tag\n'
	cf_to json list --tags --json 'w?b'
	assert_bytes json.out '{"tag":"web"}\n'
	cf_to ns -n otherns list --tags
	assert_bytes ns.out 'elsewhere\n'
	cf_to inv invalidate --tag web
	assert_status 0 inv
	# web is invalidated; ephemeral's one entry expires within 2 s; db's and
	# the odd tag's entries went with web's, and the local store forgets
	# them now, Redis when their sets expire
	if store_is_redis; then want=$'db\nodd%}tag\n'; else want=; fi
	for _ in $(seq 50); do
		cf_to after list --tags
		assert_status 0 after
		[[ $(cat after.out; echo .) == "$want." ]] && break
		sleep 0.2
	done
	assert_bytes after.out "$want"
	cf_to none -n emptyns list --tags
	assert_status 0 none
	assert_empty none.out
}

# --- namespaces ------------------------------------------------------------------------------------

@test "namespaces keep entries apart: get, list, invalidate and invalidate --match see only their own" {
	for ns in app app2 app:sub; do
		cf_to "s-$ns" -n "$ns" -t 1m -k shared -- printf "in %s" "$ns"
		assert_status 0 "s-$ns" "s-$ns"
		cf_to "o-$ns" -n "$ns" -t 1m -k "own-$ns" -- printf x
	done
	for ns in app app2 app:sub; do
		cf_to "g-$ns" -n "$ns" get shared
		assert_bytes "g-$ns.out" "in $ns"
		cf_to "l-$ns" -n "$ns" list --json
		assert_json_lines "l-$ns.out" 2
		assert_eq "$(list_keys "l-$ns.out" | tr '\n' ' ')" "own-$ns shared " "entries listed in $ns"
	done
	CACHEFENCE_NAMESPACE=app2 cf_to env list
	assert_eq "$(cut -f1 env.out | sort | tr '\n' ' ')" "own-app2 shared " "entries listed with CACHEFENCE_NAMESPACE"

	cf_to inv -n app invalidate shared
	assert_bytes inv.out '1\n'
	cf_to still -n app2 get shared
	assert_status 0 still
	cf_to match -n app invalidate --match '*'
	assert_bytes match.out '1\n'
	for ns in app2 app:sub; do
		cf_to "left-$ns" -n "$ns" list
		assert_eq "$(awk 'END { print NR }' "left-$ns.out")" 2 "entries left in $ns"
	done
	cf_to def list
	assert_empty def.out
}

# --- stats ----------------------------------------------------------------------------------------------

@test "stats after a known sequence of hits, misses, waits and stale serves equal the expected counts, per namespace" {
	assert_stats ""

	# 1 miss, 3 hits
	for i in 1 2 3 4; do
		cf_to "k1-$i" --beta 0 -t 1m -k k1 -- printf one
		assert_status 0 "k1-$i"
	done
	# 1 miss
	cf_to k2 --beta 0 -t 1m -k k2 -- printf two
	assert_stats "" hits=3 misses=2

	# 1 miss (the leader), 3 waits, then 3 hits when the waiters wake
	lead=$(counter_cmd lead "$(hold_until "$SCRATCH/release"); echo led")
	cf_bg leader --beta 0 -t 1m -k k3 -- "$lead"
	wait_for_file lead.runs 30
	for i in 1 2 3; do
		cf_bg "w$i" --beta 0 -t 1m -k k3 -- "$lead"
	done
	for _ in $(seq 300); do
		[[ $(counter_of waits) == 3 ]] && break
		sleep 0.1
	done
	touch release
	for n in leader w1 w2 w3; do
		assert_eq "$(bg_status "$n")" 0 "status of $n"
		assert_bytes "$n.out" 'led\n'
	done
	assert_eq "$(runs lead)" 1 "runs of the awaited COMMAND"
	assert_stats "" hits=6 misses=3 waits=3

	# 1 miss; then 2 stale serves, the first starting the one background refresh
	val=$(counter_cmd val "[ \$n -gt 1 ] && { $(hold_until "$SCRATCH/release2"); }; echo \"value \$n\"")
	cf_to k4 --beta 0 -t 1s -s 1m -k k4 -- "$val"
	for _ in $(seq 100); do
		cf_to fresh get --fresh k4
		[[ $status == 1 ]] && break
		sleep 0.1
	done
	assert_status 1 fresh
	cf_to stale1 --beta 0 -t 1s -s 1m -k k4 -- "$val"
	assert_bytes stale1.out 'value 1\n'
	# its refresh holds the lock (and waits for release2) while the next caller comes
	for _ in $(seq 300); do [[ $(runs val) == 2 ]] && break; sleep 0.1; done
	cf_to stale2 --beta 0 -t 1s -s 1m -k k4 -- "$val"
	assert_bytes stale2.out 'value 1\n'
	touch release2
	for _ in $(seq 300); do
		[[ $(cf get k4) == 'value 2' ]] && break
		sleep 0.1
	done
	assert_eq "$(cf get k4)" 'value 2' "the refreshed entry"
	assert_eq "$(runs val)" 2 "runs of the refreshed COMMAND"

	# 1 miss whose output is too large to store
	cf_to big --beta 0 --max-size 10 -t 1m -k big -- printf '%s' 0123456789abcdef
	assert_status 0 big

	# another namespace: 1 miss, 2 hits, counted apart
	for i in 1 2 3; do
		cf_to "b$i" -n otherns --beta 0 -t 1m -k k1 -- printf other
	done

	assert_stats "" hits=6 misses=5 waits=3 stale_served=2 background_refreshes=1 stores_skipped_too_large=1
	assert_stats otherns hits=2 misses=1

	# text: one "name value" line per counter, in order
	cf_to txt stats
	assert_status 0 txt txt
	assert_empty txt.err
	assert_eq "$(awk '{ print $1 }' txt.out | tr '\n' ' ')" "${STATS[*]} " "names in stats"
	assert_eq "$(awk 'NF != 2 || $2 !~ /^[0-9]+$/' txt.out)" "" "malformed stats lines"
	assert_eq "$(awk '$1 == "hits" { print $2 }' txt.out)" 6 "hits in text"
	assert_eq "$(awk '$1 == "stale_served" { print $2 }' txt.out)" 2 "stale_served in text"

	# --reset prints the counts, then zeroes them, in its namespace only
	cf_to reset stats --json --reset
	assert_status 0 reset reset
	assert_eq "$(jq -r '[.hits, .misses, .waits, .stale_served] | @tsv' reset.out)" "6	5	3	2" "counts printed by --reset"
	assert_stats ""
	assert_stats otherns hits=2 misses=1
	cf_to reset2 -n otherns stats --reset
	assert_status 0 reset2
	assert_eq "$(awk '$1 == "hits" { print $2 }' reset2.out)" 2 "hits printed by --reset"
	assert_stats otherns

	# counting starts again from zero
	cf_to after --beta 0 -t 1m -k k1 -- printf one
	assert_stats "" hits=1
}

@test "stats --prometheus prints HELP, TYPE and a namespace-labelled sample for every counter, and passes promtool" {
	cf_to a --beta 0 -t 1m -k p -- printf x
	cf_to b --beta 0 -t 1m -k p -- printf x
	cf_to c -n 'prom.ns' --beta 0 -t 1m -k p -- printf x

	for ns in cachefence prom.ns; do
		cf_to "prom-$ns" -n "$ns" stats --prometheus
		assert_status 0 "prom-$ns" "prom-$ns"
		assert_empty "prom-$ns.err"
		f=prom-$ns.out
		assert_eq "$(awk 'END { print NR }' "$f")" $((3 * ${#STATS[@]})) "lines of $f"
		nsre=${ns//./\\.}
		i=0
		for name in "${STATS[@]}"; do
			m=cachefence_${name}_total
			help=$(sed -n "$((i * 3 + 1))p" "$f")
			type=$(sed -n "$((i * 3 + 2))p" "$f")
			sample=$(sed -n "$((i * 3 + 3))p" "$f")
			[[ $help =~ ^#\ HELP\ ${m}\ [^[:cntrl:]]+$ && $help != *"(null)"* ]] ||
				{ echo "bad HELP line: $help" >&2; false; }
			[[ $type == "# TYPE $m counter" ]] || { echo "bad TYPE line: $type" >&2; false; }
			[[ $sample =~ ^${m}\{namespace=\"${nsre}\"\}\ ([0-9]+)$ ]] || { echo "bad sample line: $sample" >&2; false; }
			assert_eq "${BASH_REMATCH[1]}" "$(counter_of "$name" "$ns")" "$m in $ns"
			i=$((i + 1))
		done
		# the exposition format, strictly: only these three kinds of line
		assert_eq "$(grep -cvE '^(# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+|# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|untyped)|[a-zA-Z_:][a-zA-Z0-9_:]*\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\} [0-9]+)$' "$f")" \
			0 "lines outside the exposition format in $f"
		if command -v promtool >/dev/null; then
			promtool check metrics <"$f" >promtool.out 2>&1 ||
				{ echo "promtool check metrics:" >&2; cat promtool.out >&2; false; }
		fi
	done
	assert_eq "$(grep '^cachefence_hits_total' prom-cachefence.out)" 'cachefence_hits_total{namespace="cachefence"} 1' "hits sample"
	assert_eq "$(grep '^cachefence_misses_total' prom-prom.ns.out)" 'cachefence_misses_total{namespace="prom.ns"} 1' "misses sample"
}
