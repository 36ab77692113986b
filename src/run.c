/* run: the decision logic. It talks only to the store interface (store.h)
 * and to child.c, so every store gets the same decisions:
 *
 *   lookup ─ fresh entry ─────────────────────────→ replay it (hit)
 *          ─ no entry, lock free → take it ───────→ lead: run COMMAND, store, wake
 *          ─ no entry, lock held → watch, wait ───→ woken or poll: lookup again
 *
 * The store makes "check the entry, else take the lock" one atomic step, so
 * whoever wins the lock has already checked the entry. */
#include "run.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "child.h"
#include "key.h"
#include "store.h"
#include "util.h"

/* the longest a waiter sleeps between lookups when no wake-up comes: a
 * wake-up lost to a reconnect costs at most this much */
#define WAIT_POLL_MAX_MS 1000
/* how long a failed leader's result stays for the waiters of its round */
#define HANDOFF_MIN_MS 5000

struct run_ctx {
	const struct options *o;
	struct store *store;
	struct buf key;     /* the user key */
	struct buf printable; /* key for log lines */
	char token[TOKEN_LEN + 1];
	char awaited[TOKEN_LEN + 1];
	bool lock_lost;     /* a renewal found the lock gone */
	bool renew_failed;  /* a renewal could not reach the store */
};

static const char *key_for_log(struct run_ctx *ctx)
{
	return key_printable(&ctx->printable, ctx->key.data, ctx->key.len);
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
	log_warn("%s; running COMMAND uncached", why);
	store_close(ctx->store);
	ctx->store = NULL;
	return child_exec(ctx->o->command);
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

/* an unlinked temporary file for COMMAND's output; -1 with err_set() */
static int open_spool(void)
{
	const char *dir = getenv("TMPDIR");

	if (!dir || !*dir)
		dir = "/tmp";
	char *path = xasprintf("%s/cachefence.XXXXXX", dir);
	int fd = mkstemp(path);
	if (fd >= 0) {
		unlink(path);
		fcntl(fd, F_SETFD, FD_CLOEXEC);
	} else {
		err_set("cannot create a spool file in %s: %s (set TMPDIR)", dir, strerror(errno));
	}
	free(path);
	return fd;
}

static void fill_meta(struct entry_meta *m, const struct options *o, const struct child_result *cr)
{
	memset(m, 0, sizeof(*m));
	m->status = cr->status;
	m->ttl_ms = o->ttl_ms;
	m->compute_ms = cr->compute_ms;
	m->out_len = cr->out_len;
	if (gethostname(m->host, sizeof(m->host) - 1) < 0)
		strcpy(m->host, "unknown");
}

/* hand the finished run to the store: as the entry, or to this round's
 * waiters only when it is a failure that is not cached */
static void store_result(struct run_ctx *ctx, const struct child_result *cr, int spool)
{
	const struct options *o = ctx->o;
	struct result r = {.out_fd = spool, .err_fd = -1};

	fill_meta(&r.meta, o, cr);
	r.cacheable = cr->status == 0 || o->cache_failures;
	r.handoff_ms = o->lease_ms > HANDOFF_MIN_MS ? o->lease_ms : HANDOFF_MIN_MS;
	if (lseek(spool, 0, SEEK_SET) < 0) {
		log_warn("cannot rewind the spool file: %s; result not stored", strerror(errno));
		ctx->store->ops->abandon(ctx->store, ctx->key.data, ctx->key.len, ctx->token);
		return;
	}
	int rc = ctx->store->ops->finish(ctx->store, ctx->key.data, ctx->key.len, ctx->token, &r);
	if (rc < 0)
		log_warn("cannot store the result: %s", err_msg());
	else if (rc == 0)
		log_warn("result for key=%s not stored: the lock was lost (lease ran out, or the "
			 "key was invalidated)", key_for_log(ctx));
	else if (r.cacheable)
		log_verbose("stored key=%s status=%d size=%llu compute=%lldms", key_for_log(ctx),
			    cr->status, (unsigned long long)cr->out_len, (long long)cr->compute_ms);
	else
		log_verbose("not cached key=%s status=%d (failures are cached only with "
			    "--cache-failures); handed to waiters", key_for_log(ctx), cr->status);
}

/* We hold the lock: run COMMAND, tee its output, keep the lease, store. */
static int lead(struct run_ctx *ctx)
{
	const struct options *o = ctx->o;
	struct child_result cr;

	log_verbose("miss key=%s: leading, running COMMAND", key_for_log(ctx));
	int spool = open_spool();
	if (spool < 0) {
		log_warn("%s; running COMMAND uncached", err_msg());
		ctx->store->ops->abandon(ctx->store, ctx->key.data, ctx->key.len, ctx->token);
		return child_exec(o->command);
	}
	struct child_spec spec = {
		.argv = o->command,
		.out_fd = STDOUT_FILENO,
		.spool_fd = spool,
		.tick_ms = o->lease_ms / 3,
		.tick = renew_lease,
		.tick_ctx = ctx,
	};
	if (child_run(&spec, &cr) < 0) {
		log_error("%s", err_msg());
		ctx->store->ops->abandon(ctx->store, ctx->key.data, ctx->key.len, ctx->token);
		close(spool);
		return 125;
	}
	if (cr.signal_received || cr.spool_failed) {
		if (cr.spool_failed)
			log_warn("cannot write the spool file; result not stored");
		else
			log_verbose("interrupted by signal %d: nothing stored, lock released",
				    cr.signal_received);
		ctx->store->ops->abandon(ctx->store, ctx->key.data, ctx->key.len, ctx->token);
		close(spool);
		return cr.signal_received ? 128 + cr.signal_received : cr.status;
	}
	store_result(ctx, &cr, spool);
	close(spool);
	return cr.status;
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

static int store_failed(struct run_ctx *ctx)
{
	char why[1024];

	snprintf(why, sizeof(why), "store unavailable: %s", err_msg());
	return fail_open(ctx, why);
}

static int decide(struct run_ctx *ctx)
{
	const struct options *o = ctx->o;
	struct lookup_req req = {
		.key = ctx->key.data,
		.key_len = ctx->key.len,
		.token = ctx->token,
		.lease_ms = o->lease_ms,
	};
	struct sink sink = {.out_fd = STDOUT_FILENO, .err_fd = STDERR_FILENO};
	struct lookup l;
	int64_t deadline = o->wait_ms ? monotonic_ms() + o->wait_ms : 0;
	bool watching = false;

	for (;;) {
		if (ctx->store->ops->lookup(ctx->store, &req, &l, &sink) < 0)
			return store_failed(ctx);
		switch (l.verdict) {
		case VERDICT_HIT:
			log_verbose("hit key=%s age=%llds ttl=%llds", key_for_log(ctx),
				    (long long)(l.age_ms / 1000),
				    (long long)((l.meta.ttl_ms - l.age_ms) / 1000));
			return l.meta.status;
		case VERDICT_DONE:
			log_verbose("waited key=%s: the leader's result, status %d", key_for_log(ctx),
				    l.meta.status);
			return l.meta.status;
		case VERDICT_LEAD:
			return lead(ctx);
		case VERDICT_WAIT:
			break;
		}
		memcpy(ctx->awaited, l.holder, sizeof(ctx->awaited));
		req.awaited = ctx->awaited;
		if (!watching) {
			/* listen first, then look again: a wake-up between our lookup
			 * and the subscription would otherwise be lost */
			if (l.lease_left_ms >= 0)
				log_verbose("wait key=%s: another process is running COMMAND "
					    "(lease %lldms left)", key_for_log(ctx),
					    (long long)l.lease_left_ms);
			else
				log_verbose("wait key=%s: another process is running COMMAND",
					    key_for_log(ctx));
			if (ctx->store->ops->watch(ctx->store, ctx->key.data, ctx->key.len) < 0)
				return store_failed(ctx);
			watching = true;
			continue;
		}
		if (deadline && monotonic_ms() >= deadline) {
			log_error("gave up waiting for key=%s after --wait %lldms", key_for_log(ctx),
				  (long long)o->wait_ms);
			return 124;
		}
		if (ctx->store->ops->wait(ctx->store, wait_interval(&l, deadline)) < 0)
			return store_failed(ctx);
	}
}

int run_command(const struct options *o)
{
	struct run_ctx ctx = {.o = o};
	struct store_config cfg = {.url = &o->url, .ns = o->ns, .timeout_ms = o->redis_timeout_ms};
	int status;

	if (o->key)
		buf_append(&ctx.key, o->key, strlen(o->key));
	else
		key_derive(&ctx.key, o->command);
	if (random_hex(ctx.token, TOKEN_LEN / 2) < 0) {
		log_error("%s", err_msg());
		status = 125;
		goto out;
	}
	bool refused;
	ctx.store = store_open(&cfg, &refused);
	if (!ctx.store) {
		if (refused) {
			log_error("%s", err_msg());
			status = 125;
		} else {
			status = store_failed(&ctx);
		}
		goto out;
	}
	status = decide(&ctx);
out:
	store_close(ctx.store);
	buf_free(&ctx.key);
	buf_free(&ctx.printable);
	return status;
}
