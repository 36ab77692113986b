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

# give the migration of $slot up: stable on its primary again, everywhere
end_migration() {
	local port
	for port in $CLUSTER_PRIMARIES; do
		[[ $(redis-cli -p "$port" CLUSTER SETSLOT "$slot" STABLE) == OK ]]
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
		cf_bg "c$i" --redis-timeout 10s -t 1m -k "$k" -- "$cmd" "$k"
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
