/* lease: a leader's lock kept alive from a thread of its own while COMMAND
 * runs, so that a renewal waiting on a slow store holds up no byte of the
 * output, no signal and no --timeout. The store is not thread-safe: the
 * leader leaves it to this thread from lease_start() to lease_stop(). */
#ifndef CACHEFENCE_LEASE_H
#define CACHEFENCE_LEASE_H

#include <stdint.h>

struct lease;

/* called from the lease's thread, with the store to itself */
typedef void (*lease_fn)(void *ctx);

/* call renew(ctx) every every_ms from a new thread until lease_give_up()
 * or lease_stop(); NULL with err_set() when no thread can be started */
struct lease *lease_start(int64_t every_ms, lease_fn renew, lease_fn give_up, void *ctx);
/* the result cannot be stored: renew no more, and call give_up(ctx) from
 * the thread as soon as a renewal in flight is done; once; returns at once */
void lease_give_up(struct lease *l);
/* stop the thread after what it is doing (a renewal, a give_up asked
 * for): once this returns, it calls neither again, and the store is the
 * caller's. The thread itself ends meanwhile; lease_free() reaps it.
 * Accepts NULL. */
void lease_stop(struct lease *l);
/* lease_stop(), then wait for the thread to end, and free the lease: apart
 * from lease_stop, so that a thread's exit is not on the path from
 * COMMAND's exit to the wake-up. Accepts NULL. */
void lease_free(struct lease *l);

#endif
