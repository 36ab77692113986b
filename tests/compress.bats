#!/usr/bin/env bats
# --compress (issue 18): outputs stored as zstd frames, decompressed on the
# way to every reader, whatever the reader's own flags; damaged compressed
# bytes are a miss, or once some went out a cut-output exit, never garbage.
# Runs on the redis and file stores.

load lib/common

setup_file() { store_start; }
teardown_file() { store_stop; }
setup() { common_setup; }
teardown() { common_teardown; }

# JSON-like text of about MIB MiB into FILE: what command output often is
json_like() {
	python3 - "$1" "$2" <<-'EOF'
		import json, random, sys
		random.seed(7)
		want, out = int(sys.argv[1]) << 20, open(sys.argv[2], "w")
		i = size = 0
		while size < want:
		    line = json.dumps({"id": i, "user": "user%d" % random.randrange(50000),
		                       "email": "u%d@example.org" % random.randrange(50000),
		                       "score": round(random.random(), 4),
		                       "tags": random.sample(["red", "green", "blue", "ops", "web"], 2)}) + "\n"
		    out.write(line)
		    size += len(line)
		    i += 1
	EOF
}

# the stored size of user key KEY's stdout and its z field, "SIZE Z"
stored() {
	if store_is_redis; then
		echo "$(rcli HSTRLEN "cachefence:{$1}" out) $(rcli HGET "cachefence:{$1}" z)"
	else
		local f=$STORE_DIR/cachefence/$(key_hash "$1").entry
		echo "$(sed -n 's/^olen=//p' "$f" | head -n 1) $(sed -n 's/^z=//p' "$f" | head -n 1)"
	fi
}

@test "48 MiB of JSON-like text is stored at under a fifth of its size, and every reader gets it back whole, with --compress or without" {
	json_like 48 text
	cmd=$(counter_cmd textcmd "cat '$SCRATCH/text'")
	cf_to store --compress -t 1m -k text -- "$cmd"
	assert_status 0 store
	cmp store.out text
	read -r size z < <(stored text)
	raw=$(wc -c <text)
	[[ $z == "zstd:$raw:0" ]] || { echo "z field: $z" >&2; false; }
	((size * 5 <= raw)) || { echo "stored $size bytes of $raw" >&2; false; }
	cf_to hit -t 1m -k text -- "$cmd"
	cmp hit.out text
	assert_empty hit.err
	cf_to hit2 --compress -t 1m -k text -- "$cmd"
	cmp hit2.out text
	cf_to get get text
	cmp get.out text
	assert_eq "$(runs textcmd)" 1 "runs of COMMAND"
	cf_to inspect inspect --json text
	jq -e --argjson raw "$raw" --argjson size "$size" \
		'.size == $raw and .stored_size == $size and .compression == "zstd"' inspect.out >/dev/null ||
		{ cat inspect.out >&2; false; }
	cf_to text inspect text
	grep -q "^stored: *$size bytes, zstd (0\.[01][0-9]* of the size)$" text.out
}

@test "random bytes, an empty output, NUL bytes without a final newline and both streams round-trip; what does not shrink is stored as it is" {
	head -c 200000 /dev/urandom >random
	cf_to r1 --compress -t 1m -k random -- cat random
	cmp r1.out random
	read -r size z < <(stored random)
	assert_eq "$size" 200000 "stored bytes of random data"
	assert_eq "$z" "" "z field of random data"
	cf_to r2 -t 1m -k random -- false
	cmp r2.out random

	cf_to e1 --compress --compress-min 0 -t 1m -k empty -- true
	cf_to e2 -t 1m -k empty -- printf recomputed
	assert_status 0 e2
	assert_empty e2.out

	printf 'a\0b\0%.0s' $(seq 3000) >nul
	printf 'err\0line%.0s' $(seq 2000) >nulerr
	cmd=$(counter_cmd nulcmd "cat '$SCRATCH/nul'; cat '$SCRATCH/nulerr' >&2")
	cf_to n1 --compress --cache-stderr -t 1m -k nul -- "$cmd"
	read -r size z < <(stored nul)
	[[ $z == "zstd:$(wc -c <nul):$(wc -c <nulerr)" ]] || { echo "z field: $z" >&2; false; }
	cf_to n2 --cache-stderr -t 1m -k nul -- "$cmd"
	cmp n2.out nul
	cmp n2.err nulerr
	assert_eq "$(runs nulcmd)" 1 "runs of COMMAND"
}

@test "outputs of exactly 128 KiB, 1 MiB and 2 MiB (a frame that ends as the decoder's buffer fills) and of one byte more are hits, stored compressed" {
	for size in 131072 1048576 2097152 131073; do
		yes 'text that compresses well' | head -c "$size" >"t$size"
		cmd=$(counter_cmd "c$size" "cat '$SCRATCH/t$size'")
		cf_to "s$size" --compress -t 1m -k "k$size" -- "$cmd"
		read -r stored z < <(stored "k$size")
		[[ $z == "zstd:$size:0" ]] || { echo "z field: $z" >&2; false; }
		cf_to "h$size" -t 1m -k "k$size" -- "$cmd"
		assert_status 0 "h$size"
		cmp "h$size.out" "t$size"
		assert_empty "h$size.err"
		assert_eq "$(runs "c$size")" 1 "runs of COMMAND for $size bytes"
	done
}

@test "--compress-min: smaller outputs are stored as they are; --compress-min alone is a usage error" {
	yes 'a line of text' | head -c 100000 >lines
	cf_to small --compress --compress-min 200k -t 1m -k small -- cat lines
	read -r size z < <(stored small)
	assert_eq "$z" "" "z field under --compress-min"
	cf_to big --compress --compress-min 50k -t 1m -k big -- cat lines
	read -r size z < <(stored big)
	assert_eq "$z" "zstd:100000:0" "z field over --compress-min"
	cf_to alone --compress-min 1k -t 1m -- true
	assert_usage_error alone
	grep -q -- '--compress-min: only means something with --compress' alone.err
	cf_to bad --compress --compress-min lots -t 1m -- true
	assert_usage_error bad
}

@test "damaged compressed bytes of a small entry (a flipped bit, a cut frame, an unknown codec) are a miss: COMMAND runs, one warning, never garbage" {
	yes 'a line of text, the same each time' | head -c 400000 >lines
	cmd=$(counter_cmd linescmd "cat '$SCRATCH/lines'")
	n=0
	for pos in 5 40 -3; do # the frame is under 100 bytes
		cf_to "store$pos" --compress -t 1m -k lines -- "$cmd"
		flip_byte lines out "$pos"
		cf_to "read$pos" -t 1m -k lines -- "$cmd"
		n=$((n + 2))
		assert_status 0 "read$pos"
		cmp "read$pos.out" lines
		assert_one_line "read$pos.err" "cachefence: warning: the entry for key=lines does not decode"
		assert_eq "$(runs linescmd)" "$n" "runs after the flip at $pos"
		cf_to "clean$pos" invalidate lines
	done
	# the frame cut short, its sizes made to match (as a writer without
	# the codec's checks could)
	if store_is_redis; then
		# a frame that decodes to more than its entry says (a bomb) stops there
		cf_to store --compress -t 1m -k lines -- "$cmd"
		rcli HSET 'cachefence:{lines}' z 'zstd:10:0' >/dev/null
		cf_to bomb -t 1m -k lines -- "$cmd"
		cmp bomb.out lines
		grep -q 'decompress to more than their entry says' bomb.err
		cf_to store --compress -t 1m -k lines --refresh -- "$cmd"
		frame=$(rcli HSTRLEN 'cachefence:{lines}' out)
		"$BATS_TEST_DIRNAME/lib/entry_edit.py" redis "$REDIS_PORT" 'cachefence:{lines}' out = x
		rcli HSET 'cachefence:{lines}' olen 1 >/dev/null
		cf_to cut -t 1m -k lines -- "$cmd"
		cmp cut.out lines
		grep -q 'does not decode' cut.err
		rcli HSET 'cachefence:{lines}' z 'lz4:1:0' >/dev/null
		cf_to codec -t 1m -k lines -- "$cmd"
		cmp codec.out lines
		((frame > 1))
	fi
	cf_to final --compress -t 1m -k lines -- "$cmd"
	cf_to get get lines
	assert_status 0 get
	cmp get.out lines
}

@test "damaged compressed bytes of a 48 MiB entry: the output is cut with exit 125 and one line, the entry deleted, and the next call computes it anew" {
	json_like 48 text
	cmd=$(counter_cmd textcmd "cat '$SCRATCH/text'")
	cf_to store --compress -t 1m -k text -- "$cmd"
	read -r size z < <(stored text)
	flip_byte text out $((size - 100))
	cf_to cut -t 1m -k text -- "$cmd"
	assert_status 125 cut
	assert_one_line cut.err
	grep -q 'the stored output of key=text was cut off' cut.err
	cf_to again -t 1m -k text -- "$cmd"
	assert_status 0 again
	cmp again.out text
	assert_eq "$(runs textcmd)" 2 "runs of COMMAND"
}

@test "signed and compressed: a flipped bit in the compressed bytes is caught, and a good entry is served" {
	head -c 32 /dev/urandom | base64 >key
	chmod 600 key
	yes 'signed and compressed' | head -c 300000 >lines
	cmd=$(counter_cmd sc "cat '$SCRATCH/lines'")
	cf_to store --sign-key-file key --compress -t 1m -k sc -- "$cmd"
	cf_to hit --sign-key-file key -t 1m -k sc -- "$cmd"
	cmp hit.out lines
	assert_empty hit.err
	flip_byte sc out 10
	cf_to flipped --sign-key-file key -t 1m -k sc -- "$cmd"
	cmp flipped.out lines
	assert_one_line flipped.err
	assert_eq "$(runs sc)" 2 "runs of COMMAND"
}
