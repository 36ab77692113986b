#!/usr/bin/env bats
# Redis Cluster (SPEC 9.3): what only a cluster can show. Runs on the
# 'cluster' store: 3 primaries and 3 replicas on loopback
# (tests/lib/cluster_fixture.sh); core, freshness and ops run against it
# too. The slot map is cached in the suite's own XDG_CACHE_HOME.

load lib/common

setup_file() { store_start; }
teardown_file() { store_stop; }
setup() { common_setup; }
teardown() { common_teardown; }

# the slot of a Redis name (CRC16 of its brace tag, as Redis hashes)
slot_of() {
	rcli CLUSTER KEYSLOT "$1"
}

# the port of the primary that serves SLOT
owner_port() {
	python3 - "$1" <(rcli CLUSTER SLOTS) <<-'EOF'
		import sys
		slot, lines = int(sys.argv[1]), open(sys.argv[2]).read().split()
		i = 0
		while i + 3 < len(lines):
		    if lines[i].isdigit() and lines[i + 1].isdigit() and lines[i + 3].isdigit():
		        if int(lines[i]) <= slot <= int(lines[i + 1]):
		            print(lines[i + 3])
		            break
		        i += 4
		    else:
		        i += 1
	EOF
}

# the node id of the primary on PORT
node_id() {
	redis-cli -p "$1" CLUSTER MYID
}

# Start moving the slot of the Redis name NAME from its primary to another
# and leave it half done (MIGRATING there, IMPORTING here); sets slot
start_migration() {
	local src dst= port
	slot=$(slot_of "$1")
	src=$(owner_port "$slot")
	for port in $CLUSTER_PRIMARIES; do [[ $port != "$src" ]] && { dst=$port; break; }; done
	[[ $(redis-cli -p "$dst" CLUSTER SETSLOT "$slot" IMPORTING "$(node_id "$src")") == OK ]]
	[[ $(redis-cli -p "$src" CLUSTER SETSLOT "$slot" MIGRATING "$(node_id "$dst")") == OK ]]
}

# move the slot of the Redis name NAME, with its keys, to the primary on
# port DST, as redis-cli --cluster reshard does for each slot
move_slot() {
	local slot src dst=$2 port key
	slot=$(slot_of "$1")
	src=$(owner_port "$slot")
	[[ $src != "$dst" ]] || return 0
	[[ $(redis-cli -p "$dst" CLUSTER SETSLOT "$slot" IMPORTING "$(node_id "$src")") == OK ]]
	[[ $(redis-cli -p "$src" CLUSTER SETSLOT "$slot" MIGRATING "$(node_id "$dst")") == OK ]]
	while read -r key; do
		[[ -n $key ]] || continue
		redis-cli -p "$src" MIGRATE 127.0.0.1 "$dst" "$key" 0 5000 >/dev/null
	done < <(redis-cli -p "$src" CLUSTER GETKEYSINSLOT "$slot" 1000)
	for port in $CLUSTER_PRIMARIES; do
		redis-cli -p "$port" CLUSTER SETSLOT "$slot" NODE "$(node_id "$dst")" >/dev/null
	done
}

# give the migration of $slot up: stable on its primary again, everywhere
end_migration() {
	local port
	for port in $CLUSTER_PRIMARIES; do
		[[ $(redis-cli -p "$port" CLUSTER SETSLOT "$slot" STABLE) == OK ]]
	done
}

# N user keys PREFIX0, PREFIX1, ... whose entries' slot is in LO..HI
# (CRC16 of the brace tag cachefence:{KEY}, as Redis hashes), one a line
keys_in_slots() {
	python3 - "$@" <<-'EOF'
		import sys
		lo, hi, n, prefix = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
		def crc16(data):
		    crc = 0
		    for b in data:
		        crc ^= b << 8
		        for _ in range(8):
		            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
		            crc &= 0xFFFF
		    return crc
		i = found = 0
		while found < n:
		    key = f"{prefix}{i}"
		    if lo <= crc16(key.encode()) % 16384 <= hi:
		        print(key)
		        found += 1
		    i += 1
	EOF
}

# the fixture's directory, and all six ports (the primaries first)
cluster_dir() { echo "$BATS_FILE_TMPDIR/cluster"; }
all_ports() { cat "$(cluster_dir)/ports"; }

# after a test that failed a primary over or killed one: the first three
# the primaries again, every replica in sync
heal() {
	"$BATS_TEST_DIRNAME/lib/cluster_fixture.sh" heal "$(cluster_dir)"
}

# the pid of the node on PORT
node_pid() {
	redis-cli -p "$1" INFO server | tr -d '\r' | sed -n 's/^process_id://p'
}

# the port of the replica of the primary on PORT
replica_of() {
	local id=$(node_id "$1")
	redis-cli -p "$1" CLUSTER NODES | awk -v id="$id" '$4 == id { split($2, a, "[:@]"); print a[2]; exit }'
}

# a COMMAND that logs the key it ran for to SCRATCH/keyruns, takes SECONDS
# and prints "output of KEY"; how often it ran for KEY: key_runs KEY
key_cmd() {
	cat >"$SCRATCH/key_cmd" <<-EOF
		#!/bin/sh
		echo "\$1" >>"$SCRATCH/keyruns"
		sleep $1
		echo "output of \$1"
	EOF
	chmod +x "$SCRATCH/key_cmd"
	echo "$SCRATCH/key_cmd"
}
key_runs() { grep -cxF -- "$1" "$SCRATCH/keyruns" || true; }

# N callers over KEYS (an array name) in the background, named PREFIXi,
# caller i asking for key i mod the number of keys, with ARGS... before
# the COMMAND (key_cmd's) and its key
callers() {
	local n=$1 prefix=$2 keys_name=$3 cmd=$4
	shift 4
	local -n keys_ref=$keys_name
	local i
	for ((i = 0; i < n; i++)); do
		local k=${keys_ref[i % ${#keys_ref[@]}]}
		cf_bg "$prefix$i" "$@" -k "$k" -- "$cmd" "$k"
	done
}

# every caller PREFIXi of callers() exited 0 with its key's output
callers_served() {
	local n=$1 prefix=$2 keys_name=$3 limit=${4:-120}
	local -n keys_ref=$keys_name
	local i
	for ((i = 0; i < n; i++)); do
		local k=${keys_ref[i % ${#keys_ref[@]}]}
		assert_eq "$(bg_status "$prefix$i" "$limit")" 0 "status of caller $prefix$i (key $k)" ||
			{ cat "$prefix$i.err" >&2; return 1; }
		assert_bytes "$prefix$i.out" "output of $k\n" || { cat "$prefix$i.err" >&2; return 1; }
	done
}

# A failover under load: 60 callers over 12 keys PREFIX0..11 (a 2 s
# COMMAND, --redis-timeout TIMEOUT), the first key's primary in $victim and
# its replica in $replica; then load_end TIMEOUT: 40 more callers, every
# caller served, the replica a primary, COMMAND at most twice a key
load_start() {
	victim=$(owner_port "$(slot_of "cachefence:{${1}0}")")
	replica=$(replica_of "$victim")
	mapfile -t keys < <(seq -f "$1%g" 0 11)
	cmd=$(key_cmd 2)
	: >"$SCRATCH/keyruns"
	callers 60 a keys "$cmd" --redis-timeout "$2" -t 10m
	sleep 0.5
}
load_end() {
	callers 40 b keys "$cmd" --redis-timeout "$1" -t 10m
	callers_served 60 a keys 180
	callers_served 40 b keys 180
	redis-cli -p "$replica" ROLE | head -n 1 | grep -qx master
	local k
	for k in "${keys[@]}"; do
		assert_le "$(key_runs "$k")" 2 "runs for $k"
	done
}

# the cached slot map file (there is one per seed list)
map_file() {
	ls "$XDG_CACHE_HOME"/cachefence-cluster/* 2>/dev/null | grep -v '\.tmp$' | head -n 1
}

@test "200 callers over 50 keys spread over the three primaries: each COMMAND runs once, and every caller prints its key's output" {
	cmd=$(counter_cmd spread 'sleep 1; echo "output of $1"')
	for i in $(seq 0 199); do
		k=key$((i % 50))
		# an hour: on a loaded machine the 200 can take over a minute,
		# and the entries must still be there to be counted below
		cf_bg "c$i" --redis-timeout 10s -t 1h -k "$k" -- "$cmd" "$k"
	done
	for i in $(seq 0 199); do
		assert_eq "$(bg_status "c$i" 120)" 0 "status of caller $i"
		assert_bytes "c$i.out" "output of key$((i % 50))\n"
	done
	assert_eq "$(runs spread)" 50 "runs of COMMAND for 50 keys"
	# the keys landed on every primary
	for port in $CLUSTER_PRIMARIES; do
		n=$(redis-cli -p "$port" --scan --pattern 'cachefence:{key*}' | wc -l)
		((n > 0)) || { echo "no entry on the primary at port $port" >&2; false; }
	done
}

@test "a cached slot map gone stale (every slot on one primary) is corrected by the first MOVED, in memory and on disk" {
	cf_to warm -t 1m -k warm -- printf warm
	assert_status 0 warm
	map=$(map_file)
	[[ -n $map ]] || { echo "no slot map cached after a run" >&2; false; }
	first=${CLUSTER_PRIMARIES%% *}
	printf 'cachefence-slots 1\n0 16383 127.0.0.1 %s\n' "$first" >"$map"
	cmd=$(counter_cmd stale 'echo "value of $1"')
	for k in a b c d e f g h; do
		cf_to "miss$k" -t 1m -k "$k" -- "$cmd" "$k"
		assert_status 0 "miss$k"
		assert_bytes "miss$k.out" "value of $k\n"
		cf_to "hit$k" -t 1m -k "$k" -- "$cmd" "$k"
		assert_bytes "hit$k.out" "value of $k\n"
	done
	assert_eq "$(runs stale)" 8 "runs of COMMAND"
	# the file names all three primaries again
	assert_eq "$(awk 'NR > 1 { print $4 }' "$map" | sort -u | wc -l)" 3 "primaries in the cached map"
}

@test "a cached map file that is not ours alone, or garbage, is not used, and nothing breaks" {
	cf_to warm -t 1m -k warm2 -- printf warm
	map=$(map_file)
	[[ -n $map ]] || { echo "no slot map cached after a run" >&2; false; }
	printf 'garbage\0\n' >"$map"
	cf_to garbage -t 1m -k g1 -- printf one
	assert_status 0 garbage
	assert_bytes garbage.out 'one'
	chmod 0644 "$map"
	cf_to shared -t 1m -k g2 -- printf two
	assert_status 0 shared
	assert_bytes shared.out 'two'
	cf_to hit -t 1m -k g1 -- printf recomputed
	assert_bytes hit.out 'one'
}

@test "SCRIPT FLUSH on every primary: the next run loads the scripts again and hits" {
	cf_to first -t 1m -k flushed -- printf stored
	for port in $CLUSTER_PRIMARIES; do
		[[ $(redis-cli -p "$port" SCRIPT FLUSH) == OK ]]
	done
	cf_to again -t 1m -k flushed -- printf recomputed
	assert_status 0 again
	assert_bytes again.out 'stored'
	assert_empty again.err
}

@test "a slot that stays half migrated (MIGRATING on its primary, IMPORTING on another): a call ends within its bound with the right output and status, and the entry is a hit once the slot is home" {
	k=moving
	cf_to before -t 1m -k "$k" -- printf 'before the move'
	assert_status 0 before
	start_migration "cachefence:{$k}"
	# the entry is there, its lock is not: a script of several keys gets
	# TRYAGAIN (or ASK) while the slot moves; a call serves the entry or
	# runs COMMAND uncached with a warning, never hangs
	SECONDS=0
	cf_to during -t 1m -k "$k" -- printf 'run during the move'
	((SECONDS < 10)) || { echo "the call took $SECONDS s" >&2; false; }
	assert_status 0 during
	case $(cat during.out) in
	'before the move') ;;
	'run during the move') grep -q 'running COMMAND uncached' during.err ;;
	*) echo "unexpected output: $(cat during.out)" >&2; false ;;
	esac
	# the migration given up: the slot is stable on its primary again
	end_migration
	cf_to after -t 1m -k "$k" -- printf recomputed
	assert_status 0 after
	assert_bytes after.out 'before the move'
}

@test "a slot migration that ends within --redis-timeout is waited out: the call is a hit, not an uncached run" {
	k=brief
	cf_to before -t 1m -k "$k" -- printf 'stored before'
	assert_status 0 before
	start_migration "cachefence:{$k}"
	cf_bg during -v --redis-timeout 5s -t 1m -k "$k" -- printf 'run during the move'
	sleep 0.7
	end_migration
	assert_eq "$(bg_status during 30)" 0 "status of the call"
	assert_bytes during.out 'stored before'
	! grep -q 'uncached' during.err || { cat during.err >&2; false; }
}

@test "a hit with the slot map cached is one connection and one command, both on its key's primary" {
	cf_to first -t 1m -k one-trip -- printf stored
	assert_status 0 first
	owner=$(owner_port "$(slot_of 'cachefence:{one-trip}')")
	# the connections each node took (each reading is one more)
	connections() {
		local port
		for port in $(all_ports); do echo "$port $(connections_taken "$port")"; done
	}
	# the commands clients sent the primaries (MONITOR; not the scripts' own)
	local port pids=()
	for port in $CLUSTER_PRIMARIES; do
		timeout 20 stdbuf -oL redis-cli -p "$port" MONITOR >"monitor.$port" &
		pids+=($!)
	done
	sleep 0.3
	connections >before
	cf_to hit -t 1m -k one-trip -- printf recomputed
	connections >after
	sleep 0.3
	kill "${pids[@]}"
	wait "${pids[@]}" || true
	assert_bytes hit.out 'stored'
	assert_one_connection_to before after "$owner"
	for port in $CLUSTER_PRIMARIES; do
		want=0
		[[ $port == "$owner" ]] && want=1
		sent=$(grep -v ' lua\] \|"INFO"\|"PING"\|"REPLCONF"' "monitor.$port" | grep -c '^[0-9.]* \[' || true)
		assert_eq "$sent" "$want" "commands the hit sent to the node on port $port"
	done
	grep -q '"EVALSHA"' "monitor.$owner"
}

@test "a cold key whose slot stays half migrated: ASK, then TRYAGAIN from the importing node until --redis-timeout, then one uncached run with the right output" {
	k=asked
	start_migration "cachefence:{$k}"
	# nothing of the entry is on its primary, which sends us on with ASK;
	# the importing node has not all the keys of the script (never the
	# lock) and answers TRYAGAIN until the slot is done
	cmd=$(counter_cmd asked 'echo "value of $1"')
	SECONDS=0
	cf_to cold --redis-timeout 2s -t 1m -k "$k" -- "$cmd" "$k"
	elapsed=$SECONDS
	end_migration
	assert_status 0 cold
	assert_bytes cold.out 'value of asked\n'
	grep -q 'TRYAGAIN.*running COMMAND uncached' cold.err || { cat cold.err >&2; false; }
	((elapsed >= 1 && elapsed < 10)) || { echo "the call took $elapsed s" >&2; false; }
	assert_eq "$(runs asked)" 1 "runs of COMMAND"
	# the slot home again: a run stores, the next one hits
	cf_to again -t 1m -k "$k" -- "$cmd" "$k"
	cf_to hit -t 1m -k "$k" -- "$cmd" "$k"
	assert_bytes hit.out 'value of asked\n'
	assert_eq "$(runs asked)" 2 "runs of COMMAND"
}

@test "resharding under load: callers, leaders and a stale refresh while the slots in use move; nothing torn or foreign, every caller its key's bytes" {
	src=$(owner_port 0)
	for port in $CLUSTER_PRIMARIES; do [[ $port != "$src" ]] && { dst=$port; break; }; done
	# keys in the 1000 slots reshard moves first (src's lowest)
	mapfile -t cold < <(keys_in_slots 0 999 8 cold)
	mapfile -t stale < <(keys_in_slots 0 999 4 stale)
	cmd=$(key_cmd 1)
	for k in "${stale[@]}"; do
		cf_to "pre-$k" -t 1s --stale 10m -k "$k" -- "$cmd" "$k"
		assert_status 0 "pre-$k"
	done
	sleep 1.1 # the stale ones past their TTL: their next callers refresh them
	: >"$SCRATCH/keyruns"
	all=("${cold[@]}" "${stale[@]}")
	redis-cli --cluster reshard "127.0.0.1:$src" --cluster-from "$(node_id "$src")" \
		--cluster-to "$(node_id "$dst")" --cluster-slots 1000 --cluster-yes \
		>reshard.log 2>&1 &
	reshard=$!
	callers 48 a all "$cmd" --redis-timeout 10s -t 10m --stale 10m
	sleep 0.3
	callers 48 b all "$cmd" --redis-timeout 10s -t 10m --stale 10m
	wait "$reshard" || { tail -20 reshard.log >&2; false; }
	callers 24 c all "$cmd" --redis-timeout 10s -t 10m --stale 10m
	callers_served 48 a all
	callers_served 48 b all
	callers_served 24 c all
	# the slots moved, with the entries in them
	assert_eq "$(owner_port "$(slot_of "cachefence:{${cold[0]}}")")" "$dst" "owner after the reshard"
	for k in "${all[@]}"; do
		assert_le "$(key_runs "$k")" 2 "runs for $k"
		cf_to "after-$k" -t 10m -k "$k" -- false
		assert_status 0 "after-$k"
		assert_bytes "after-$k.out" "output of $k\n"
	done
}

@test "the slot moves while the leader of an 8 MiB output runs: its store, redirected, is sent again whole from the start, and the next call hits those bytes" {
	head -c $((8 * 1024 * 1024)) /dev/urandom >big
	cmd=$(counter_cmd moved "$(hold_until "$SCRATCH/go"); cat '$SCRATCH/big'")
	cf_bg leader --redis-timeout 10s -t 1h -k moved-big -- "$cmd"
	wait_for_file moved.runs 30
	sleep 0.3 # the lock taken, its lease renewed on the old primary
	src=$(owner_port "$(slot_of 'cachefence:{moved-big}')")
	for port in $CLUSTER_PRIMARIES; do [[ $port != "$src" ]] && { dst=$port; break; }; done
	move_slot 'cachefence:{moved-big}' "$dst"
	touch go
	assert_eq "$(bg_status leader 60)" 0 "status of the leader"
	cmp leader.out big
	assert_empty leader.err
	assert_eq "$(redis-cli -p "$dst" EXISTS 'cachefence:{moved-big}')" 1 "the entry on the slot's new primary"
	cf_to hit -t 1h -k moved-big -- "$cmd"
	assert_status 0 hit
	cmp hit.out big
	assert_eq "$(runs moved)" 1 "runs of COMMAND"
}

@test "CLUSTER FAILOVER on a replica under load: every caller its key's bytes, COMMAND at most twice a key" {
	load_start fo 15s
	[[ $(redis-cli -p "$replica" CLUSTER FAILOVER) == OK ]]
	load_end 15s
	heal
}

@test "kill -9 of a primary under load: ping names it, its replica takes over, every caller its key's bytes, COMMAND at most twice a key" {
	load_start kill 20s
	# the replica held back, so ping sees the primary gone before any failover
	held=$(node_pid "$replica")
	kill -STOP "$held"
	gone=$(node_pid "$victim")
	kill -KILL "$gone"
	# the signal is sent; on a busy machine the node may serve a while yet
	for _ in $(seq 500); do proc_alive "$gone" || break; sleep 0.01; done
	# and ping after the others marked it failed (they answer CLUSTERDOWN to
	# every keyed command then): ping still names the node that is gone,
	# not CLUSTERDOWN (a busy CI machine got there first and said that)
	other=$(for port in $CLUSTER_PRIMARIES; do [[ $port != "$victim" ]] && echo "$port"; done | head -n 1)
	for _ in $(seq 300); do # the node timeout (5 s) and the reports' gossip
		redis-cli -p "$other" CLUSTER INFO | tr -d '\r' | grep -qx 'cluster_state:fail' && break
		sleep 0.1
	done
	redis-cli -p "$other" CLUSTER INFO | tr -d '\r' | grep -qx 'cluster_state:fail'
	cf_to ping ping
	kill -CONT "$held"
	# a line for each node that answered, then the failure
	assert_status 125 ping || { cat ping.out >&2; false; }
	assert_one_line ping.err
	grep -qF "127.0.0.1:$victim" ping.err
	assert_eq "$(grep -c '^  127\.0\.0\.1:[0-9]*: Redis' ping.out)" 2 "primaries ping reached"
	load_end 20s
	pid=$("$BATS_TEST_DIRNAME/lib/cluster_fixture.sh" restart "$(cluster_dir)" "$victim")
	redis_watchdog "$CLUSTER_SUITE_PID" "$pid"
	heal
}
