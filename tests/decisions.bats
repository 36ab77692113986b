#!/usr/bin/env bats
# The shared table of decision cases (tests/unit/decisions.h) through the
# Redis store's executor of the rules, lookup.lua, on this suite's
# redis-server: unit_policy runs the same cases through src/policy.c, the
# local store's, so the two are proven to agree (issue #15).

load lib/common

setup_file() { store_start; }
teardown_file() { store_stop; }
setup() { common_setup; }
teardown() { common_teardown; }

@test "lookup.lua decides every case of the shared table as policy.c does" {
	require_redis
	local bin=${CACHEFENCE_TEST_LOOKUP_LUA:-$BATS_TEST_DIRNAME/../build/tests/test_lookup_lua}
	run "$bin" "$REDIS_PORT"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ $output == *"1.."* ]]
	[[ $output != *"not ok"* ]]
}
