/* store: what the decisions in run.c need from a cache backend, and nothing
 * more. Redis (store_redis.c) and a local directory (store_file.c and its
 * parts, store_file.h) implement it; nothing above this interface knows
 * which one is in use or includes hiredis.
 *
 * Values flow as streams: a hit writes the stored bytes straight to the
 * caller's file descriptors, and a result is stored from the file the leader
 * spooled COMMAND's output into, so no layer needs to hold a value twice. */
#ifndef CACHEFENCE_STORE_H
#define CACHEFENCE_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "entry.h"
#include "parse.h"
#include "policy_names.h"

/* the two streams of an entry's bytes, as sink_write() takes them */
enum sink_stream { SINK_OUT, SINK_ERR };

/* how much a holding sink keeps back in memory before it must write */
#define SINK_HOLD_MAX INLINE_MAX

/* where stored bytes are written on a hit; err_fd -1 drops stored stderr */
struct sink {
	int out_fd;
	int err_fd;
	bool write_failed; /* a write to the caller failed (EPIPE, ENOSPC, ...): no more are tried */
	bool partial;      /* bytes were handed over (sink_write): a store must not read the
			    * entry again into the same sink */
	bool emitted;      /* bytes went out to out_fd or err_fd: if the store fails after,
			    * they cannot be taken back, and COMMAND must not run on top */
	/* Signed entries (sign.h): every byte handed over goes to tap first
	 * (which: a sink_stream), and with hold the first SINK_HOLD_MAX bytes
	 * are kept back until sink_release() writes them or sink_drop() drops
	 * them, so that an entry of up to that size is checked before a byte of
	 * it is written; past that, the bytes go on as they come. */
	void (*tap)(void *ctx, int which, const void *p, size_t n);
	void *tap_ctx;
	/* NULL, or asked at sink_start whether an entry can pass at all; one
	 * it refuses (unsigned, or signed with no key we have) takes no byte
	 * to the caller, however large */
	bool (*vet)(void *ctx, const struct entry_meta *m);
	void *vet_ctx;
	bool refused;
	bool hold;
	struct buf held[2]; /* by sink_stream */
	/* a compressed entry (sink_start): its bytes are decompressed on their
	 * way, and held back as above, so that a small one that does not
	 * decompress is never written */
	struct codec_dec *dec; /* made at the first compressed entry; sink_drop frees it */
	bool compressed;
	bool damaged;            /* the compressed bytes do not decode; nothing more goes out */
	enum sink_stream stream; /* the frame being decoded */
	uint64_t raw_want[2], raw_got[2];
	/* how many bytes of each stream (as the caller gets them) the entry's
	 * read has handed on, and how many an earlier read of it that broke
	 * off had (sink_resume): those are not handed on again */
	uint64_t at[2], resume_at[2];
};

struct codec_dec;

/* what a lookup decided (policy.h; the names are lookup.lua's, policy_names.h):
 * HIT     a fresh entry: its bytes went to the sink
 * STALE   a stale entry, servable: its bytes went to the sink
 * DONE    the awaited leader's round result (even a failure): bytes sent
 * LEAD    no usable entry and the lock is ours: run COMMAND
 * WAIT    no usable entry and another process holds the lock
 * BYPASS  the awaited leader's output was over --max-size: nothing will be
 *         stored this round, run COMMAND uncached at once */
enum verdict { VERDICT_LIST(POLICY_ENUM) };

/* how long a leader's mark "over --max-size: run it yourselves" stays for
 * the waiters of its round (abandon with ABANDON_TOO_LARGE); they are woken
 * as the lock is released, so a few seconds is plenty */
#define BYPASS_MARK_MS 10000

/* what one lookup asks for */
struct lookup_req {
	const char *key; /* the user key */
	size_t key_len;
	const char *token;       /* ours, TOKEN_LEN hex digits: taken as the lock on a miss */
	int64_t lease_ms;        /* lease of the lock if we take it */
	const char *awaited;     /* the leader token we waited on, or NULL */
	const char *const *tags; /* --tag: the tags a result of ours files under, */
	int ntags;               /* so that invalidate --tag fences us while we lead */
	bool force;              /* --refresh: no entry counts; lead or wait */
	double beta;             /* XFetch factor; 0: no early refresh */
	double rand;             /* XFetch draw, uniform in (0, 1] */
};

/* what one lookup found */
struct lookup {
	enum verdict verdict;
	struct entry_meta meta; /* HIT, DONE */
	int64_t age_ms;         /* HIT: on the store's clock */
	int64_t lease_left_ms;  /* WAIT: how long the holder's lease still runs; -1: no lease */
	bool refresh;           /* HIT, STALE: the lock is ours, refresh in the background */
	bool fallback;          /* LEAD: a stale-if-error entry exists to serve if COMMAND fails */
	char holder[TOKEN_LEN + 1]; /* WAIT: the holder's token */
};

/* the counters `stats` reports, kept in the store so that every host and
 * process adds to the same numbers (policy_names.h names and explains them) */
enum counter { STAT_LIST(POLICY_ENUM) STAT_COUNT };

/* the counters' names, as stats prints them (store.c) */
extern const char *const stat_names[STAT_COUNT];

/* why a leader gives up its lock without a result */
enum abandon_reason {
	ABANDON_INTERRUPTED,    /* a signal, or a local failure */
	ABANDON_TOO_LARGE,      /* the output was above --max-size */
	ABANDON_STORE_FAILED,   /* the store refused the result (out of memory, disk full) */
	ABANDON_REFRESH_FAILED, /* a stale-if-error refresh failed and the old entry was
				 * served: hold off the next refresh (back-off) */
};

/* How long a failed stale-if-error refresh holds off the next one, from how
 * long the failed run took: ten times that, at least REFRESH_BACKOFF_MIN_MS
 * and at most REFRESH_BACKOFF_MAX_MS. Meanwhile the entry is served at once,
 * as a stale hit, to every caller in its stale-if-error window; the first
 * caller after it takes the lock and tries again. A failing backend then
 * costs at most a tenth of the time in runs that fail, and a recovered one
 * is noticed within a minute. */
#define REFRESH_BACKOFF_MIN_MS 1000
#define REFRESH_BACKOFF_MAX_MS 60000
int64_t refresh_backoff_ms(int64_t failed_run_ms);

/* what inspect and list report of one key */
struct entry_info {
	bool present; /* an entry exists, in any window */
	bool future;  /* created ahead of the store's clock (the clock was
				  * set back since): not served, age_ms < 0 */
	struct entry_meta meta;
	int64_t age_ms;
	enum freshness freshness;
	bool locked;           /* a leader holds the key's lock */
	char holder[320];      /* the lock's value: token, host, pid */
	int64_t lease_left_ms; /* -1: no lease (a kernel lock) */
};

/* called by list for every entry; a non-zero return stops the walk */
typedef int (*list_fn)(void *ctx, const char *key, size_t key_len, const struct entry_info *info);

/* called by list_tags for every tag name; a non-zero return stops the walk */
typedef int (*tag_fn)(void *ctx, const char *tag, size_t len);

/* a finished leader's result, to store under the lock */
struct result {
	struct entry_meta meta;  /* status, windows, compute time, sizes, host */
	bool cacheable;          /* false: hand it to this round's waiters only */
	int64_t handoff_ms;      /* how long this round's waiters can still collect it */
	const char *const *tags; /* file the entry under these tags */
	int ntags;
	int out_fd; /* positioned at the start of meta.out_len bytes */
	int err_fd; /* -1, or positioned at meta.err_len bytes */
};

struct store;

struct store_ops {
	/* one round trip: a fresh entry is a HIT (bytes written to sink), the round
	 * result of req->awaited is DONE, else the lock is taken (LEAD) or reported
	 * (WAIT); -1 with err_set() when the store fails */
	int (*lookup)(struct store *s, const struct lookup_req *req, struct lookup *res,
		      struct sink *sink);
	/* start listening for wake-ups on key, before the next lookup, so none is lost; 0 or -1 */
	int (*watch)(struct store *s, const char *key, size_t key_len);
	/* block until a wake-up on the watched key or timeout_ms; 1 woken, 0 timed out, -1 error */
	int (*wait)(struct store *s, int64_t timeout_ms);
	/* extend our lease; 1 still ours, 0 lost (expired, taken, invalidated), -1 error */
	int (*renew)(struct store *s, const char *key, size_t key_len, const char *token,
		     int64_t lease_ms);
	/* if the lock is still ours: store (or hand to waiters) the result, release,
	 * wake the waiters; 1 stored, 0 fenced out (lock lost), -1 error */
	int (*finish)(struct store *s, const char *key, size_t key_len, const char *token,
		      const struct result *r);
	/* release our lock without a result and wake the waiters to take over;
	 * with ABANDON_TOO_LARGE, also leave the round's waiters a mark, for
	 * BYPASS_MARK_MS, that makes their lookup a BYPASS; with
	 * ABANDON_REFRESH_FAILED, while the lock is still ours, hold off the
	 * refresh of the current entry for backoff_ms (lookups in its
	 * stale-if-error window serve it at once, without the lock; a new
	 * entry has no back-off); 0 or -1 */
	int (*abandon)(struct store *s, const char *key, size_t key_len, const char *token,
		       enum abandon_reason why, int64_t backoff_ms);
	/* write any stored entry (stale included unless fresh_only) to sink;
	 * 1 found, 0 absent, -1 error */
	int (*get)(struct store *s, const char *key, size_t key_len, bool fresh_only,
		   struct entry_meta *meta, struct sink *sink);
	/* delete the entry and its lock (fencing out a refresh in flight); 1 deleted, 0 absent, -1 */
	int (*invalidate)(struct store *s, const char *key, size_t key_len);
	/* describe one key: its entry and its lock; 0 or -1 */
	int (*inspect)(struct store *s, const char *key, size_t key_len, struct entry_info *info);
	/* call fn for every entry of the namespace whose key matches glob (NULL:
	 * all), walking without blocking the store; a store may also call it,
	 * with info->present false and info->locked true, for the key of every
	 * lock it meets (a running leader, maybe with no entry yet), so that
	 * invalidate --match can fence it; a key may come both ways. 0 or -1 */
	int (*list)(struct store *s, const char *glob, list_fn fn, void *ctx);
	/* call fn for every tag some stored result was filed under (until the
	 * tag is invalidated, or its entries have all expired and been swept)
	 * whose name matches glob (NULL: all); a name may come twice. 0 or -1 */
	int (*list_tags)(struct store *s, const char *glob, tag_fn fn, void *ctx);
	/* delete every entry filed under tag, and the tag, fencing out leaders
	 * running for it; the count deleted, or -1 */
	long (*invalidate_tag)(struct store *s, const char *tag);
	/* read the counters into c, zeroing them after when reset; 0 or -1 */
	int (*stats)(struct store *s, uint64_t c[STAT_COUNT], bool reset);
	/* NULL, or: fence out every leader running for a key that matches glob,
	 * entry or not yet (invalidate --match calls it before deleting the
	 * entries it lists); 0 or -1 */
	int (*fence)(struct store *s, const char *glob);
	/* add one to a counter, best effort (a run must not fail over stats) */
	void (*count)(struct store *s, enum counter which);
	/* check the store end to end and describe it into out; 0, or -1 with
	 * err_set() and in out what was found before (a cluster's nodes) */
	int (*ping)(struct store *s, struct buf *out);
	/* after fork(2), in the child (child true: reconnect, keep the lock) or
	 * the parent (forget the lock without releasing it: the child holds
	 * it now); 0 or -1 */
	int (*after_fork)(struct store *s, bool child);
	/* release everything; accepts NULL */
	void (*close)(struct store *s);
};

struct store {
	const struct store_ops *ops;
	char *desc;   /* printable description for -v and ping, password masked */
	bool refused; /* the last failure was a refusal (credentials), not an outage */
};

struct store_config {
	const struct url *url;
	const char *ns;                /* namespace: prefix of every key */
	int64_t timeout_ms;            /* connect and per-command timeout */
	const char *password;          /* used when the URL has none; may be NULL */
	const char *sentinel_password; /* the sentinels' (redis+sentinel://); may be NULL */
	const struct tls_options *tls; /* rediss://: its settings; NULL: the defaults */
	/* the key a run asks for first (NULL for an operator command): a
	 * Redis Cluster client with a cached slot map connects straight to
	 * its slot's node, not to a seed first */
	const char *first_key;
	size_t first_key_len;
};

/* connect to the store the URL names; NULL with err_set() when it is
 * unreachable, and *refused set when retrying cannot help (an unsafe
 * directory, a TLS file that does not load): a usage error, not a fail-open case.
 * The caller closes the store with store_close(). */
struct store *store_open(const struct store_config *cfg, bool *refused);
/* close a store from store_open(); accepts NULL */
void store_close(struct store *s);

/* hand n stored bytes of stream which (SINK_OUT, SINK_ERR) to the sink:
 * to its tap, then held back, or written to the stream's fd through the
 * output path (out_write) unless an earlier write failed; a failed write
 * is recorded in the sink and by the output path (which sets the exit
 * status), not returned */
void sink_write(struct sink *sink, enum sink_stream which, const void *p, size_t n);
/* an entry with metadata m begins: its stored bytes follow (the stores call
 * it before an entry's first sink_write) */
void sink_start(struct sink *sink, const struct entry_meta *m);
/* the entry's bytes are all in: 0, or -1 with err_set() when they did not
 * decode whole (a compressed entry cut short or damaged) */
int sink_end(struct sink *sink);
/* The read of the entry begun (sink_start) broke off, and it will be read
 * again from its start: the bytes handed on so far are not handed on a
 * second time (the tap, the hold and the fds see each byte once), and a
 * compressed entry decodes from its start. False when this read got no
 * further than the one before it (reading again would only repeat it) or
 * its bytes did not decode: the entry is not to be read again. */
bool sink_resume(struct sink *sink);
/* write what the sink holds back, and hold no more */
void sink_release(struct sink *sink);
/* drop what the sink holds back (nothing of it is written), and start over:
 * the sink takes an entry's bytes again; frees what the sink allocated */
void sink_drop(struct sink *sink);

/* the counter an abandoned round adds one to, or -1 for none */
int abandon_counter(enum abandon_reason why);

/* copy len bytes of stream which from in_fd through the sink (see
 * sink_write); 0, or -1 with errno when in_fd cannot be read or ends early */
int sink_copy(struct sink *sink, enum sink_stream which, int in_fd, uint64_t len);

/* the Redis implementation (store_redis.c) */
struct store *store_redis_open(const struct store_config *cfg, bool *refused);
/* the local directory implementation (store_file.c) */
struct store *store_file_open(const struct store_config *cfg, bool *refused);

#endif
