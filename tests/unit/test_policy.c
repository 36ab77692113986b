/* Unit tests of the decision of a lookup (policy.c) on the shared table of
 * cases (decisions.h), which test_lookup_lua also runs through lookup.lua
 * on a redis-server; then what only the local store asks of the policy. */
#include <stdio.h>
#include <string.h>

#include "decisions.h"
#include "policy.h"
#include "tap.h"

/* the policy's input for case c, on a clock at now */
static struct policy_in case_input(const struct decision_case *c, struct entry_meta *m)
{
	struct policy_in in = {
		.now_ms = DECISION_NOW_MS,
		.lock = c->lock,
		.waiting = c->waiting,
		.round = c->round,
		.force = c->force,
		.beta = c->beta,
		.rand = c->rand,
	};

	memset(m, 0, sizeof(*m));
	if (c->has_entry) {
		m->created_ms = DECISION_NOW_MS - c->age_ms;
		m->ttl_ms = c->ttl_ms;
		m->stale_ms = c->stale_ms;
		m->sie_ms = c->sie_ms;
		m->compute_ms = c->compute_ms;
		in.entry = m;
	}
	if (c->backoff_in_ms)
		in.backoff_ms = DECISION_NOW_MS + c->backoff_in_ms;
	return in;
}

int main(void)
{
	struct entry_meta m;

	for (size_t i = 0; i < DECISION_CASES; i++) {
		const struct decision_case *c = &decision_cases[i];
		struct policy_in in = case_input(c, &m);
		struct policy_out out = policy_decide(&in);
		char got[256], want[256];

		decision_counters_text(got, sizeof(got), out.counters);
		decision_counters_text(want, sizeof(want), c->counters);
		ok(out.verdict == c->verdict && out.refresh == c->refresh &&
			   out.fallback == c->fallback && out.take_lock == c->take_lock &&
			   out.counters == c->counters,
		   "%s (%s refresh=%d fallback=%d take=%d:%s; want %s %d %d %d:%s)", c->name,
		   policy_verdict_name(out.verdict), out.refresh, out.fallback, out.take_lock, got,
		   policy_verdict_name(c->verdict), c->refresh, c->fallback, c->take_lock, want);
	}

	/* a kernel lock is free only when its holder let go or died */
	struct decision_case takeover = {.lock = POLICY_LOCK_FREE, .waiting = true};
	struct policy_in in = case_input(&takeover, &m);
	in.holder_gone = true;
	struct policy_out out = policy_decide(&in);
	ok(out.verdict == VERDICT_LEAD &&
		   out.counters == (COUNT(STAT_MISSES) | COUNT(STAT_TAKEOVERS_GONE)),
	   "a waiter that takes a lock its holder let go counts a takeover from a holder gone");

	/* the age reported with a served entry */
	struct decision_case stale = {STALE, .lock = POLICY_LOCK_OTHERS};
	in = case_input(&stale, &m);
	out = policy_decide(&in);
	ok(out.age_ms == 70000, "a served entry's age is on the store's clock");

	ok(strcmp(policy_verdict_name(VERDICT_BYPASS), "bypass") == 0 &&
		   strcmp(stat_names[STAT_TAKEOVERS], "lock_takeovers") == 0,
	   "verdicts and counters keep the names stats and lookup.lua have always used");
	return done_testing();
}
