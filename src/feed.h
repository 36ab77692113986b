/* feed: the caller's copy of a leader's output, written by a thread of its
 * own at whatever pace the caller reads, so that a reader that stalls holds
 * up nobody but itself: the leader meanwhile renews its lease, keeps its
 * --timeout, stores the result and wakes the waiters.
 *
 * The bytes come back from the spool files the leader writes anyway; only
 * what no spool holds (past --max-size, a full TMPDIR) is copied into
 * memory, up to a bound, and the leader stops reading COMMAND while the
 * feed is full. Both streams share one queue, so stdout and stderr reach a
 * shared terminal in the order they came. */
#ifndef CACHEFENCE_FEED_H
#define CACHEFENCE_FEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct feed;

/* start the writer thread; NULL with err_set() when no thread can be
 * started (RLIMIT_NPROC) */
struct feed *feed_new(void);
/* queue n bytes that sit in spool_fd at offset off, for the caller's
 * stream fd (stdout or stderr); spool_fd must stay open until feed_finish() */
void feed_spooled(struct feed *f, int fd, int spool_fd, uint64_t off, size_t n);
/* queue a copy of n bytes for the caller's fd */
void feed_copy(struct feed *f, int fd, const void *p, size_t n);
/* whether the feed holds as much as it may: read no more output until
 * feed_wake_fd() turns readable */
bool feed_full(struct feed *f);
/* a descriptor that turns readable when a full feed has room again; the
 * reader drains it with feed_drain_wake() */
int feed_wake_fd(const struct feed *f);
/* empty the wake descriptor after it turned readable */
void feed_drain_wake(struct feed *f);
/* wait until every queued byte went out (or the caller's stream failed,
 * see out_write), stop the thread and free the feed; accepts NULL */
void feed_finish(struct feed *f);

#endif
