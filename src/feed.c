/* feed: a writer thread and the queue of pieces it writes to the caller.
 * The thread only ever blocks in out_write() on the caller's descriptors
 * (or in pread on a spool); everything else it shares with the leader sits
 * under one mutex. */
#include "feed.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* the most bytes that no spool holds kept for a slow caller */
#define FEED_MEMORY_MAX (1024 * 1024)
/* the most pieces queued: each switch between stdout and stderr, and each
 * copy held in memory, is one */
#define FEED_PIECES_MAX 4096

/* a run of bytes for one of the caller's streams: in a spool, or held here */
struct piece {
	struct piece *next;
	int fd;       /* the caller's stream */
	int spool_fd; /* -1: the bytes are in data[] */
	uint64_t off;
	size_t len;
	char data[];
};

struct feed {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct piece *head, *tail;
	size_t npieces, memory;
	bool closing; /* feed_finish(): write what is queued, then end */
	bool waiting; /* the leader waits for room: tell it through wake */
	int wake[2];
};

static bool full_locked(const struct feed *f)
{
	return f->npieces >= FEED_PIECES_MAX || f->memory >= FEED_MEMORY_MAX;
}

/* write one piece to the caller; a failure is recorded by the output path */
static void deliver(const struct piece *p, char *buf, size_t bufsize)
{
	if (p->spool_fd < 0) {
		(void)out_write(p->fd, p->data, p->len);
		return;
	}
	uint64_t off = p->off;
	size_t left = p->len;
	while (left > 0 && !out_failed(p->fd)) {
		ssize_t r = pread(p->spool_fd, buf, left < bufsize ? left : bufsize, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			out_lost(p->fd, r < 0 ? errno : EIO);
			return;
		}
		if (out_write(p->fd, buf, r) < 0)
			return;
		off += r;
		left -= r;
	}
}

/* the writer thread's stack: its 64 KiB buffer and what out_write needs,
 * with room for sanitizers */
#define FEED_STACK (512 * 1024)

static void *feed_main(void *arg)
{
	struct feed *f = arg;
	char buf[65536];

	pthread_mutex_lock(&f->mu);
	for (;;) {
		while (!f->head && !f->closing)
			pthread_cond_wait(&f->cv, &f->mu);
		struct piece *p = f->head;
		if (!p)
			break;
		/* off the queue before the lock goes, so nothing is added to it */
		f->head = p->next;
		if (!f->head)
			f->tail = NULL;
		pthread_mutex_unlock(&f->mu);
		deliver(p, buf, sizeof(buf));
		pthread_mutex_lock(&f->mu);
		f->npieces--;
		if (p->spool_fd < 0)
			f->memory -= p->len;
		free(p);
		if (f->waiting && !full_locked(f)) {
			f->waiting = false;
			(void)!write(f->wake[1], "", 1);
		}
	}
	pthread_mutex_unlock(&f->mu);
	return NULL;
}

struct feed *feed_new(void)
{
	struct feed *f = xcalloc(1, sizeof(*f));
	sigset_t all, old;

	if (pipe(f->wake) < 0) {
		err_set("cannot make a pipe for the output thread: %s", strerror(errno));
		free(f);
		return NULL;
	}
	for (int i = 0; i < 2; i++) {
		fcntl(f->wake[i], F_SETFD, FD_CLOEXEC);
		fcntl(f->wake[i], F_SETFL, O_NONBLOCK);
	}
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, NULL);
	/* signals are the leader's business (its self-pipe): none for the thread */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	/* a small stack of its own: the default is RLIMIT_STACK (8 MiB) of
	 * address space, which a low RLIMIT_AS cannot spare */
	pthread_attr_t attr;
	int rc = pthread_attr_init(&attr);
	if (rc == 0) {
		(void)pthread_attr_setstacksize(&attr, FEED_STACK);
		rc = pthread_create(&f->thread, &attr, feed_main, f);
		pthread_attr_destroy(&attr);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		err_set("cannot start a thread to write the output: %s", strerror(rc));
		pthread_cond_destroy(&f->cv);
		pthread_mutex_destroy(&f->mu);
		close(f->wake[0]);
		close(f->wake[1]);
		free(f);
		return NULL;
	}
	return f;
}

/* append p to the queue and wake the thread; called with the lock held */
static void enqueue_locked(struct feed *f, struct piece *p)
{
	p->next = NULL;
	if (f->tail)
		f->tail->next = p;
	else
		f->head = p;
	f->tail = p;
	f->npieces++;
	pthread_cond_signal(&f->cv);
}

void feed_spooled(struct feed *f, int fd, int spool_fd, uint64_t off, size_t n)
{
	if (n == 0)
		return;
	pthread_mutex_lock(&f->mu);
	struct piece *t = f->tail;
	if (t && t->fd == fd && t->spool_fd == spool_fd && t->off + t->len == off) {
		t->len += n; /* the thread takes a piece off the queue before writing it */
	} else {
		struct piece *p = xmalloc(sizeof(*p));
		*p = (struct piece){.fd = fd, .spool_fd = spool_fd, .off = off, .len = n};
		enqueue_locked(f, p);
	}
	pthread_mutex_unlock(&f->mu);
}

void feed_copy(struct feed *f, int fd, const void *data, size_t n)
{
	if (n == 0)
		return;
	struct piece *p = xmalloc(sizeof(*p) + n);
	*p = (struct piece){.fd = fd, .spool_fd = -1, .len = n};
	memcpy(p->data, data, n);
	pthread_mutex_lock(&f->mu);
	f->memory += n;
	enqueue_locked(f, p);
	pthread_mutex_unlock(&f->mu);
}

bool feed_full(struct feed *f)
{
	pthread_mutex_lock(&f->mu);
	bool full = full_locked(f);
	if (full)
		f->waiting = true;
	pthread_mutex_unlock(&f->mu);
	return full;
}

int feed_wake_fd(const struct feed *f)
{
	return f->wake[0];
}

void feed_drain_wake(struct feed *f)
{
	char c[64];

	while (read(f->wake[0], c, sizeof(c)) > 0)
		;
}

void feed_finish(struct feed *f)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->mu);
	f->closing = true;
	pthread_cond_signal(&f->cv);
	pthread_mutex_unlock(&f->mu);
	pthread_join(f->thread, NULL);
	pthread_cond_destroy(&f->cv);
	pthread_mutex_destroy(&f->mu);
	close(f->wake[0]);
	close(f->wake[1]);
	free(f);
}
