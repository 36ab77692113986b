#!/usr/bin/env bats
# Least privilege (issue 18): cachefence as an ACL user with exactly the man
# page's rules (tests/lib/acl_rules; the acl store, see tests/lib/common.bash)
# needs nothing more, and a user without one of the rules is told which,
# with the rule to add: ping exits 125 with one line; a run fails open with
# COMMAND's output and status and one warning; a subcommand exits 125 with
# one line. rcli is the admin; cachefence runs as cf.

load lib/common

setup_file() {
	[[ $CACHEFENCE_TEST_STORE == acl ]] || skip "runs on the acl store only"
	store_start
}
teardown_file() { store_stop; }
setup() {
	common_setup
	acl_reset
}
teardown() { common_teardown; }

# give cf the man page's rules again, as the acl store's server started with
acl_reset() {
	acl_user_options
	[[ $(rcli ACL SETUSER cf reset "${ACL_USER[@]:2}") == OK ]]
}

# take the rules RULES... from cf (as an admin would: ACL SETUSER cf RULES...)
acl_change() {
	[[ $(rcli ACL SETUSER cf "$@") == OK ]]
}

# the commands of the man page's line, one per line, as its rules spell them
acl_commands() {
	acl_rule_words | sed -n 's/^+//p'
}

# fail unless a run's NAME.err is empty or one warning line
assert_no_more_than_a_warning() {
	[[ ! -s $1.err ]] || assert_one_line "$1.err" "cachefence: warning: "
}

# Run, as cf, what a run and the subcommands do, on a store with a small
# entry (pre), one over 1 MiB (big) and a tagged one (t0): a tagged miss, two
# hits, list, stats, invalidate --tag. Runs must give COMMAND's output and
# status with at most one warning line; subcommands exit 0, or 125 with one
# line. Every stderr line goes to all.err.
battery() {
	local name
	cf_to m -t 1m -k m --tag t -- sh -c 'printf "miss out"; exit 3'
	assert_status 3 m
	assert_bytes m.out 'miss out'
	assert_no_more_than_a_warning m
	cf_to pre -t 1m -k pre -- printf 'run again'
	assert_status 0 pre
	[[ $(<pre.out) == 'stored pre' || $(<pre.out) == 'run again' ]]
	assert_no_more_than_a_warning pre
	cf_to big -t 1m -k big -- cat "$SCRATCH/bigvalue"
	assert_status 0 big
	cmp big.out "$SCRATCH/bigvalue"
	assert_no_more_than_a_warning big
	for name in list stats; do
		cf_to "$name" "$name"
		[[ $status == 0 ]] || assert_usage_error "$name"
	done
	cf_to inv invalidate --tag t0
	[[ $status == 0 ]] || assert_usage_error inv
	cat m.err pre.err big.err list.err stats.err inv.err >all.err
}

# store the entries battery() reads, with cf's full rules, and make the
# server forget the scripts, so that runs load them with EVAL again
battery_entries() {
	[[ -s $SCRATCH/bigvalue ]] || head -c 1200000 /dev/urandom | base64 -w0 >"$SCRATCH/bigvalue"
	cf_to s1 -t 1h -k pre -- printf 'stored pre'
	cf_to s2 -t 1h -k big -- cat "$SCRATCH/bigvalue"
	cf_to s3 -t 1h -k t0 --tag t0 -- printf t0
	[[ ! -s s1.err && ! -s s2.err && ! -s s3.err ]]
	[[ $(rcli SCRIPT FLUSH) == OK ]]
}

@test "as the man page's ACL user: ping passes, dead leaders are taken over at once, and nothing is refused" {
	rcli ACL LOG RESET >/dev/null
	cf_to ping ping
	assert_status 0 ping
	assert_empty ping.err
	grep -qF "redis://cf@127.0.0.1:$REDIS_PORT/0: Redis " ping.out
	grep -qF 'a dead leader is taken over at once' ping.out
	battery_entries
	battery
	assert_empty all.err
	assert_bytes pre.out 'stored pre'
	# the server logged no refusal but SCRIPT LOAD's (ping's, optional)
	# and CLUSTER SLOTS's on a standalone server (none: it is in the line)
	rcli ACL LOG 100 | grep -A1 -x object | grep -vx -- 'object\|--' | sort -u >refused
	grep -vx 'script|load' refused && { echo "refused: $(cat refused)" >&2; false; }
	true
}

@test "a user without one required command: ping exits 125 naming it, runs fail open with one warning naming it" {
	for cmd in $(acl_commands); do
		case $cmd in
		cluster\|slots | client\|id | client\|list | info) continue ;; # optional: below
		esac
		acl_reset
		battery_entries
		acl_change "-$cmd"
		upper=${cmd^^}
		cf_to ping ping
		assert_usage_error ping || { echo "without +$cmd" >&2; false; }
		grep -qF "the ACL user cannot run $upper" ping.err ||
			{ echo "without +$cmd, ping said: $(cat ping.err)" >&2; false; }
		case $cmd in
		publish | subscribe)
			# waiters poll instead, without a warning (see the man page)
			battery
			assert_empty all.err
			;;
		ping) ;; # only ping sends it
		*)
			battery
			grep -qE "the ACL user cannot run ([A-Z|]+ or )*$upper\b.*\(add .*\+$cmd\b" all.err ||
				{ echo "without +$cmd, nothing named it: $(cat all.err)" >&2; false; }
			;;
		esac
		# entries the failed runs could not refresh are as they were
		acl_reset
		cf_to got get pre
		assert_bytes got.out 'stored pre'
	done
}

@test "EVAL refused: the first run after the server lost the scripts warns that the user cannot run EVAL" {
	acl_change -eval
	rcli SCRIPT FLUSH >/dev/null
	cf_to run -t 1m -k k -- sh -c 'echo out; exit 4'
	assert_status 4 run
	assert_bytes run.out 'out\n'
	assert_one_line run.err 'cachefence: warning: store unavailable: '
	grep -qF 'the ACL user cannot run EVAL (add +eval to it)' run.err
}

@test "without CLIENT or INFO ping passes and says a dead leader is taken over after its lease; runs do not warn" {
	for cmd in 'client|id' 'client|list' info cluster\|slots; do
		acl_reset
		acl_change "-$cmd"
		cf_to ping ping
		assert_status 0 ping
		assert_empty ping.err
		case $cmd in
		client\|id) grep -qF 'a dead leader is taken over after its lease (CLIENT ID is refused)' ping.out ;;
		client\|list) grep -qF 'a dead leader is taken over after its lease (CLIENT LIST is refused)' ping.out ;;
		info) grep -qF 'Redis unknown' ping.out ;;
		*) grep -qF 'a dead leader is taken over at once' ping.out ;;
		esac
		cf_to run -t 1m -k "k-$cmd" -- printf out
		assert_status 0 run
		assert_bytes run.out out
		assert_empty run.err
		cf_to hit -t 1m -k "k-$cmd" -- printf again
		assert_bytes hit.out out
		assert_empty hit.err
	done
}

@test "keys outside the user's patterns are named with the pattern to add, by ping and by a run" {
	acl_change resetkeys '~other:*'
	cf_to ping ping
	assert_usage_error ping
	grep -qF 'the ACL user cannot access keys cachefence:* (add ~cachefence:* to it)' ping.err
	cf_to run -t 1m -k k -- sh -c 'printf out; exit 5'
	assert_status 5 run
	assert_bytes run.out out
	assert_one_line run.err 'cachefence: warning: store unavailable: '
	grep -qF 'the ACL user cannot access keys cachefence:* (add ~cachefence:* to it)' run.err
}

@test "channels outside the user's patterns are named by ping; runs still store, without a warning" {
	acl_change resetchannels '&other:*'
	cf_to ping ping
	assert_usage_error ping
	grep -qF 'the ACL user cannot run PUBLISH (channels cachefence:*)' ping.err
	cf_to run -t 1m -k k -- printf out
	assert_status 0 run
	assert_empty run.err
	cf_to got get k
	assert_bytes got.out out
}

@test "a further namespace needs its own keys and channels: ACL SETUSER cf ~NS:* &NS:*" {
	cf_to before -n extra -t 1m -k k -- printf out
	assert_status 0 before
	assert_bytes before.out out
	grep -qF 'the ACL user cannot access keys extra:* (add ~extra:* to it)' before.err
	cf_to ping0 -n extra ping
	assert_usage_error ping0
	acl_change '~extra:*' '&extra:*'
	cf_to ping1 -n extra ping
	assert_status 0 ping1
	cf_to after -n extra -t 1m -k k -- printf out
	assert_empty after.err
	assert_eq "$(rcli EXISTS 'extra:{k}')" 1 "the entry in namespace extra"
}

@test "a database other than 0 needs +select; +config|get lets a missing one name the range" {
	cf_to none -u "redis://cf@127.0.0.1:$REDIS_PORT/1" ping
	assert_usage_error none
	grep -qF 'SELECT 1: the ACL user cannot run SELECT (add +select to it)' none.err
	cf_to run -u "redis://cf@127.0.0.1:$REDIS_PORT/1" -t 1m -k k -- printf out
	assert_status 0 run
	assert_bytes run.out out
	assert_one_line run.err 'cachefence: warning: store unavailable: '
	grep -qF 'the ACL user cannot run SELECT' run.err

	acl_change +select
	cf_to ping -u "redis://cf@127.0.0.1:$REDIS_PORT/1" ping
	assert_status 0 ping
	cf_to stored -u "redis://cf@127.0.0.1:$REDIS_PORT/1" -t 1m -k k -- printf out
	assert_empty stored.err
	assert_eq "$(rcli -n 1 EXISTS 'cachefence:{k}')" 1 "the entry in database 1"

	cf_to missing -u "redis://cf@127.0.0.1:$REDIS_PORT/99" ping
	assert_usage_error missing
	grep -qF "(see 'databases' in its redis.conf: 16 by default" missing.err
	acl_change '+config|get'
	cf_to named -u "redis://cf@127.0.0.1:$REDIS_PORT/99" ping
	assert_usage_error named
	grep -qF 'database 99 does not exist on this server (it has 16' named.err
}

@test "+script|load lets ping load the scripts; without it they load on first use" {
	cf_to without ping
	assert_status 0 without
	grep -qF 'scripts load on first use (SCRIPT LOAD is refused)' without.out
	acl_change '+script|load'
	cf_to with ping
	assert_status 0 with
	grep -qF 'scripts loaded' with.out
}
