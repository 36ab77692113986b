/* policy: the decision of one lookup (SPEC 4.1), as a pure function: the
 * state a store gathered in, the verdict and the counters to bump out; no
 * I/O, no clock, no randomness of its own. The local store calls it;
 * src/lua/lookup.lua mirrors it line by line on the Redis server, where the
 * decision must be atomic, and tests/decisions.h holds the one table of
 * cases that both are proven against (test_policy, test_lookup_lua). */
#ifndef CACHEFENCE_POLICY_H
#define CACHEFENCE_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

/* the key's lock, as the lookup found it before deciding */
enum policy_lock {
	POLICY_LOCK_FREE,   /* nobody holds it: a verdict that takes it gets it */
	POLICY_LOCK_OURS,   /* ours already (a look again, a takeover) */
	POLICY_LOCK_OTHERS, /* another process holds it */
};

/* what the awaited leader left for its waiters */
enum policy_round {
	POLICY_ROUND_NONE,      /* nothing (yet) */
	POLICY_ROUND_DONE,      /* its result, stored or not */
	POLICY_ROUND_TOO_LARGE, /* the mark: its output was over --max-size */
};

struct policy_in {
	const struct entry_meta *entry; /* the key's sound entry, or NULL */
	int64_t now_ms;                 /* the store's clock, the one entry->created_ms is on */
	int64_t backoff_ms;             /* a failed refresh of this entry holds the next off
			      * until then (lookup.lua: the field 'bo'); 0: none */
	enum policy_lock lock;
	bool waiting;            /* a waiter looking again (lookup_req.awaited) */
	enum policy_round round; /* waiting: what its leader left */
	bool force;              /* --refresh: no entry counts */
	bool holder_gone;        /* a lock found free was let go by its holder (a kernel
			      * lock): a waiter that takes it counts a takeover
			      * from a holder gone, not from a lease run out */
	double beta;             /* XFetch factor; 0: no early refresh */
	double rand;             /* XFetch draw, uniform in (0, 1] */
};

struct policy_out {
	enum verdict verdict;
	bool take_lock;    /* the verdict takes the lock (never when it is another's) */
	bool refresh;      /* HIT, STALE: with the lock, refresh in the background */
	bool fallback;     /* LEAD: the stale-if-error entry stands behind it */
	int64_t age_ms;    /* HIT, STALE: the entry's age, 0 if from the future */
	unsigned counters; /* the counters to bump: a bit (1u << STAT_x) each */
};

/* decide one lookup from in; pure */
struct policy_out policy_decide(const struct policy_in *in);

/* the name of verdict v, as lookup.lua replies it */
const char *policy_verdict_name(enum verdict v);

#endif
