/* policy: the decision of one lookup. src/lua/lookup.lua is its mirror on
 * the Redis server, step for step: change both, and tests/decisions.h,
 * together (test_policy and test_lookup_lua hold them to the same table). */
#include "policy.h"

static const char *const verdict_names[] = {VERDICT_LIST(POLICY_TEXT)};

const char *policy_verdict_name(enum verdict v)
{
	return verdict_names[v];
}

/* the lock is taken: a waiter that takes it from nobody (not from itself)
 * took over from a leader whose lease ran out, or who let go by dying */
static void lead(const struct policy_in *in, struct policy_out *out, bool fallback)
{
	out->verdict = VERDICT_LEAD;
	out->take_lock = true;
	out->fallback = fallback;
	out->counters |= 1u << STAT_MISSES;
	if (in->waiting && in->lock == POLICY_LOCK_FREE)
		out->counters |= 1u << (in->holder_gone ? STAT_TAKEOVERS_GONE : STAT_TAKEOVERS);
}

/* judge the entry: true when it answers the call (HIT, STALE) or leads with
 * it as the fallback */
static bool judge_entry(const struct policy_in *in, struct policy_out *out)
{
	const struct entry_meta *m = in->entry;
	bool lockable = in->lock != POLICY_LOCK_OTHERS;
	/* a created-at in the future (a failover to a server whose clock is
	 * behind) counts as brand new */
	int64_t age = in->now_ms > m->created_ms ? in->now_ms - m->created_ms : 0;

	out->age_ms = age;
	switch (entry_freshness(m, m->created_ms + age)) {
	case ENTRY_FRESH:
		out->verdict = VERDICT_HIT;
		out->refresh = lockable && entry_xfetch_fires(m, age, in->beta, in->rand);
		out->counters |= 1u << STAT_HITS | (out->refresh ? 1u << STAT_EARLY : 0);
		break;
	case ENTRY_STALE:
		out->verdict = VERDICT_STALE;
		out->refresh = lockable;
		out->counters |= 1u << STAT_STALE | (out->refresh ? 1u << STAT_BACKGROUND : 0);
		break;
	case ENTRY_STALE_IF_ERROR:
		/* refresh now, and serve this entry if that fails; while someone
		 * else refreshes, or a failed refresh of it holds off the next,
		 * serve it at once */
		if (lockable && !(in->backoff_ms && in->now_ms < in->backoff_ms)) {
			lead(in, out, true);
			return true;
		}
		out->verdict = VERDICT_STALE;
		out->counters |= 1u << STAT_STALE;
		break;
	case ENTRY_EXPIRED:
		out->age_ms = 0;
		return false;
	}
	out->take_lock = out->refresh;
	return true;
}

struct policy_out policy_decide(const struct policy_in *in)
{
	struct policy_out out = {0};

	if (!in->force && in->entry && judge_entry(in, &out))
		return out;
	if (in->waiting && in->round == POLICY_ROUND_DONE) {
		out.verdict = VERDICT_DONE;
		return out;
	}
	if (in->waiting && in->round == POLICY_ROUND_TOO_LARGE) {
		out.verdict = VERDICT_BYPASS;
		return out;
	}
	if (in->lock != POLICY_LOCK_OTHERS) {
		lead(in, &out, false);
		return out;
	}
	out.verdict = VERDICT_WAIT;
	if (!in->waiting)
		out.counters |= 1u << STAT_WAITS;
	return out;
}
