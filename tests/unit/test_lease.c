/* lease: the renewal thread leaves the store to the caller once lease_stop()
 * returns, even when a renewal or a give-up is under way at that moment;
 * lease_free() then ends it. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "lease.h"
#include "tap.h"
#include "util.h"

struct probe {
	atomic_int renewals; /* renew calls begun */
	atomic_int inside;   /* renew or give_up running now */
	atomic_int gave_up;  /* give_up calls */
	atomic_int overlap;  /* a call began while another ran */
	int64_t renew_ms;    /* how long a renewal takes */
};

static void nap(int64_t ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static void enter(struct probe *p)
{
	if (atomic_fetch_add(&p->inside, 1) != 0)
		atomic_fetch_add(&p->overlap, 1);
}

static void renew(void *ctx)
{
	struct probe *p = ctx;

	enter(p);
	atomic_fetch_add(&p->renewals, 1);
	nap(p->renew_ms);
	atomic_fetch_sub(&p->inside, 1);
}

static void give_up(void *ctx)
{
	struct probe *p = ctx;

	enter(p);
	nap(p->renew_ms);
	atomic_fetch_add(&p->gave_up, 1);
	atomic_fetch_sub(&p->inside, 1);
}

/* stopped while a renewal is on the wire: lease_stop waits it out, and no
 * renewal begins after */
static void test_stop_mid_renewal(void)
{
	struct probe p = {.renew_ms = 200};
	struct lease *l = lease_start(10, renew, give_up, &p);

	ok(l != NULL, "a lease starts");
	while (atomic_load(&p.inside) == 0)
		nap(1);
	lease_stop(l);
	ok(atomic_load(&p.inside) == 0, "lease_stop returns only once the renewal in flight ended");
	int n = atomic_load(&p.renewals);
	nap(100);
	ok(atomic_load(&p.renewals) == n, "no renewal begins after lease_stop returned");
	lease_free(l);
	ok(atomic_load(&p.overlap) == 0, "renewals never overlapped");
}

/* a give-up asked for right before the stop still goes out, before
 * lease_stop returns */
static void test_give_up_then_stop(void)
{
	struct probe p = {.renew_ms = 50};
	struct lease *l = lease_start(60000, renew, give_up, &p);

	lease_give_up(l);
	lease_stop(l);
	ok(atomic_load(&p.gave_up) == 1 && atomic_load(&p.inside) == 0,
	   "a give-up asked for before lease_stop is done when it returns");
	lease_free(l);
	ok(atomic_load(&p.renewals) == 0, "a lease given up renews no more");
}

/* a thread asleep between renewals is left asleep by lease_stop, and
 * lease_free ends it at once rather than at its next renewal */
static void test_free_asleep(void)
{
	struct probe p = {.renew_ms = 0};
	struct lease *l = lease_start(60000, renew, give_up, &p);
	int64_t t0 = monotonic_ms();

	lease_stop(l);
	lease_free(l);
	ok(monotonic_ms() - t0 < 10000,
	   "lease_free ends a sleeping thread without waiting a period");
	ok(atomic_load(&p.renewals) == 0 && atomic_load(&p.gave_up) == 0,
	   "a lease stopped before its first period calls nothing");
	lease_stop(NULL);
	lease_free(NULL);
	ok(1, "lease_stop and lease_free accept NULL");
}

int main(void)
{
	test_stop_mid_renewal();
	test_give_up_then_stop();
	test_free_asleep();
	return done_testing();
}
