/* The shared table of decision cases (decisions.h) run through lookup.lua,
 * the Redis store's executor of the rules, on a real redis-server: each case
 * is set up as keys (entry, back-off, lock, round result), the embedded
 * lookup script is run with the case's arguments, and its verdict, flags,
 * counters and lock are compared with the case's, as test_policy compares
 * policy.c's. tests/decisions.bats starts the server and runs this with its
 * port: test_lookup_lua PORT. TAP on stdout. */
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decisions.h"
#include "lua_scripts.h"
#include "policy.h"
#include "tap.h"

#define ENTRY_KEY "dt:k"
#define LOCK_KEY "dt:k:lock"
#define STATS_KEY "dt:stats"
#define OUR_TOKEN "0123456789abcdef0123456789abcdef"
#define OTHER_TOKEN "fedcba9876543210fedcba9876543210"
#define DONE_KEY "dt:k:done:" OTHER_TOKEN

static redisContext *rc;

/* a command that must succeed: a failing one ends the test (exit 2) */
static redisReply *cmd(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	redisReply *r = redisvCommand(rc, fmt, ap);
	va_end(ap);
	if (!r || r->type == REDIS_REPLY_ERROR) {
		fprintf(stderr, "redis: %s\n", r ? r->str : rc->errstr);
		exit(2);
	}
	return r;
}

/* the same, its reply dropped */
#define run(...) freeReplyObject(cmd(__VA_ARGS__))

/* the server's clock, ms */
static long long server_ms(void)
{
	redisReply *r = cmd("TIME");
	long long ms = atoll(r->element[0]->str) * 1000 + atoll(r->element[1]->str) / 1000;
	freeReplyObject(r);
	return ms;
}

/* a sound entry hash at key, created at ct */
static void put_entry(const char *key, long long ct, long long ttl, long long sw, long long se,
		      long long dt)
{
	run("HSET %s v %d st 0 ct %lld ttl %lld sw %lld se %lld dt %lld olen 2 elen 0 host h "
	    "out ok err %s",
	    key, FORMAT_VERSION, ct, ttl, sw, se, dt, "");
}

/* set up case c's keys on the server */
static void set_up(const struct decision_case *c)
{
	run("DEL %s %s %s %s", ENTRY_KEY, LOCK_KEY, STATS_KEY, DONE_KEY);
	long long now = server_ms();
	if (c->has_entry) {
		put_entry(ENTRY_KEY, now - c->age_ms, c->ttl_ms, c->stale_ms, c->sie_ms,
			  c->compute_ms);
		if (c->backoff_in_ms)
			run("HSET %s %s %lld", ENTRY_KEY, FIELD_BACKOFF, now + c->backoff_in_ms);
	}
	if (c->lock == POLICY_LOCK_OURS)
		run("SET %s %s PX 10000", LOCK_KEY, OUR_TOKEN " host=h pid=1");
	else if (c->lock == POLICY_LOCK_OTHERS)
		run("SET %s %s PX 10000", LOCK_KEY, OTHER_TOKEN " host=h pid=2");
	if (c->round == POLICY_ROUND_DONE)
		put_entry(DONE_KEY, now, 0, 0, 0, 0);
	else if (c->round == POLICY_ROUND_TOO_LARGE)
		run("SET %s %s PX 10000", DONE_KEY, MARK_TOO_LARGE);
}

/* the counters the case bumped, as a bit each (exactly 1 each, or -1) */
static long long counters_bumped(void)
{
	unsigned bits = 0;

	for (int i = 0; i < STAT_COUNT; i++) {
		redisReply *r = cmd("HGET %s %s", STATS_KEY, stat_names[i]);
		long long v = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
		freeReplyObject(r);
		if (v > 1)
			return -1;
		if (v == 1)
			bits |= 1u << i;
	}
	return bits;
}

static void check(const struct decision_case *c)
{
	char beta[ENTRY_XFETCH_ARG_MAX], draw[ENTRY_XFETCH_ARG_MAX];

	set_up(c);
	entry_xfetch_args(c->beta, c->rand, beta, draw);
	const char *argv[] = {
		"EVAL",
		lua_lookup.src,
		"4",
		ENTRY_KEY,
		LOCK_KEY,
		DONE_KEY,
		STATS_KEY,
		OUR_TOKEN,
		"10000",
		OUR_TOKEN " host=h pid=1",
		c->waiting ? "1" : "0",
		c->force ? "1" : "0",
		beta,
		draw,
		"k",
	};
	int argc = (int)(sizeof(argv) / sizeof(argv[0]));
	redisReply *r = redisCommandArgv(rc, argc, argv, NULL);
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
	    r->element[0]->type != REDIS_REPLY_STRING) {
		ok(0, "%s (lookup.lua failed: %s)", c->name,
		   r && r->type == REDIS_REPLY_ERROR ? r->str : "no verdict");
		freeReplyObject(r);
		return;
	}
	const char *verdict = r->element[0]->str;
	bool refresh = false, fallback = false;
	if (r->elements == 7 && r->element[5]->type == REDIS_REPLY_INTEGER)
		refresh = r->element[5]->integer == 1;
	if (r->elements == 2 && r->element[1]->type == REDIS_REPLY_INTEGER)
		fallback = r->element[1]->integer == 1;

	/* the lock after: ours exactly when the case takes it */
	redisReply *l = cmd("GET %s", LOCK_KEY);
	bool ours = l->type == REDIS_REPLY_STRING && strncmp(l->str, OUR_TOKEN, 32) == 0;
	freeReplyObject(l);

	long long counters = counters_bumped();
	char got[256], want[256];
	decision_counters_text(got, sizeof(got), counters < 0 ? 0 : (unsigned)counters);
	decision_counters_text(want, sizeof(want), c->counters);
	ok(strcmp(verdict, policy_verdict_name(c->verdict)) == 0 && refresh == c->refresh &&
		   fallback == c->fallback &&
		   ours == (c->take_lock || c->lock == POLICY_LOCK_OURS) && counters == c->counters,
	   "%s (%s refresh=%d fallback=%d ours=%d:%s; want %s %d %d %d:%s)", c->name, verdict,
	   refresh, fallback, ours, got, policy_verdict_name(c->verdict), c->refresh, c->fallback,
	   c->take_lock || c->lock == POLICY_LOCK_OURS, want);
	freeReplyObject(r);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: test_lookup_lua PORT\n");
		return 2;
	}
	rc = redisConnect("127.0.0.1", atoi(argv[1]));
	if (!rc || rc->err) {
		fprintf(stderr, "cannot connect to redis-server: %s\n", rc ? rc->errstr : "?");
		return 2;
	}
	for (size_t i = 0; i < DECISION_CASES; i++)
		check(&decision_cases[i]);
	redisFree(rc);
	return done_testing();
}
