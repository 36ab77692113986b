/* lease: the renewal thread. It sleeps on a condition variable between
 * renewals, so that lease_give_up() and lease_stop() reach it at once
 * unless a renewal is on the wire; that one ends within --redis-timeout. */
#include "lease.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

/* the thread's stack: a store call and what sanitizers add */
#define LEASE_STACK (512 * 1024)

struct lease {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC */
	int64_t every_ms;
	lease_fn renew, give_up;
	void *ctx;
	bool giving_up;      /* lease_give_up(): call give_up, then renew no more */
	bool stopping;       /* lease_stop(): end */
	bool busy;           /* in renew or give_up, the mutex let go */
	bool gave_up;        /* give_up was called */
	bool stopped;        /* lease_stop() returned: the store is not ours */
	pthread_cond_t idle; /* busy went false, or gave_up true */
};

static struct timespec monotonic_at(int64_t ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};

	return ts;
}

static void *lease_main(void *arg)
{
	struct lease *l = arg;
	int64_t next = monotonic_ms() + l->every_ms;
	bool renewing = true;

	pthread_mutex_lock(&l->mu);
	for (;;) {
		/* a give-up asked for goes out even when the stop came right after */
		/* (one asked for after lease_stop() returned is not: the store
		 * is the caller's then) */
		if (l->giving_up && renewing && !l->stopped) {
			renewing = false;
			l->busy = true;
			pthread_mutex_unlock(&l->mu);
			l->give_up(l->ctx);
			pthread_mutex_lock(&l->mu);
			l->busy = false;
			l->gave_up = true;
			pthread_cond_broadcast(&l->idle);
			continue;
		}
		if (l->stopping)
			break;
		if (renewing && monotonic_ms() >= next) {
			l->busy = true;
			pthread_mutex_unlock(&l->mu);
			l->renew(l->ctx);
			pthread_mutex_lock(&l->mu);
			l->busy = false;
			pthread_cond_broadcast(&l->idle);
			next = monotonic_ms() + l->every_ms;
			continue;
		}
		if (renewing) {
			struct timespec at = monotonic_at(next);
			pthread_cond_timedwait(&l->cv, &l->mu, &at);
		} else {
			pthread_cond_wait(&l->cv, &l->mu);
		}
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

struct lease *lease_start(int64_t every_ms, lease_fn renew, lease_fn give_up, void *ctx)
{
	struct lease *l = xcalloc(1, sizeof(*l));
	pthread_condattr_t ca;
	pthread_attr_t attr;
	sigset_t all, old;
	int rc;

	l->every_ms = every_ms > 0 ? every_ms : 1;
	l->renew = renew;
	l->give_up = give_up;
	l->ctx = ctx;
	pthread_mutex_init(&l->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&l->idle, NULL);
	/* signals are the leader's business (child.c's self-pipe) */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_attr_init(&attr);
	if (rc == 0) {
		(void)pthread_attr_setstacksize(&attr, LEASE_STACK);
		rc = pthread_create(&l->thread, &attr, lease_main, l);
		pthread_attr_destroy(&attr);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		err_set("cannot start a thread to renew the lock: %s", strerror(rc));
		pthread_cond_destroy(&l->idle);
		pthread_cond_destroy(&l->cv);
		pthread_mutex_destroy(&l->mu);
		free(l);
		return NULL;
	}
	return l;
}

void lease_give_up(struct lease *l)
{
	pthread_mutex_lock(&l->mu);
	l->giving_up = true;
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

void lease_stop(struct lease *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->mu);
	l->stopping = true;
	/* a give_up asked for goes out first (lease_main), and what the
	 * thread is doing ends before the store is the caller's. A thread
	 * asleep is left asleep: it sees stopping when it wakes, and its
	 * exit now would take a CPU from the path to the waiters' wake-up. */
	if (l->giving_up && !l->gave_up)
		pthread_cond_signal(&l->cv);
	while (l->busy || (l->giving_up && !l->gave_up))
		pthread_cond_wait(&l->idle, &l->mu);
	l->stopped = true;
	pthread_mutex_unlock(&l->mu);
}

void lease_free(struct lease *l)
{
	if (!l)
		return;
	lease_stop(l);
	pthread_mutex_lock(&l->mu);
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
	pthread_join(l->thread, NULL);
	pthread_cond_destroy(&l->idle);
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mu);
	free(l);
}
