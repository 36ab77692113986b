#!/usr/bin/env bats
# What a leader hands its waiters when its output is over --max-size, on
# both stores: nothing will be stored, so the waiters of that round run
# COMMAND themselves at once, together, instead of taking the lock one
# after another and running it once each in turn. Callers that come later
# lead again; with no waiters nothing changes.

load lib/common

setup_file() { store_start; }
teardown_file() { store_stop; }
setup() { common_setup; }
teardown() { common_teardown; }

# milliseconds since the epoch
now_ms() {
	date +%s%3N
}

@test "10 callers of a 1 s command whose output is over --max-size each get the whole output, in well under 10 s" {
	head -c 200000 /dev/urandom >data
	cmd=$(counter_cmd big "sleep 1; cat '$SCRATCH/data'")

	gate_close
	for i in $(seq 10); do
		cf_bg "c$i" -t 1m -k big --max-size 64k -- "$cmd"
	done
	sleep 1
	start=$(now_ms)
	gate_open
	for i in $(seq 10); do
		assert_eq "$(bg_status "c$i" 60)" 0 "status of caller $i"
	done
	elapsed=$(($(now_ms) - start))
	for i in $(seq 10); do
		cmp "c$i.out" data || { echo "caller $i did not get the whole output" >&2; false; }
		assert_at_most_one_line "c$i.err"
	done
	# the leader warns that its output was not stored; its waiters ran
	# COMMAND as a matter of course, with no warning
	assert_eq "$(cat c*.err | grep -c 'larger than --max-size')" 1 "warnings"
	assert_eq "$(runs big)" 10 "runs of COMMAND"
	# in turn they took 10 s or more; together, about two runs of 1 s
	((elapsed < 5000)) || { echo "10 callers took ${elapsed}ms" >&2; false; }
	cf_to got get big
	assert_status 1 got
}

@test "the waiters of an oversized round run COMMAND themselves with --stdin's bytes as its input" {
	head -c 100000 /dev/urandom >input
	cmd=$(counter_cmd filter "sleep 1; cat; echo \"filter ran\" >&2")

	gate_close
	for i in 1 2 3 4; do
		(
			[[ -e $SCRATCH/gate ]] && flock -s -w 60 "$SCRATCH/gate" true
			status=0
			"$CACHEFENCE_BIN" -t 1m --stdin --max-size 1k -- "$cmd" <input >"s$i.out" 2>"s$i.err" || status=$?
			echo $status >"s$i.status"
		) 3>&- 8>&- &
	done
	sleep 1
	gate_open
	wait
	for i in 1 2 3 4; do
		assert_eq "$(cat "s$i.status")" 0 "status of caller $i"
		cmp "s$i.out" input || { echo "caller $i: COMMAND did not read the same input" >&2; false; }
	done
	assert_eq "$(runs filter)" 4 "runs of COMMAND"
}

@test "an oversized output with no waiter passes through with one warning and is not stored; the next caller runs COMMAND again" {
	cmd=$(counter_cmd alone 'head -c 5000 /dev/zero | tr "\0" y; echo " run $n"')
	ys=$(head -c 5000 /dev/zero | tr '\0' y)

	cf_to first -t 1m -k alone --max-size 1k -- "$cmd"
	assert_status 0 first
	assert_eq "$(cat first.out)" "$ys run 1" "output of the first call"
	assert_one_line first.err "cachefence: warning:"
	cf_to second -t 1m -k alone --max-size 1k -- "$cmd"
	assert_status 0 second
	assert_eq "$(cat second.out)" "$ys run 2" "output of the second call"
	assert_one_line second.err "cachefence: warning:"
	assert_eq "$(runs alone)" 2 "runs of COMMAND"
}

@test "a caller that comes after an oversized round leads again and stores an output that now fits" {
	echo 5000 >size
	cmd=$(counter_cmd shrink "sleep 1; head -c \$(cat '$SCRATCH/size') /dev/zero | tr '\\0' z; echo \" run \$n\"")

	cf_bg leader -t 1m -k shrink --max-size 1k -- "$cmd"
	wait_for_file shrink.runs 30
	cf_bg waiter -t 1m -k shrink --max-size 1k -- "$cmd"
	assert_eq "$(bg_status leader)" 0 "status of the leader"
	assert_eq "$(bg_status waiter)" 0 "status of the waiter"
	assert_eq "$(runs shrink)" 2 "runs of COMMAND in the oversized round"

	echo 10 >size
	cf_to later -t 1m -k shrink --max-size 1k -- "$cmd"
	assert_status 0 later
	assert_eq "$(cat later.out)" "zzzzzzzzzz run 3" "output of the later caller"
	assert_empty later.err
	cf_to hit -t 1m -k shrink --max-size 1k -- "$cmd"
	assert_eq "$(cat hit.out)" "zzzzzzzzzz run 3" "output of the hit"
	assert_eq "$(runs shrink)" 3 "runs of COMMAND"
}
