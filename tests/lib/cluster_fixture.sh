#!/usr/bin/env bash
# cluster_fixture.sh: a Redis Cluster of 3 primaries and 3 replicas on free
# loopback ports (never 6379), for the tests and benchmarks of issue 16.
#
#   cluster_fixture.sh start DIR   start it; DIR/ports holds the six ports
#                                  (the three primaries first), DIR/pids
#                                  their pids, DIR/url a seed URL naming
#                                  two primaries
#   cluster_fixture.sh stop DIR    stop every node started in DIR
#   cluster_fixture.sh restart DIR PORT
#                                  start the node on PORT again (after a
#                                  kill), with the identity its nodes.conf
#                                  keeps; prints its new pid
#   cluster_fixture.sh heal DIR    after failovers: make the first three
#                                  the primaries again, wait until ready
#
# Each node works in DIR/node-PORT (its nodes.conf, its log), without
# persistence. Start waits until every node says cluster_state:ok and sees
# all 16384 slots served; it exits 1 with the nodes' logs when not within
# 30 s. A cluster bus port is the node's port + 10000: both must be free.
set -uo pipefail

nodes=6
cmd=${1:-}
dir=${2:-}
[[ ($cmd == start || $cmd == stop || $cmd == restart || $cmd == heal) && -n $dir ]] || {
	echo "usage: cluster_fixture.sh start|stop|heal DIR, or restart DIR PORT" >&2
	exit 2
}

# shellcheck source=tests/lib/fixture_common.sh
. "$(dirname "${BASH_SOURCE[0]}")/fixture_common.sh"

# a node on PORT in the background, working in DIR/node-PORT
node_start() {
	redis-server --bind 127.0.0.1 --port "$1" --cluster-enabled yes \
		--cluster-config-file "$dir/node-$1/nodes.conf" --cluster-node-timeout 5000 \
		--save '' --appendonly no --dir "$dir/node-$1" --logfile "$dir/node-$1/log" \
		</dev/null >/dev/null 2>&1 &
}

# true once the server on PORT is the process PID
node_answers() {
	[[ $(redis-cli -p "$1" INFO server 2>/dev/null | tr -d '\r' |
		sed -n 's/^process_id://p') == "$2" ]]
}

if [[ $cmd == stop ]]; then
	stop
	exit 0
fi

# true when every node agrees that all slots are served, and each of the
# last three (replicas) has its primary's link up
ready() {
	local port info
	for port in "${ports[@]}"; do
		info=$(redis-cli -p "$port" CLUSTER INFO 2>/dev/null | tr -d '\r')
		[[ $info == *cluster_state:ok* && $info == *cluster_slots_ok:16384* ]] || return 1
	done
	# each replica has its primary's link up
	for port in "${ports[@]:3}"; do
		redis-cli -p "$port" INFO replication 2>/dev/null | tr -d '\r' |
			grep -q '^master_link_status:up' || return 1
	done
}

# wait up to 30 s for ready
wait_ready() {
	for _ in $(seq 300); do
		ready && return 0
		sleep 0.1
	done
	ready
}

if [[ $cmd == heal ]]; then
	mapfile -t ports <"$dir/ports"
	for port in "${ports[@]:0:3}"; do
		# a first three made a replica by a failover: in sync, then primary again
		redis-cli -p "$port" ROLE 2>/dev/null | head -n 1 | grep -qx slave || continue
		for _ in $(seq 300); do
			redis-cli -p "$port" INFO replication 2>/dev/null | tr -d '\r' |
				grep -q '^master_link_status:up' && break
			sleep 0.1
		done
		redis-cli -p "$port" CLUSTER FAILOVER >/dev/null
		for _ in $(seq 300); do
			redis-cli -p "$port" ROLE 2>/dev/null | head -n 1 | grep -qx master && break
			sleep 0.1
		done
	done
	wait_ready && exit 0
	echo "the cluster did not heal within 30 s:" >&2
	redis-cli -p "${ports[0]}" CLUSTER NODES >&2
	exit 1
fi

if [[ $cmd == restart ]]; then
	port=${3:?usage: cluster_fixture.sh restart DIR PORT}
	line=$(grep -nx "$port" "$dir/ports" | cut -d: -f1)
	[[ -n $line ]] || { echo "no node on port $port in $dir" >&2; exit 1; }
	node_start "$port"
	pid=$!
	sed -i "${line}s/.*/$pid/" "$dir/pids"
	for _ in $(seq 250); do
		node_answers "$port" "$pid" && { echo "$pid"; exit 0; }
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.02
	done
	echo "the node on port $port did not start again; its log:" >&2
	tail -5 "$dir/node-$port/log" >&2
	exit 1
fi

mkdir -p "$dir" || exit 1
trap 'stop' ERR

# six ports p with p and p + 10000 free, from a random start; nodes on
# them, each checked to be ours (another suite starting at the same time may
# have taken a port between the look and the start): tried again elsewhere
start_nodes() {
	local p port pid
	: >"$dir/ports"
	: >"$dir/pids"
	p=$((20000 + (RANDOM * 32768 + RANDOM) % 20000))
	while (($(wc -l <"$dir/ports") < nodes)); do
		p=$((p + 1))
		((p != 6379 && p + 10000 != 6379)) || continue
		port_is_free "$p" && port_is_free $((p + 10000)) && echo "$p" >>"$dir/ports"
	done
	mapfile -t ports <"$dir/ports"
	for port in "${ports[@]}"; do
		mkdir -p "$dir/node-$port"
		rm -f "$dir/node-$port/nodes.conf"
		node_start "$port"
		echo $! >>"$dir/pids"
	done
	local i=0
	for port in "${ports[@]}"; do
		i=$((i + 1))
		pid=$(sed -n "${i}p" "$dir/pids")
		for _ in $(seq 200); do
			node_answers "$port" "$pid" && continue 2
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.02
		done
		return 1
	done
}
for attempt in $(seq 5); do
	start_nodes && break
	stop
	((attempt < 5)) || { echo "could not start $nodes nodes on free ports" >&2; exit 1; }
done

addrs=()
for port in "${ports[@]}"; do addrs+=("127.0.0.1:$port"); done
if ! redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
	>"$dir/create.log" 2>&1; then
	echo "redis-cli --cluster create failed:" >&2
	tail -20 "$dir/create.log" >&2
	stop
	exit 1
fi

if ! wait_ready; then
	echo "the cluster did not become ready within 30 s; the nodes' logs:" >&2
	for port in "${ports[@]}"; do tail -5 "$dir/node-$port/log" >&2; done
	stop
	exit 1
fi
echo "redis://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}" >"$dir/url"
trap - ERR
exit 0
