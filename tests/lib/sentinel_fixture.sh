#!/usr/bin/env bash
# sentinel_fixture.sh: a primary, a replica and three Redis Sentinels on free
# loopback ports (never 6379), for the tests of issue 17 (redis+sentinel://).
#
#   sentinel_fixture.sh start DIR  start them; DIR/ports holds the primary's
#                                  port, the replica's, then the three
#                                  sentinels'; DIR/pids their pids in that
#                                  order; DIR/url the redis+sentinel:// URL
#                                  naming the three sentinels and the
#                                  service cfmaster
#   sentinel_fixture.sh stop DIR   stop every server started in DIR
#   sentinel_fixture.sh primary DIR
#                                  print the port of the primary as the
#                                  sentinels name it now
#   sentinel_fixture.sh failover DIR
#                                  SENTINEL FAILOVER, then wait until the
#                                  sentinels name the other server, it is a
#                                  master and the old primary its replica
#                                  with the link up; prints the new port
#   sentinel_fixture.sh restart DIR PORT
#                                  start the data server on PORT again
#                                  (after a kill) as a replica of the
#                                  current primary (as the primary if the
#                                  sentinels still name it); prints its pid
#
# With SENTINEL_PASSWORD set at start the sentinels require that password
# (requirepass: clients and the other sentinels give it); it is kept in
# DIR/password for the later commands. The data servers have none.
#
# With SENTINEL_TLS_DIR set at start (a tls_fixture.sh directory), every
# server speaks TLS only (its server.crt, no client certificates asked
# for), replication and the sentinels' own links included, and DIR/url is a
# rediss+sentinel:// URL; the directory is kept in DIR/tls.
#
# Each server works in DIR/redis-PORT or DIR/sentinel-PORT (a sentinel's
# sentinel.conf, which it rewrites; its log), without persistence. Start
# waits until the replica's link is up and every sentinel names the primary,
# lists the replica and sees the two other sentinels; it exits 1 with the
# logs when not within 30 s.
set -uo pipefail

service=cfmaster
cmd=${1:-}
dir=${2:-}
[[ ($cmd == start || $cmd == stop || $cmd == primary || $cmd == failover ||
	$cmd == restart) && -n $dir ]] || {
	echo "usage: sentinel_fixture.sh start|stop|primary|failover DIR, or restart DIR PORT" >&2
	exit 2
}

# shellcheck source=tests/lib/fixture_common.sh
. "$(dirname "${BASH_SOURCE[0]}")/fixture_common.sh"

if [[ $cmd == stop ]]; then
	stop
	exit 0
fi

# the sentinels' password: the environment's at start, DIR/password after
# (whatever the environment says then: one suite may run two fixtures)
password=${SENTINEL_PASSWORD:-}
[[ $cmd != start ]] && password=
[[ $cmd != start && -f $dir/password ]] && password=$(<"$dir/password")

# the TLS fixture's directory: the environment's at start, DIR/tls after
tls_dir=${SENTINEL_TLS_DIR:-}
[[ $cmd != start ]] && tls_dir=
[[ $cmd != start && -f $dir/tls ]] && tls_dir=$(<"$dir/tls")
cli=(redis-cli)
[[ -z $tls_dir ]] || cli+=(--tls --cacert "$tls_dir/ca.crt")

# redis-server options that make it listen on 127.0.0.1:PORT (TLS only
# with a TLS fixture), one a line
listen_options() {
	if [[ -n $tls_dir ]]; then
		printf '%s\n' "port 0" "tls-port $1" "tls-cert-file $tls_dir/server.crt" \
			"tls-key-file $tls_dir/server.key" "tls-ca-cert-file $tls_dir/ca.crt" \
			"tls-auth-clients no" "tls-replication yes"
	else
		printf '%s\n' "port $1"
	fi
}

# redis-cli to the data server on PORT (no password there); bounded, as
# a test may have frozen the server (SIGSTOP)
dcli() {
	local port=$1
	shift
	timeout 2 "${cli[@]}" -p "$port" "$@" 2>/dev/null | tr -d '\r'
}

# redis-cli to the sentinel on PORT, bounded like dcli, with the password
# through the environment (not on the command line, where ps shows it)
scli() {
	local port=$1
	shift
	if [[ -n $password ]]; then
		REDISCLI_AUTH=$password timeout 2 "${cli[@]}" -p "$port" "$@" 2>/dev/null | tr -d '\r'
	else
		timeout 2 "${cli[@]}" -p "$port" "$@" 2>/dev/null | tr -d '\r'
	fi
}

# a reply of field/value pairs (or a list of them), one "field<TAB>value" a line
# shellcheck disable=SC2317 # used by tests called through wait_for
pairs() { paste - -; }

# the port the sentinel on PORT names as the primary (empty if none)
named_by() { scli "$1" SENTINEL get-master-addr-by-name "$service" | sed -n 2p; }

# the primary's port as the first sentinel that answers names it (a frozen
# one does not stop the others being asked)
current_primary() {
	local s p
	for s in "${ports[@]:2}"; do
		p=$(named_by "$s")
		[[ $p =~ ^[0-9]+$ ]] && { echo "$p"; return 0; }
	done
	return 1
}

# true when the data server on PORT is a replica with its link up
# shellcheck disable=SC2317 # called through wait_for
replica_up() { dcli "$1" INFO replication | grep -q '^master_link_status:up'; }

# true when every sentinel sees the data server on PORT up in its role: as
# the primary (flags "master") if they name it, else as a replica (flags
# "slave", not disconnected or down) that said so itself (role-reported
# slave). A sentinel whose last word from a demoted primary is still
# "master" turns the next failover's promoted replica back into a replica
# (+convert-to-slave, -failover-abort-slave-timeout): seen in a CI run
# with two failovers 20 s apart.
# shellcheck disable=SC2317 # called through wait_for
seen_up() {
	local s
	for s in "${ports[@]:2}"; do
		if [[ $(named_by "$s") == "$1" ]]; then
			scli "$s" SENTINEL master "$service" | pairs | grep -qx 'flags	master' || return 1
		else
			scli "$s" SENTINEL replicas "$service" | pairs |
				awk -v p="$1" '$1 == "port" { at = $2 } at == p && ($1 == "flags" || $1 == "role-reported") { print $2 }' |
				sort | paste -sd' ' | grep -qx 'slave slave' || return 1
		fi
	done
}

# the first line of ROLE on the data server on PORT: master or slave
# shellcheck disable=SC2317 # used by tests called through wait_for
role() { dcli "$1" ROLE | head -n 1; }

# true once the server on PORT is the process PID (a sentinel or not)
answers() {
	local info
	if (($3)); then info=$(scli "$1" INFO server); else info=$(dcli "$1" INFO server); fi
	[[ $(sed -n 's/^process_id://p' <<<"$info") == "$2" ]]
}

# wait up to 30 s (WAIT_FOR_TRIES x 0.2 s) until the command CMD... succeeds
wait_for() {
	for _ in $(seq "${WAIT_FOR_TRIES:-150}"); do
		"$@" && return 0
		sleep 0.2
	done
	"$@"
}

# the data server on PORT in the background, a replica of PRIMARY if given;
# a replica's first sync starts at once (not after the default 5 s wait for
# more replicas to join)
data_start() {
	mkdir -p "$dir/redis-$1"
	local listen=()
	while read -r opt arg; do listen+=("--$opt" "$arg"); done < <(listen_options "$1")
	redis-server --bind 127.0.0.1 "${listen[@]}" --save '' --appendonly no \
		--repl-diskless-sync-delay 0 --dir "$dir/redis-$1" --logfile "$dir/redis-$1/log" \
		${2:+--replicaof 127.0.0.1 "$2"} </dev/null >/dev/null 2>&1 &
}

# print the logs' tails to stderr
logs() {
	local d
	for d in "$dir"/redis-* "$dir"/sentinel-*; do
		[[ -f $d/log ]] || continue
		echo "--- ${d##*/}" >&2
		tail -8 "$d/log" >&2
	done
}

[[ $cmd == start ]] || mapfile -t ports <"$dir/ports"

if [[ $cmd == primary ]]; then
	current_primary && exit 0
	echo "no sentinel in $dir names a primary" >&2
	exit 1
fi

if [[ $cmd == failover ]]; then
	old=$(current_primary) || { echo "no sentinel in $dir names a primary" >&2; exit 1; }
	new=${ports[0]}
	[[ $new == "$old" ]] && new=${ports[1]}
	# done when all sentinels name the other server, it says master and the
	# old primary (reconfigured by the sentinels) follows it
	# shellcheck disable=SC2317 # called through wait_for
	switched() {
		local s
		for s in "${ports[@]:2}"; do [[ $(named_by "$s") == "$new" ]] || return 1; done
		[[ $(role "$new") == master && $(role "$old") == slave ]] && replica_up "$old" &&
			seen_up "$old"
	}
	# a sentinel may refuse for a while (-NOGOODSLAVE while its view of the
	# replica is stale, as after a failover just done; -INPROG): ask again,
	# the others too, for up to 30 s (a busy machine)
	asked=
	for _ in $(seq 150); do
		for s in "${ports[@]:2}"; do
			[[ $(scli "$s" SENTINEL FAILOVER "$service") == OK ]] && { asked=$s; break 2; }
		done
		sleep 0.2
	done
	[[ -n $asked ]] || { echo "no sentinel in $dir would start a failover" >&2; exit 1; }
	# a busy primary (a large value on the way) can hold the election up
	WAIT_FOR_TRIES=300 wait_for switched && { echo "$new"; exit 0; }
	echo "the failover from $old to $new did not end within 60 s; the logs:" >&2
	logs
	exit 1
fi

if [[ $cmd == restart ]]; then
	port=${3:?usage: sentinel_fixture.sh restart DIR PORT}
	line=$(grep -nx "$port" "$dir/ports" | cut -d: -f1)
	[[ -n $line && $line -le 2 ]] || { echo "no data server on port $port in $dir" >&2; exit 1; }
	primary=$(current_primary) || { echo "no sentinel in $dir names a primary" >&2; exit 1; }
	# the sentinels still naming it (no failover yet): it comes back as the
	# primary, empty; else as a replica of the one they name
	[[ $primary == "$port" ]] && primary=
	for _ in $(seq 250); do
		port_is_free "$port" && break
		sleep 0.02
	done
	data_start "$port" "$primary"
	pid=$!
	sed -i "${line}s/.*/$pid/" "$dir/pids"
	ok=0
	for _ in $(seq 250); do
		answers "$port" "$pid" 0 && { ok=1; break; }
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.02
	done
	# back once a replica has synced and the sentinels see it up (so that
	# they would pick it in a failover)
	((ok)) && [[ -n $primary ]] && { wait_for replica_up "$port" || ok=0; }
	((ok)) && { wait_for seen_up "$port" || ok=0; }
	((ok)) && { echo "$pid"; exit 0; }
	echo "the data server on port $port did not start again; its log:" >&2
	tail -8 "$dir/redis-$port/log" >&2
	exit 1
fi

mkdir -p "$dir" || exit 1
trap 'stop' ERR

# a sentinel on PORT in the background, watching the primary on PRIMARY;
# its config is a file of its own it may rewrite (sentinel requires that)
sentinel_start() {
	local d=$dir/sentinel-$1
	mkdir -p "$d"
	{
		echo "bind 127.0.0.1"
		listen_options "$1"
		echo "dir $d"
		echo "logfile $d/log"
		echo "sentinel monitor $service 127.0.0.1 $2 2"
		echo "sentinel down-after-milliseconds $service 5000"
		echo "sentinel failover-timeout $service 5000"
		echo "sentinel parallel-syncs $service 1"
		# the same password serves clients and the other sentinels; quoted
		# for the config's parser (\\ and \" within "...")
		if [[ -n $password ]]; then
			local quoted=${password//\\/\\\\}
			echo "requirepass \"${quoted//\"/\\\"}\""
		fi
	} >"$d/sentinel.conf"
	chmod 600 "$d/sentinel.conf"
	redis-server "$d/sentinel.conf" --sentinel </dev/null >/dev/null 2>&1 &
}

# true once the server at index I of DIR/ports answers as the process at
# index I of DIR/pids (within 4 s): it is ours, not one of another suite
ours() {
	local port pid
	port=$(sed -n "$(($1 + 1))p" "$dir/ports")
	pid=$(sed -n "$(($1 + 1))p" "$dir/pids")
	for _ in $(seq 200); do
		answers "$port" "$pid" $(($1 > 1)) && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.02
	done
	return 1
}

# five ports from a random start, free when looked at; the servers on them,
# each checked to be ours (another suite starting at the same time may have
# taken a port between the look and the start): tried again elsewhere. The
# primary, then the replica in sync, then the sentinels: their first look at
# the primary (INFO, then only every 10 s) finds the replica already
start_all() {
	local p port
	: >"$dir/ports"
	: >"$dir/pids"
	rm -rf "$dir"/redis-* "$dir"/sentinel-*
	p=$((20000 + (RANDOM * 32768 + RANDOM) % 20000))
	while (($(wc -l <"$dir/ports") < 5)); do
		p=$((p + 1))
		((p != 6379)) || continue
		port_is_free "$p" && echo "$p" >>"$dir/ports"
	done
	mapfile -t ports <"$dir/ports"
	data_start "${ports[0]}"
	echo $! >>"$dir/pids"
	ours 0 || return 1
	data_start "${ports[1]}" "${ports[0]}"
	echo $! >>"$dir/pids"
	ours 1 && wait_for replica_up "${ports[1]}" || return 1
	for port in "${ports[@]:2}"; do
		sentinel_start "$port" "${ports[0]}"
		echo $! >>"$dir/pids"
	done
	ours 2 && ours 3 && ours 4
}

# true when the replica is in sync and every sentinel names the primary,
# lists the replica and sees the two other sentinels
# shellcheck disable=SC2317 # called through wait_for
ready() {
	local s
	replica_up "${ports[1]}" || return 1
	for s in "${ports[@]:2}"; do
		[[ $(named_by "$s") == "${ports[0]}" ]] || return 1
		scli "$s" SENTINEL replicas "$service" | pairs | grep -qx "port	${ports[1]}" || return 1
		[[ $(scli "$s" SENTINEL sentinels "$service" | pairs | grep -c '^name	') == 2 ]] || return 1
	done
}

if [[ -n $password ]]; then
	(umask 077 && printf '%s\n' "$password" >"$dir/password")
else
	rm -f "$dir/password"
fi
if [[ -n $tls_dir ]]; then echo "$tls_dir" >"$dir/tls"; else rm -f "$dir/tls"; fi
for attempt in $(seq 5); do
	start_all && break
	stop
	((attempt < 5)) || { echo "could not start 5 servers on free ports" >&2; logs; exit 1; }
done

if ! wait_for ready; then
	echo "the sentinels did not become ready within 30 s; the logs:" >&2
	logs
	stop
	exit 1
fi
echo "redis${tls_dir:+s}+sentinel://127.0.0.1:${ports[2]},127.0.0.1:${ports[3]},127.0.0.1:${ports[4]}/$service" >"$dir/url"
trap - ERR
exit 0
