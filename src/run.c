/* run: the decisions of SPEC 4.1 and nothing else. It talks only to the
 * store interface (store.h), to child.c (running COMMAND) and to spawn.c
 * (spools, --stdin, detached processes), so every store gets the same
 * decisions:
 *
 *   lookup ─ fresh entry ──────────────────────→ replay it (hit); XFetch may
 *          │                                     refresh early in the background
 *          ─ stale entry (inside --stale) ─────→ replay it; the lock winner
 *          │                                     refreshes in the background
 *          ─ no usable entry, lock free ───────→ lead: run COMMAND, store, wake
 *          ─ no usable entry, lock held ───────→ watch, wait, look again
 *
 * The store makes "check the entry, else take the lock" one atomic step, so
 * whoever wins the lock has already checked the entry. */
#include "run.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include "child.h"
#include "codec.h"
#include "feed.h"
#include "key.h"
#include "lease.h"
#include "sign.h"
#include "spawn.h"
#include "store.h"
#include "util.h"

/* the longest a waiter sleeps between lookups when no wake-up comes: a
 * wake-up lost to a reconnect costs at most this much */
#define WAIT_POLL_MAX_MS 1000
/* how long a failed leader's result stays for the waiters of its round */
#define HANDOFF_MIN_MS 5000

/* the compressed copies of a run's spools (--compress); out -1: none */
struct packed {
	int out, err;
	uint64_t out_len, err_len;
};

struct run_ctx {
	const struct options *o;
	struct store *store;
	struct buf key;                /* the user key */
	struct buf printable;          /* key for log lines */
	char shown[ENTRY_CMD_MAX + 1]; /* COMMAND for log lines; "" until asked */
	char token[TOKEN_LEN + 1];
	char awaited[TOKEN_LEN + 1];
	struct stdin_keep in;            /* --stdin: standard input, kept for COMMAND */
	bool lock_lost;                  /* a renewal found the lock gone */
	bool renew_failed;               /* a renewal could not reach the store */
	bool released;                   /* the lock went back before COMMAND ended */
	struct lease *lease;             /* while COMMAND runs: the thread that renews the lock,
			       * and the only user of the store meanwhile */
	enum abandon_reason give_up_why; /* what the lease's give_up tells the store */
	struct packed packed;            /* --compress: the output compressed, to store */
	struct sign_digest made;         /* --sign-key-file: of the output we spool */
	struct sign_digest seen;         /* of the entry a sink takes */
};

/* how a leader runs COMMAND */
enum lead_mode {
	LEAD_LIVE,       /* stream the output to the caller as it comes */
	LEAD_FALLBACK,   /* hold it back: if COMMAND fails, serve the stale entry instead */
	LEAD_BACKGROUND, /* a detached refresh: no caller */
};

static const char *key_for_log(struct run_ctx *ctx)
{
	return key_printable(&ctx->printable, ctx->key.data, ctx->key.len);
}

/* COMMAND as a shell would read it back (entry_command_display), for -v */
static const char *command_for_log(struct run_ctx *ctx)
{
	if (!ctx->shown[0])
		entry_command_display(ctx->shown, ctx->o->command);
	return ctx->shown;
}

/* replace this process with COMMAND, uncached, with --stdin's bytes as its
 * input; the store goes first, so that neither its connection nor its lock
 * file goes with COMMAND */
static int exec_uncached(struct run_ctx *ctx)
{
	store_close(ctx->store);
	ctx->store = NULL;
	if (stdin_keep_restore(&ctx->in) < 0) {
		log_error(
			ctx->in.partial
				? "--stdin: cannot hand what was read of standard input to COMMAND: %s"
				: "--stdin: cannot replay standard input: %s",
			err_msg());
		return 125;
	}
	return child_exec(ctx->o->command);
}

/* The store is out of reach: run COMMAND uncached (fail-open), replacing
 * this process so its output and status reach the caller untouched, or with
 * --fail-closed give up with 125. */
static int fail_open(struct run_ctx *ctx, const char *why)
{
	if (ctx->o->fail_closed) {
		log_error("%s; not running COMMAND (--fail-closed)", why);
		return 125;
	}
	if (ctx->o->warm) {
		/* nothing to warm, and COMMAND's output is not wanted */
		log_warn("%s; nothing warmed (--warm)", why);
		return 0;
	}
	log_warn("%s; running COMMAND uncached", why);
	if (ctx->store)
		ctx->store->ops->count(ctx->store, STAT_FAIL_OPEN);
	return exec_uncached(ctx);
}

static int store_failed(struct run_ctx *ctx)
{
	char why[1024];

	if (ctx->store && ctx->store->refused) {
		log_error("%s", err_msg());
		return 125;
	}
	snprintf(why, sizeof(why), "store unavailable: %s", err_msg());
	return fail_open(ctx, why);
}

/* A stored value broke off mid-stream: what reached stdout cannot be taken
 * back, so running COMMAND now would only append to it. */
static int output_cut(struct run_ctx *ctx)
{
	log_error("the stored output of key=%s was cut off: %s; run again", key_for_log(ctx),
		  err_msg());
	return 125;
}

static void renew_lease(void *arg)
{
	struct run_ctx *ctx = arg;
	int rc = ctx->store->ops->renew(ctx->store, ctx->key.data, ctx->key.len, ctx->token,
					ctx->o->lease_ms);

	if (rc == 0 && !ctx->lock_lost) {
		ctx->lock_lost = true;
		log_verbose("lost the lock key=%s: lease ran out or the key was invalidated",
			    key_for_log(ctx));
	} else if (rc < 0 && !ctx->renew_failed) {
		ctx->renew_failed = true;
		log_warn("cannot renew the lock: %s", err_msg());
	}
}

/* give the lock back without a result, so a waiter takes over at once */
static void release(struct run_ctx *ctx, enum abandon_reason why)
{
	ctx->store->ops->abandon(ctx->store, ctx->key.data, ctx->key.len, ctx->token, why, 0);
}

/* A stale-if-error refresh failed and the old entry was served: give the
 * lock back, and hold off the next refresh for a while (store.h) so that
 * the callers after us get the old entry at once instead of each running
 * the failing COMMAND again. */
static void back_off(struct run_ctx *ctx, const struct child_result *cr)
{
	if (!ctx->released)
		ctx->store->ops->abandon(ctx->store, ctx->key.data, ctx->key.len, ctx->token,
					 ABANDON_REFRESH_FAILED,
					 refresh_backoff_ms(cr->compute_ms));
	ctx->released = true;
}

/* release(), unless the lock went back already */
static void release_once(struct run_ctx *ctx, enum abandon_reason why)
{
	if (!ctx->released)
		release(ctx, why);
	ctx->released = true;
}

/* the lease's give_up, in its thread: the lock goes back */
static void release_early(void *arg)
{
	struct run_ctx *ctx = arg;

	release_once(ctx, ctx->give_up_why);
	log_verbose("key=%s: the result cannot be stored; lock released", key_for_log(ctx));
}

/* child.c's give_up: the result cannot be stored (too large, a spool that
 * cannot be written), so nobody should wait for it: the lock goes back
 * now, while COMMAND still runs for its own caller; the lease's thread
 * does it, so that the output does not wait on the store */
static void give_up_lock(void *arg, bool too_large)
{
	struct run_ctx *ctx = arg;

	ctx->give_up_why = too_large ? ABANDON_TOO_LARGE : ABANDON_INTERRUPTED;
	lease_give_up(ctx->lease);
}

static void packed_close(struct packed *z)
{
	if (z->out >= 0)
		close(z->out);
	if (z->err >= 0)
		close(z->err);
	*z = (struct packed){.out = -1, .err = -1};
}

/* --compress: compress the spooled output of a finished run into files of
 * its own (ctx->packed), when it is at least --compress-min and comes out
 * smaller (random bytes do not: they are stored as they are). Called while
 * the lease is still renewed, for it takes CPU time, and touches no store.
 * On any failure the result is stored as it is, with a verbose line:
 * compression saves memory, it is no reason to lose a result. */
static void pack_output(struct run_ctx *ctx, const struct child_result *cr, struct spools *sp)
{
	struct packed *z = &ctx->packed;
	uint64_t out = cr->out_len, err = sp->err >= 0 ? cr->err_len : 0;

	if (!ctx->o->compress || out + err < ctx->o->compress_min || cr->signal_received ||
	    cr->too_large || cr->spool_failed)
		return;
	if (spools_rewind(sp) < 0 || (z->out = spool_open()) < 0 ||
	    codec_compress(sp->out, out, z->out, &z->out_len) < 0 ||
	    (err && ((z->err = spool_open()) < 0 ||
		     codec_compress(sp->err, err, z->err, &z->err_len) < 0))) {
		log_verbose("key=%s stored uncompressed: %s", key_for_log(ctx), err_msg());
		packed_close(z);
		return;
	}
	if (z->out_len + z->err_len >= out + err || lseek(z->out, 0, SEEK_SET) < 0 ||
	    (z->err >= 0 && lseek(z->err, 0, SEEK_SET) < 0))
		packed_close(z);
}

/* a result r of the spools, to be stored from ctx->packed when there is one */
static void use_packed(struct run_ctx *ctx, struct result *r)
{
	const struct packed *z = &ctx->packed;
	struct entry_meta *m = &r->meta;

	if (z->out < 0)
		return;
	m->zstd = true;
	m->raw_out_len = m->out_len;
	m->raw_err_len = m->err_len;
	m->out_len = z->out_len;
	m->err_len = z->err_len;
	r->out_fd = z->out;
	r->err_fd = z->err;
}

/* hand the finished run to the store: as the entry, or to this round's
 * waiters only when it is a failure that is not cached */
static void store_result(struct run_ctx *ctx, const struct child_result *cr, struct spools *sp)
{
	const struct options *o = ctx->o;
	struct result r = {.out_fd = sp->out, .err_fd = sp->err};
	struct entry_meta *m = &r.meta;

	m->status = cr->status;
	m->ttl_ms = cr->status != 0 && o->failure_ttl_ms > 0 ? o->failure_ttl_ms : o->ttl_ms;
	m->stale_ms = o->stale_ms;
	m->sie_ms = o->sie_ms;
	m->compute_ms = cr->compute_ms;
	m->out_len = cr->out_len;
	m->err_len = sp->err >= 0 ? cr->err_len : 0;
	if (gethostname(m->host, sizeof(m->host) - 1) < 0)
		strcpy(m->host, "unknown");
	/* kept for inspect and list, which show where a (derived) key came from */
	entry_command_display(m->cmd, o->command);
	/* a COMMAND that could not start, or was cut off, is no result to keep */
	r.cacheable = cr->status == 0 || (o->cache_failures && !cr->timed_out && !cr->exec_failed);
	r.handoff_ms = o->lease_ms > HANDOFF_MIN_MS ? o->lease_ms : HANDOFF_MIN_MS;
	r.tags = o->tags;
	r.ntags = o->ntags;
	use_packed(ctx, &r);
	if (o->sign)
		sign_entry(o->sign, o->ns, ctx->key.data, ctx->key.len, m, &ctx->made);
	if (spools_rewind(sp) < 0) {
		log_warn("%s; result not stored", err_msg());
		release(ctx, ABANDON_INTERRUPTED);
		return;
	}
	int rc = ctx->store->ops->finish(ctx->store, ctx->key.data, ctx->key.len, ctx->token, &r);
	if (rc < 0) {
		log_warn("cannot store the result: %s", err_msg());
		/* give the lock back if the store still listens, so waiters take
		 * over now rather than when the lease runs out */
		release(ctx, ABANDON_STORE_FAILED);
	} else if (rc == 0)
		log_warn("result for key=%s not stored: the lock was lost (lease ran out, or the "
			 "key was invalidated)",
			 key_for_log(ctx));
	else if (r.cacheable)
		log_verbose("stored key=%s status=%d size=%llu compute=%lldms", key_for_log(ctx),
			    cr->status, (unsigned long long)cr->out_len, (long long)cr->compute_ms);
	else
		log_verbose("not cached key=%s status=%d (failures are cached only with "
			    "--cache-failures); handed to waiters",
			    key_for_log(ctx), cr->status);
}

/* An entry went into sink (sign_sink_init): check it against the keys of
 * --sign-key-file. 1 authentic, or no keys (its bytes are written now); 0
 * not authentic and none of it written: a miss, with a warning and a count;
 * -2 not authentic after bytes of it went out (large entries are checked
 * at their end): said on stderr, and the entry deleted, so that the next
 * call computes it anew rather than stumble on the same bytes. */
static int authentic(struct run_ctx *ctx, struct sink *sink, const struct entry_meta *m)
{
	const struct options *o = ctx->o;
	int rc = sign_sink_settle(sink, o->sign, &ctx->seen, o->ns, ctx->key.data, ctx->key.len, m);

	if (rc == 1)
		return 1;
	if (sink->damaged) {
		/* compressed bytes that do not decode: a miss, or a cut output */
		if (rc == 0) {
			log_warn("the entry for key=%s does not decode (%s): treated as a miss",
				 key_for_log(ctx), err_msg());
			return 0;
		}
		output_cut(ctx);
		ctx->store->ops->invalidate(ctx->store, ctx->key.data, ctx->key.len);
		return -2;
	}
	ctx->store->ops->count(ctx->store, STAT_NOT_AUTHENTIC);
	if (rc == 0) {
		log_warn("the entry for key=%s is not authentic (%s): treated as a miss",
			 key_for_log(ctx), sign_why_not(m));
		return 0;
	}
	log_error("the stored output of key=%s is not authentic (its signature does not match, "
		  "checked at its end): do not trust what was printed; the entry is deleted",
		  key_for_log(ctx));
	ctx->store->ops->invalidate(ctx->store, ctx->key.data, ctx->key.len);
	return -2;
}

/* A refresh failed while a stale-if-error entry stands: serve that entry
 * (bytes and status) instead. Returns its status, or -1 if it is gone. */
static int serve_stale_entry(struct run_ctx *ctx, const struct child_result *cr)
{
	struct sink sink = {.out_fd = STDOUT_FILENO, .err_fd = STDERR_FILENO};
	struct entry_meta meta;

	sign_sink_init(&sink, ctx->o->sign, &ctx->seen);
	int rc = ctx->store->ops->get(ctx->store, ctx->key.data, ctx->key.len, false, &meta, &sink);
	if (rc == 1)
		rc = authentic(ctx, &sink, &meta);
	sink_drop(&sink);
	if (rc == -2)
		return 125;
	if (rc < 0 && sink.emitted)
		return output_cut(ctx);
	if (rc != 1)
		return -1;
	log_warn("refresh of key=%s failed (status %d), serving stale", key_for_log(ctx),
		 cr->status);
	return meta.status;
}

/* queue what a held-back run produced for the caller: each stream's start
 * from its spool, then the end no spool took, from memory */
static void feed_spools(struct feed *feed, const struct spools *sp, const struct child_result *cr)
{
	const struct buf *out = &cr->held_tail[0], *err = &cr->held_tail[1];

	if (!feed)
		return;
	feed_spooled(feed, STDOUT_FILENO, sp->out, 0, cr->out_len - out->len);
	feed_copy(feed, STDOUT_FILENO, out->data, out->len);
	if (sp->err >= 0) {
		feed_spooled(feed, STDERR_FILENO, sp->err, 0, cr->err_len - err->len);
		feed_copy(feed, STDERR_FILENO, err->data, err->len);
	}
}

static void prepare_spec(struct run_ctx *ctx, struct child_spec *spec, const struct spools *sp,
			 struct feed *feed, enum lead_mode mode)
{
	const struct options *o = ctx->o;

	*spec = (struct child_spec){
		.argv = o->command,
		.feed = feed,
		.hold = mode == LEAD_FALLBACK,
		.spool_fd = sp->out,
		.capture_err = sp->err >= 0,
		.err_spool_fd = sp->err,
		.max_spool = o->max_size,
		.timeout_ms = o->timeout_ms,
		.give_up = give_up_lock,
		.ctx = ctx,
	};
	if (o->sign) {
		sign_digest_init(&ctx->made);
		spec->tap = sign_digest_tap;
		spec->tap_ctx = &ctx->made;
	}
	spec->in_fd = stdin_keep_fd(&ctx->in);
}

/* COMMAND could not start under the lock for a reason of this host (no
 * spool file, no pipe, no fork, no thread): give the lock back and run it
 * uncached in place, as fail-open does */
static int run_uncached_instead(struct run_ctx *ctx, enum lead_mode mode)
{
	log_warn("%s; running COMMAND uncached", err_msg());
	release_once(ctx, ABANDON_INTERRUPTED);
	return mode == LEAD_BACKGROUND ? 0 : exec_uncached(ctx);
}

/* COMMAND ended: store its result, or serve the stale entry in its place;
 * returns the exit status */
static int settle(struct run_ctx *ctx, const struct child_result *cr, struct spools *sp,
		  struct feed *feed)
{
	if (cr->signal_received) {
		log_verbose("interrupted by signal %d: nothing stored, lock released",
			    cr->signal_received);
		release_once(ctx, ABANDON_INTERRUPTED);
		return 128 + cr->signal_received;
	}
	if (cr->held && cr->status != 0) {
		/* the old entry stays, for stale-if-error; the lock goes back,
		 * with a back-off for the next refresh, before it is served, so
		 * nobody waits on our caller's reading */
		back_off(ctx, cr);
		int status = serve_stale_entry(ctx, cr);
		if (status >= 0)
			return status;
		/* it went away meanwhile: the caller gets this run as it was */
		feed_spools(feed, sp, cr);
		return cr->status;
	}
	if (cr->timed_out)
		log_error("COMMAND timed out after --timeout %lldms; nothing stored",
			  (long long)ctx->o->timeout_ms);
	if (cr->too_large) {
		log_warn("output of key=%s is larger than --max-size %llu bytes: not stored",
			 key_for_log(ctx), (unsigned long long)ctx->o->max_size);
		release_once(ctx, ABANDON_TOO_LARGE);
	} else if (cr->spool_failed) {
		log_warn("cannot write the spool file: %s; result not stored",
			 strerror(cr->spool_errno));
		release_once(ctx, ABANDON_INTERRUPTED);
	} else {
		store_result(ctx, cr, sp);
	}
	/* stored and the waiters woken: now the caller may read at its pace */
	if (cr->held)
		feed_spools(feed, sp, cr);
	return cr->status;
}

/* COMMAND consumed standard input that is not part of the key: a later
 * call with other input would get this result. Say so once. */
static void stdin_probe_check(const struct stdin_probe *p)
{
	if (stdin_probe_read(p))
		log_warn("COMMAND read standard input, which is not part of the key: a later call "
			 "with other input gets this result (key on it with --stdin, or say "
			 "--stdin=ignore)");
}

/* We hold the lock: run COMMAND, tee its output, keep the lease, store. The
 * caller is fed by a thread of its own (feed.c) from the spools, so its
 * reading holds up neither the lease, --timeout, the store nor the
 * waiters; once they are done, we stay until the caller has it all. The
 * lease is renewed by another thread (lease.c), so a slow store holds up
 * no output either. */
static int lead(struct run_ctx *ctx, enum lead_mode mode)
{
	struct child_result cr;
	struct child_spec spec;
	struct spools sp;
	struct feed *feed = NULL;

	if (log_is_verbose())
		log_verbose("%s key=%s: running %s", mode == LEAD_BACKGROUND ? "refresh" : "lead",
			    key_for_log(ctx), command_for_log(ctx));
	if (spools_open(&sp, ctx->o->cache_stderr) < 0)
		return run_uncached_instead(ctx, mode);
	if (mode != LEAD_BACKGROUND && !(feed = feed_new())) {
		spools_close(&sp);
		return run_uncached_instead(ctx, mode);
	}
	prepare_spec(ctx, &spec, &sp, feed, mode);
	ctx->lease = lease_start(ctx->o->lease_ms / 3, renew_lease, release_early, ctx);
	if (!ctx->lease) {
		feed_finish(feed);
		spools_close(&sp);
		return run_uncached_instead(ctx, mode);
	}
	struct stdin_probe probe;
	stdin_probe_start(&probe, !ctx->o->use_stdin && !ctx->o->stdin_ignored);
	int rc = child_run(&spec, &cr);
	if (rc == 0)
		pack_output(ctx, &cr, &sp);
	/* the store is ours again, after a renewal in flight; the thread's
	 * end, like the watchdog's, waits until the result is stored */
	struct lease *lease = ctx->lease;
	lease_stop(lease);
	ctx->lease = NULL;
	if (rc < 0) {
		lease_free(lease);
		feed_finish(feed);
		spools_close(&sp);
		return run_uncached_instead(ctx, mode);
	}
	stdin_probe_check(&probe);
	int status = settle(ctx, &cr, &sp, feed);
	lease_free(lease);
	feed_finish(feed);
	packed_close(&ctx->packed);
	child_result_free(&cr);
	spools_close(&sp);
	return status;
}

/* Refresh in a detached process (own session, no stdin, the caller's
 * stdout and stderr closed), so `x=$(cachefence ...)` returns at once. The
 * lock, already ours, goes with it. */
static void refresh_in_background(struct run_ctx *ctx)
{
	pid_t pid = spawn_detached();

	if (pid < 0) {
		log_warn("cannot start a background refresh: %s", err_msg());
		release(ctx, ABANDON_INTERRUPTED);
		return;
	}
	if (pid > 0) {
		ctx->store->ops->after_fork(ctx->store, false);
		return;
	}
	if (ctx->store->ops->after_fork(ctx->store, true) == 0)
		lead(ctx, LEAD_BACKGROUND);
	store_close(ctx->store);
	_exit(0);
}

/* how long to sleep before the next lookup while another process leads */
static int64_t wait_interval(const struct lookup *l, int64_t deadline)
{
	/* a lease about to run out is worth a look right after; a store
	 * without leases (a kernel lock) wakes us itself */
	int64_t t = l->lease_left_ms >= 0 ? l->lease_left_ms + 20 : WAIT_POLL_MAX_MS;

	if (t > WAIT_POLL_MAX_MS)
		t = WAIT_POLL_MAX_MS;
	if (deadline) {
		int64_t left = deadline - monotonic_ms();
		if (left < t)
			t = left;
	}
	return t;
}

/* Waiters that start together (a cron minute, a fleet's deploy) would look
 * and check the holder (store_redis.c) in step, hundreds at a time, for as
 * long as they wait: a burst that a wake-up landing in it queues behind.
 * So the first wait lasts between half of t and t, drawn from our random
 * token, and the ones after it keep that phase: nothing is looked at
 * later than without it (a lease that runs out is still seen at once). */
static int64_t spread_first_wait(const struct run_ctx *ctx, int64_t t)
{
	unsigned draw = 0; /* 16 random bits: the token's first four hex digits */

	for (int i = 0; i < 4; i++) {
		char c = ctx->token[i];
		draw = draw << 4 | (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
	}
	return t / 2 + (int64_t)((uint64_t)(t / 2) * (draw & 0xffff) / 0x10000);
}

/* a uniform draw in (0, 1] for XFetch */
static double xfetch_draw(void)
{
	uint64_t r = 0;

	if (getrandom(&r, sizeof(r), 0) != sizeof(r))
		return 1.0;                                    /* no early refresh this time */
	return ((double)(r >> 11) + 1.0) / 9007199254740992.0; /* (0, 1] in 2^-53 steps */
}

/* an entry was served (its bytes went out with the lookup): log it, and
 * start the refresh the lookup gave us the lock for; its stored status */
static int serve_entry(struct run_ctx *ctx, const struct lookup *l, const char *what,
		       const char *refreshing)
{
	log_verbose("%s key=%s age=%llds ttl=%llds%s", what, key_for_log(ctx),
		    (long long)(l->age_ms / 1000), (long long)((l->meta.ttl_ms - l->age_ms) / 1000),
		    l->refresh ? refreshing : "");
	if (l->refresh)
		refresh_in_background(ctx);
	return l->meta.status;
}

/* SPEC 4.1 (1), fresh hit: the XFetch draw may have chosen us to refresh
 * early, in the background; the caller is not delayed */
static int fresh_hit(struct run_ctx *ctx, const struct lookup *l)
{
	return serve_entry(ctx, l, "hit", ": xfetch early refresh in the background");
}

/* SPEC 4.1 (2), stale hit: whoever took the lock refreshes, in the background */
static int stale_hit(struct run_ctx *ctx, const struct lookup *l)
{
	return serve_entry(ctx, l, "stale", ": refreshing in the background");
}

/* SPEC 4.1 (3), a waiter's end: the leader's result, even a failed one
 * (bytes sent with the lookup) */
static int leaders_result(struct run_ctx *ctx, const struct lookup *l)
{
	log_verbose("waited key=%s: the leader's result, status %d", key_for_log(ctx),
		    l->meta.status);
	return l->meta.status;
}

/* The leader we waited on found its output over --max-size: nothing will
 * be stored this round. Run COMMAND now, uncached, as every other waiter
 * of the round does, rather than take the lock in turn and run it once per
 * waiter, one after another. Not a failure: no warning. */
static int run_bypassed(struct run_ctx *ctx)
{
	if (log_is_verbose())
		log_verbose("waited key=%s: the leader's output is over --max-size; running %s "
			    "uncached",
			    key_for_log(ctx), command_for_log(ctx));
	store_close(ctx->store);
	ctx->store = NULL;
	return exec_uncached(ctx);
}

/* whether a lookup's verdict came with an entry's bytes */
static bool served(enum verdict v)
{
	return v == VERDICT_HIT || v == VERDICT_STALE || v == VERDICT_DONE;
}

/* --warm: see to it that the key will be fresh, printing nothing and
 * waiting for nothing. A fresh entry is left as it is (XFetch may still
 * refresh it early); else, with the lock free, it is refreshed in a
 * detached background process, as a stale hit is; with the lock held,
 * another process is at it already. --refresh counts no entry as fresh. */
static int warm(struct run_ctx *ctx, struct lookup_req *req)
{
	struct sink none = {.out_fd = -1, .err_fd = -1};
	struct lookup l;

	sign_sink_init(&none, ctx->o->sign, &ctx->seen);
	int rc = ctx->store->ops->lookup(ctx->store, req, &l, &none);
	/* an entry that is not authentic, or does not decode, is none: look
	 * again for the lock */
	if (rc == 0 && served(l.verdict) && authentic(ctx, &none, &l.meta) != 1) {
		req->force = true;
		rc = ctx->store->ops->lookup(ctx->store, req, &l, &none);
	}
	sink_drop(&none);
	if (rc < 0)
		return store_failed(ctx);
	if (l.verdict == VERDICT_HIT) {
		fresh_hit(ctx, &l);
	} else if (l.verdict == VERDICT_STALE) {
		stale_hit(ctx, &l);
	} else if (l.verdict == VERDICT_LEAD) {
		log_verbose("warm key=%s: refreshing in the background", key_for_log(ctx));
		refresh_in_background(ctx);
	} else {
		log_verbose("warm key=%s: another process is running COMMAND", key_for_log(ctx));
	}
	return 0;
}

/* --wait ran out while another process leads: exit 124, or with
 * --wait-then-run run COMMAND uncached (nginx's proxy_cache_lock_timeout),
 * its output and status the caller's, nothing stored */
static int wait_expired(struct run_ctx *ctx)
{
	const struct options *o = ctx->o;

	if (!o->wait_then_run) {
		log_error("gave up waiting for key=%s after --wait %lldms", key_for_log(ctx),
			  (long long)o->wait_ms);
		return 124;
	}
	log_warn("waited %lldms for key=%s (--wait); running COMMAND uncached (--wait-then-run)",
		 (long long)o->wait_ms, key_for_log(ctx));
	return exec_uncached(ctx);
}

/* a waiter's state between lookups */
struct waiting {
	bool watching;    /* the store wakes us when the leader is done */
	bool spread;      /* the first wait was of a length of its own (spread_first_wait) */
	int64_t deadline; /* --wait's end (monotonic ms), or 0 */
};

/* wait_turn's result when the caller should look again */
#define LOOK_AGAIN (-1)

/* SPEC 4.1 (3), wait: another process leads (l, from the lookup). Listen
 * first, then look again, for a wake-up between our lookup and the
 * subscription would be lost; after that, sleep until woken or the next
 * poll. LOOK_AGAIN, or the exit status when the wait ends here. */
static int wait_turn(struct run_ctx *ctx, const struct lookup *l, struct lookup_req *req,
		     struct waiting *w)
{
	memcpy(ctx->awaited, l->holder, sizeof(ctx->awaited));
	req->awaited = ctx->awaited;
	if (!w->watching) {
		log_verbose("wait key=%s: another process is running COMMAND", key_for_log(ctx));
		if (ctx->store->ops->watch(ctx->store, ctx->key.data, ctx->key.len) < 0)
			return store_failed(ctx);
		w->watching = true;
		return LOOK_AGAIN;
	}
	if (w->deadline && monotonic_ms() >= w->deadline)
		return wait_expired(ctx);
	int64_t t = wait_interval(l, w->deadline);
	if (!w->spread)
		t = spread_first_wait(ctx, t);
	w->spread = true;
	if (ctx->store->ops->wait(ctx->store, t) < 0)
		return store_failed(ctx);
	return LOOK_AGAIN;
}

/* The entry a lookup served, checked (authentic()): 1 to go on with the
 * verdict; LOOK_AGAIN for one that is not authentic and was not written,
 * now a miss: look again ignoring entries (as --refresh does), and no
 * longer at the awaited leader's round, whose result it was; or the exit
 * status. */
static int checked(struct run_ctx *ctx, struct sink *sink, const struct lookup *l,
		   struct lookup_req *req)
{
	int rc = authentic(ctx, sink, &l->meta);

	if (rc == 1)
		return 1;
	if (rc == -2)
		return 125;
	req->force = true;
	req->awaited = NULL;
	return LOOK_AGAIN;
}

/* A waiter that has its result has done what its caller waits for: all
 * that is left is its exit. When one wake-up reaches hundreds of waiters
 * on a host, they queue for its CPUs, and every exit ahead of a waiter
 * that has yet to write delays it; so a served waiter exits at the lowest
 * priority (nice 19), behind them, and as promptly as ever on an idle
 * CPU. Its status, the verdict's. */
static int served_waiter(const struct waiting *w, int status)
{
	if (w->watching)
		(void)setpriority(PRIO_PROCESS, 0, 19); /* a refresh was forked before */
	return status;
}

/* one lookup, and what its verdict asks for: the exit status, or
 * LOOK_AGAIN after a wait or an entry that was not whole */
static int look(struct run_ctx *ctx, struct lookup_req *req, struct waiting *w, struct sink *sink)
{
	struct lookup l;

	if (ctx->store->ops->lookup(ctx->store, req, &l, sink) < 0)
		return sink->emitted ? output_cut(ctx) : store_failed(ctx);
	if (served(l.verdict)) {
		int rc = checked(ctx, sink, &l, req);
		if (rc != 1)
			return rc;
	}
	switch (l.verdict) {
	case VERDICT_HIT:
		return served_waiter(w, fresh_hit(ctx, &l));
	case VERDICT_STALE:
		return served_waiter(w, stale_hit(ctx, &l));
	case VERDICT_DONE:
		return served_waiter(w, leaders_result(ctx, &l));
	case VERDICT_LEAD:
		return lead(ctx, l.fallback ? LEAD_FALLBACK : LEAD_LIVE);
	case VERDICT_BYPASS:
		return run_bypassed(ctx);
	case VERDICT_WAIT:
		break;
	}
	return wait_turn(ctx, &l, req, w);
}

/* SPEC 4.1, in order: look up (the store checks the entry and, when none
 * answers, tries the lock, in one step); then a fresh hit, a stale hit,
 * or on a miss lead or wait, and look again after waiting */
static int decide(struct run_ctx *ctx)
{
	const struct options *o = ctx->o;
	struct lookup_req req = {
		.key = ctx->key.data,
		.key_len = ctx->key.len,
		.token = ctx->token,
		.lease_ms = o->lease_ms,
		.force = o->refresh,
		.beta = o->beta,
		.rand = xfetch_draw(),
		.tags = o->tags,
		.ntags = o->ntags,
	};
	struct sink sink = {.out_fd = STDOUT_FILENO, .err_fd = STDERR_FILENO};
	struct waiting w = {.deadline = o->wait_ms ? monotonic_ms() + o->wait_ms : 0};
	int status = LOOK_AGAIN;

	if (o->warm)
		return warm(ctx, &req);
	sign_sink_init(&sink, o->sign, &ctx->seen);
	while (status == LOOK_AGAIN)
		status = look(ctx, &req, &w, &sink);
	sink_drop(&sink);
	return status;
}

int run_user_key(const struct options *o, const unsigned char *stdin_digest, struct buf *key)
{
	struct key_scope scope = {
		.cwd = o->scope_cwd,
		.env = o->scope_env,
		.nenv = o->nscope_env,
		.files = o->scope_file,
		.nfiles = o->nscope_file,
		.stdin_digest = stdin_digest,
	};

	if (o->key) {
		buf_append(key, o->key, strlen(o->key));
		return 0;
	}
	return key_derive(key, o->command, &scope);
}

/* the user key: --key, or derived from COMMAND and the scopes, reading
 * --stdin's input into its spool first; 0, -1, or 1 when COMMAND must run
 * uncached (the spool could not be made or could not take it all: COMMAND
 * then gets standard input all the same); err_set() says why */
static int make_key(struct run_ctx *ctx)
{
	unsigned char digest[32];

	if (!ctx->o->key && ctx->o->use_stdin) {
		if (stdin_keep_open(&ctx->in) < 0)
			return 1; /* nothing read: COMMAND gets standard input untouched */
		int rc = key_digest_read(STDIN_FILENO, stdin_keep_bytes, &ctx->in, digest);
		if (rc != 0)
			return rc < 0 && ctx->in.partial ? 1 : rc;
	}
	return run_user_key(ctx->o, ctx->o->use_stdin ? digest : NULL, &ctx->key);
}

struct store_config run_store_config(const struct options *o)
{
	return (struct store_config){.url = &o->url,
				     .ns = o->ns,
				     .timeout_ms = o->redis_timeout_ms,
				     .password = o->password,
				     .sentinel_password = o->sentinel_password,
				     .tls = &o->tls};
}

int run_command(const struct options *o)
{
	struct run_ctx ctx = {.o = o, .in = STDIN_KEEP_INIT, .packed = {.out = -1, .err = -1}};
	struct store_config cfg = run_store_config(o);
	bool refused;
	int status = 125;
	int rc = make_key(&ctx);

	if (rc > 0) {
		log_warn("%s; running COMMAND uncached", err_msg());
		status = exec_uncached(&ctx);
		goto out;
	}
	if (rc < 0 || random_hex(ctx.token, TOKEN_LEN / 2) < 0) {
		log_error("%s", err_msg());
		goto out;
	}
	cfg.first_key = ctx.key.data;
	cfg.first_key_len = ctx.key.len;
	ctx.store = store_open(&cfg, &refused);
	if (!ctx.store && refused)
		log_error("%s", err_msg());
	else if (!ctx.store)
		status = store_failed(&ctx);
	else {
		log_verbose("store %s", ctx.store->desc);
		status = decide(&ctx);
	}
out:
	store_close(ctx.store);
	stdin_keep_free(&ctx.in);
	buf_free(&ctx.key);
	buf_free(&ctx.printable);
	return status;
}
