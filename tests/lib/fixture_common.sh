# fixture_common.sh: what the multi-server fixtures (cluster_fixture.sh,
# sentinel_fixture.sh) share; sourced, with $dir their working directory,
# whose pids file lists the servers they started.

# true if nothing accepts connections on 127.0.0.1:PORT
port_is_free() { ! (exec 9<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# stop every server in $dir/pids: TERM, up to 5 s to go, then KILL
stop() {
	local pid
	[[ -f $dir/pids ]] || return 0
	while read -r pid; do kill -TERM "$pid" 2>/dev/null; done <"$dir/pids"
	for _ in $(seq 100); do
		local alive=0
		while read -r pid; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$dir/pids"
		((alive)) || break
		sleep 0.05
	done
	while read -r pid; do kill -KILL "$pid" 2>/dev/null; done <"$dir/pids"
	rm -f "$dir/pids"
}
