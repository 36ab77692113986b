/* decisions: the one table of cases of a lookup's decision (SPEC 4.1).
 * test_policy runs every case through policy_decide() (src/policy.c), and
 * test_lookup_lua runs the same cases through src/lua/lookup.lua on a real
 * redis-server (tests/decisions.bats): the two executors of the rules are
 * proven to agree. A case that changes here changes for both.
 *
 * Times are relative to the store's clock; they keep well away from every
 * boundary (seconds), so that the milliseconds between setting up a case on
 * the server and its script reading TIME cannot move it across one. */
#ifndef CACHEFENCE_TEST_DECISIONS_H
#define CACHEFENCE_TEST_DECISIONS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "policy.h"

struct decision_case {
	const char *name; /* reads as a sentence about behaviour */
	/* the entry, if has_entry: created age_ms before now (negative: ahead
	 * of the clock), its windows and compute time */
	bool has_entry;
	int64_t age_ms, ttl_ms, stale_ms, sie_ms, compute_ms;
	int64_t backoff_in_ms; /* a back-off ends this long from now (negative:
				* ended that long ago); 0: none */
	enum policy_lock lock;
	bool waiting;
	enum policy_round round;
	bool force;
	double beta, rand;
	/* what must come out */
	enum verdict verdict;
	bool refresh, fallback, take_lock;
	unsigned counters;
};

/* an entry fresh for a minute, stale for 30 s more, servable on a failed
 * refresh up to 2 min past its TTL, computed in 1 s */
#define ENTRY_AGED(age)                                                                            \
	.has_entry = true, .age_ms = (age), .ttl_ms = 60000, .stale_ms = 30000, .sie_ms = 120000,  \
	.compute_ms = 1000
#define ENTRY_WINDOWS(age, ttl, sw, se, dt)                                                        \
	.has_entry = true, .age_ms = (age), .ttl_ms = (ttl), .stale_ms = (sw), .sie_ms = (se),     \
	.compute_ms = (dt)
#define FRESH ENTRY_AGED(30000)
#define STALE ENTRY_AGED(70000)
#define SIE ENTRY_AGED(100000)
#define EXPIRED ENTRY_AGED(200000)
#define BETA(b, r) .beta = (b), .rand = (r)
#define NO_XFETCH BETA(1.0, 0.5) /* 30 s + 1 s * 1 * ln 2 is far from 60 s */
#define XFETCH BETA(100.0, 0.5)  /* 30 s + 1 s * 100 * ln 2 reaches it */
#define COUNT(c) (1u << (c))

static const struct decision_case decision_cases[] = {
	/* no entry */
	{"a miss with the lock free leads", .lock = POLICY_LOCK_FREE, NO_XFETCH,
	 .verdict = VERDICT_LEAD, .take_lock = true, .counters = COUNT(STAT_MISSES)},
	{"a miss with the lock held waits, counted once", .lock = POLICY_LOCK_OTHERS, NO_XFETCH,
	 .verdict = VERDICT_WAIT, .counters = COUNT(STAT_WAITS)},
	{"a miss with the lock ours already leads", .lock = POLICY_LOCK_OURS, NO_XFETCH,
	 .verdict = VERDICT_LEAD, .take_lock = true, .counters = COUNT(STAT_MISSES)},
	{"a waiter that looks again while the lock is held waits on, uncounted",
	 .lock = POLICY_LOCK_OTHERS, .waiting = true, NO_XFETCH, .verdict = VERDICT_WAIT},
	{"a waiter that finds the lock free takes over", .lock = POLICY_LOCK_FREE, .waiting = true,
	 NO_XFETCH, .verdict = VERDICT_LEAD, .take_lock = true,
	 .counters = COUNT(STAT_MISSES) | COUNT(STAT_TAKEOVERS)},
	{"a waiter whose lock is ours already (taken over) leads, no takeover counted",
	 .lock = POLICY_LOCK_OURS, .waiting = true, NO_XFETCH, .verdict = VERDICT_LEAD,
	 .take_lock = true, .counters = COUNT(STAT_MISSES)},
	{"a waiter gets its leader's result", .lock = POLICY_LOCK_OTHERS, .waiting = true,
	 .round = POLICY_ROUND_DONE, NO_XFETCH, .verdict = VERDICT_DONE},
	{"a waiter gets its leader's result before taking a free lock", .lock = POLICY_LOCK_FREE,
	 .waiting = true, .round = POLICY_ROUND_DONE, NO_XFETCH, .verdict = VERDICT_DONE},
	{"a waiter whose leader's output was too large bypasses", .lock = POLICY_LOCK_OTHERS,
	 .waiting = true, .round = POLICY_ROUND_TOO_LARGE, NO_XFETCH, .verdict = VERDICT_BYPASS},
	{"a waiter whose leader's output was too large bypasses a free lock",
	 .lock = POLICY_LOCK_FREE, .waiting = true, .round = POLICY_ROUND_TOO_LARGE, NO_XFETCH,
	 .verdict = VERDICT_BYPASS},
	{"a round result is not looked at by a caller that does not wait",
	 .lock = POLICY_LOCK_OTHERS, .round = POLICY_ROUND_DONE, NO_XFETCH, .verdict = VERDICT_WAIT,
	 .counters = COUNT(STAT_WAITS)},

	/* fresh */
	{"a fresh entry is a hit", FRESH, .lock = POLICY_LOCK_FREE, NO_XFETCH,
	 .verdict = VERDICT_HIT, .counters = COUNT(STAT_HITS)},
	{"a fresh entry whose XFetch draw fires refreshes early", FRESH, .lock = POLICY_LOCK_FREE,
	 XFETCH, .verdict = VERDICT_HIT, .refresh = true, .take_lock = true,
	 .counters = COUNT(STAT_HITS) | COUNT(STAT_EARLY)},
	{"an early refresh is left to the holder of the lock", FRESH, .lock = POLICY_LOCK_OTHERS,
	 XFETCH, .verdict = VERDICT_HIT, .counters = COUNT(STAT_HITS)},
	{"an early refresh under a lock ours already refreshes", FRESH, .lock = POLICY_LOCK_OURS,
	 XFETCH, .verdict = VERDICT_HIT, .refresh = true, .take_lock = true,
	 .counters = COUNT(STAT_HITS) | COUNT(STAT_EARLY)},
	{"beta 0 never refreshes early", FRESH, .lock = POLICY_LOCK_FREE, BETA(0.0, 0.0001),
	 .verdict = VERDICT_HIT, .counters = COUNT(STAT_HITS)},
	{"a draw of 1 never refreshes early", FRESH, .lock = POLICY_LOCK_FREE, BETA(1e9, 1.0),
	 .verdict = VERDICT_HIT, .counters = COUNT(STAT_HITS)},
	{"an entry with no compute time never refreshes early",
	 ENTRY_WINDOWS(30000, 60000, 0, 0, 0), .lock = POLICY_LOCK_FREE, BETA(1e9, 0.5),
	 .verdict = VERDICT_HIT, .counters = COUNT(STAT_HITS)},
	{"a just-created entry with a small beta is a plain hit", ENTRY_AGED(1000),
	 .lock = POLICY_LOCK_FREE, BETA(1.0, 0.01), .verdict = VERDICT_HIT,
	 .counters = COUNT(STAT_HITS)},
	{"an entry created ahead of the clock counts as brand new", ENTRY_AGED(-5000),
	 .lock = POLICY_LOCK_FREE, NO_XFETCH, .verdict = VERDICT_HIT, .counters = COUNT(STAT_HITS)},
	{"a fresh entry answers a waiter before its leader's result", FRESH,
	 .lock = POLICY_LOCK_OTHERS, .waiting = true, .round = POLICY_ROUND_DONE, NO_XFETCH,
	 .verdict = VERDICT_HIT, .counters = COUNT(STAT_HITS)},
	{"--refresh ignores a fresh entry and leads", FRESH, .lock = POLICY_LOCK_FREE,
	 .force = true, NO_XFETCH, .verdict = VERDICT_LEAD, .take_lock = true,
	 .counters = COUNT(STAT_MISSES)},
	{"--refresh ignores a fresh entry and waits for the holder", FRESH,
	 .lock = POLICY_LOCK_OTHERS, .force = true, NO_XFETCH, .verdict = VERDICT_WAIT,
	 .counters = COUNT(STAT_WAITS)},
	{"--refresh as a waiter gets its leader's result", FRESH, .lock = POLICY_LOCK_FREE,
	 .force = true, .waiting = true, .round = POLICY_ROUND_DONE, NO_XFETCH,
	 .verdict = VERDICT_DONE},

	/* stale */
	{"a stale entry is served and refreshed in the background", STALE, .lock = POLICY_LOCK_FREE,
	 NO_XFETCH, .verdict = VERDICT_STALE, .refresh = true, .take_lock = true,
	 .counters = COUNT(STAT_STALE) | COUNT(STAT_BACKGROUND)},
	{"a stale entry is served without a refresh while another holds the lock", STALE,
	 .lock = POLICY_LOCK_OTHERS, NO_XFETCH, .verdict = VERDICT_STALE,
	 .counters = COUNT(STAT_STALE)},
	{"a stale entry under a lock ours already is refreshed", STALE, .lock = POLICY_LOCK_OURS,
	 NO_XFETCH, .verdict = VERDICT_STALE, .refresh = true, .take_lock = true,
	 .counters = COUNT(STAT_STALE) | COUNT(STAT_BACKGROUND)},
	{"a waiter served a stale entry refreshes it, no takeover counted", STALE,
	 .lock = POLICY_LOCK_FREE, .waiting = true, NO_XFETCH, .verdict = VERDICT_STALE,
	 .refresh = true, .take_lock = true,
	 .counters = COUNT(STAT_STALE) | COUNT(STAT_BACKGROUND)},
	{"a stale entry with no stale window is expired", ENTRY_WINDOWS(70000, 60000, 0, 0, 1000),
	 .lock = POLICY_LOCK_FREE, NO_XFETCH, .verdict = VERDICT_LEAD, .take_lock = true,
	 .counters = COUNT(STAT_MISSES)},

	/* stale-if-error */
	{"a stale-if-error entry leads with it as the fallback", SIE, .lock = POLICY_LOCK_FREE,
	 NO_XFETCH, .verdict = VERDICT_LEAD, .fallback = true, .take_lock = true,
	 .counters = COUNT(STAT_MISSES)},
	{"a stale-if-error entry is served at once while another refreshes it", SIE,
	 .lock = POLICY_LOCK_OTHERS, NO_XFETCH, .verdict = VERDICT_STALE,
	 .counters = COUNT(STAT_STALE)},
	{"a stale-if-error entry is served at once while a back-off stands", SIE,
	 .backoff_in_ms = 30000, .lock = POLICY_LOCK_FREE, NO_XFETCH, .verdict = VERDICT_STALE,
	 .counters = COUNT(STAT_STALE)},
	{"a back-off that ended lets the next caller refresh", SIE, .backoff_in_ms = -30000,
	 .lock = POLICY_LOCK_FREE, NO_XFETCH, .verdict = VERDICT_LEAD, .fallback = true,
	 .take_lock = true, .counters = COUNT(STAT_MISSES)},
	{"a back-off with the lock held serves the entry", SIE, .backoff_in_ms = 30000,
	 .lock = POLICY_LOCK_OTHERS, NO_XFETCH, .verdict = VERDICT_STALE,
	 .counters = COUNT(STAT_STALE)},
	{"a waiter that takes a free lock over a stale-if-error entry took over", SIE,
	 .lock = POLICY_LOCK_FREE, .waiting = true, NO_XFETCH, .verdict = VERDICT_LEAD,
	 .fallback = true, .take_lock = true,
	 .counters = COUNT(STAT_MISSES) | COUNT(STAT_TAKEOVERS)},
	{"a waiter with the lock ours already leads with the fallback, no takeover", SIE,
	 .lock = POLICY_LOCK_OURS, .waiting = true, NO_XFETCH, .verdict = VERDICT_LEAD,
	 .fallback = true, .take_lock = true, .counters = COUNT(STAT_MISSES)},
	{"a stale-if-error entry is served before a waiter's leader's result", SIE,
	 .lock = POLICY_LOCK_OTHERS, .waiting = true, .round = POLICY_ROUND_DONE, NO_XFETCH,
	 .verdict = VERDICT_STALE, .counters = COUNT(STAT_STALE)},
	{"--refresh ignores a stale-if-error entry: no fallback", SIE, .lock = POLICY_LOCK_FREE,
	 .force = true, NO_XFETCH, .verdict = VERDICT_LEAD, .take_lock = true,
	 .counters = COUNT(STAT_MISSES)},

	/* expired */
	{"an expired entry is a miss that leads", EXPIRED, .lock = POLICY_LOCK_FREE, NO_XFETCH,
	 .verdict = VERDICT_LEAD, .take_lock = true, .counters = COUNT(STAT_MISSES)},
	{"an expired entry with the lock held waits", EXPIRED, .lock = POLICY_LOCK_OTHERS,
	 NO_XFETCH, .verdict = VERDICT_WAIT, .counters = COUNT(STAT_WAITS)},
	{"an expired entry gives a waiter its leader's result", EXPIRED, .lock = POLICY_LOCK_OTHERS,
	 .waiting = true, .round = POLICY_ROUND_DONE, NO_XFETCH, .verdict = VERDICT_DONE},
	{"an expired entry with a back-off set is still a miss", EXPIRED, .backoff_in_ms = 30000,
	 .lock = POLICY_LOCK_OTHERS, NO_XFETCH, .verdict = VERDICT_WAIT,
	 .counters = COUNT(STAT_WAITS)},
};

#define DECISION_CASES (sizeof(decision_cases) / sizeof(decision_cases[0]))

/* the names of the counters set in counters, each after a space, in out */
static inline void decision_counters_text(char *out, size_t len, unsigned counters)
{
	size_t n = 0;

	out[0] = '\0';
	for (int i = 0; i < STAT_COUNT && n < len; i++)
		if (counters & 1u << i)
			n += snprintf(out + n, len - n, " %s", stat_names[i]);
}

/* the store's clock in the C test; the Lua test uses the server's */
#define DECISION_NOW_MS INT64_C(1700000000000)

#endif
